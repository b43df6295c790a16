//! Request bodies: read with a size limit, then parsed as JSON or as a form
//! into named fields that each handler checks.
//!
//! Both encodings are accepted because the original's page posted forms and
//! API clients post JSON. An empty body is valid everywhere a field is
//! optional.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::HttpRequest;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest request body accepted. The largest valid body, a player with a
/// 100-character name and a 64-character id, is well under this.
pub const MAX_BODY_BYTES: usize = 4096;

/// Reads the whole body, failing as soon as it passes `limit`.
pub async fn read(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > limit as u64 {
            return Err(ApiError::PayloadTooLarge { limit });
        }
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The fields of a request body.
#[derive(Debug)]
pub enum Fields {
    Empty,
    Json(Map<String, Value>),
    Form(HashMap<String, String>),
}

impl Fields {
    pub fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields::Empty);
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Self::json(body),
            e if e.starts_with("application/") && e.ends_with("+json") => Self::json(body),
            "application/x-www-form-urlencoded" => Self::form(body),
            _ => Err(ApiError::UnsupportedMediaType(content_type)),
        }
    }

    fn json(body: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Fields::Json(map)),
            Ok(other) => Err(ApiError::BadRequest(format!(
                "the JSON body must be an object, not {}",
                kind(&other)
            ))),
            Err(e) => Err(ApiError::BadRequest(format!("malformed JSON body: {e}"))),
        }
    }

    fn form(body: &[u8]) -> Result<Self, ApiError> {
        let mut fields = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            if fields
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(ApiError::BadRequest(format!(
                    "field {name:?} is given twice"
                )));
            }
        }
        Ok(Fields::Form(fields))
    }

    /// Refuses fields other than `allowed`, so that a misspelt field is an
    /// error rather than silently ignored.
    pub fn allow_only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let names: Vec<&str> = match self {
            Fields::Empty => return Ok(()),
            Fields::Json(map) => map.keys().map(String::as_str).collect(),
            Fields::Form(map) => map.keys().map(String::as_str).collect(),
        };
        match names.into_iter().find(|n| !allowed.contains(n)) {
            Some(unknown) => Err(ApiError::BadRequest(format!(
                "unknown field {unknown:?}; expected {}",
                if allowed.is_empty() {
                    "no fields".to_owned()
                } else {
                    allowed.join(", ")
                }
            ))),
            None => Ok(()),
        }
    }

    /// A text field; in JSON it must be a string (or null for "absent").
    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self {
            Fields::Empty => Ok(None),
            Fields::Form(map) => Ok(map.get(name).cloned()),
            Fields::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ApiError::BadRequest(format!(
                    "field {name:?} must be a string, not {}",
                    kind(other)
                ))),
            },
        }
    }

    /// An integer field; in JSON it must be an integral number, in a form
    /// its decimal text.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let not_integer = |got: String| {
            ApiError::BadRequest(format!("field {name:?} must be an integer, got {got}"))
        };
        match self {
            Fields::Empty => Ok(None),
            Fields::Form(map) => match map.get(name) {
                None => Ok(None),
                Some(text) => text
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| not_integer(format!("{text:?}"))),
            },
            Fields::Json(map) => match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| not_integer(n.to_string())),
                Some(other) => Err(not_integer(kind(other).to_owned())),
            },
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use actix_web::ResponseError;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes under any of the content types a client may send give
        /// fields or a 4xx, never a panic or a 5xx.
        #[test]
        fn any_body_parses_or_is_a_client_error(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            ct in prop_oneof![
                Just("application/json"), Just("application/x-www-form-urlencoded"),
                Just("text/plain"), Just(""), Just("application/vnd.x+json; charset=utf-8"),
            ],
        ) {
            let ct = if ct.is_empty() { None } else { Some(ct) };
            match fields(ct, &String::from_utf8_lossy(&body)) {
                Ok(f) => {
                    for name in ["value", "name", "id"] {
                        if let Err(e) = f.integer(name) {
                            prop_assert!(e.status_code().is_client_error());
                        }
                        if let Err(e) = f.string(name) {
                            prop_assert!(e.status_code().is_client_error());
                        }
                    }
                    let _ = f.allow_only(&["value"]);
                }
                Err(e) => prop_assert!(e.status_code().is_client_error()),
            }
        }

        #[test]
        fn json_integers_round_trip(v in any::<i64>()) {
            let f = fields(Some("application/json"), &format!(r#"{{"value":{v}}}"#)).unwrap();
            prop_assert_eq!(f.integer("value").unwrap(), Some(v));
            let f = fields(Some("application/x-www-form-urlencoded"), &format!("value={v}")).unwrap();
            prop_assert_eq!(f.integer("value").unwrap(), Some(v));
        }
    }

    fn fields(content_type: Option<&str>, body: &str) -> Result<Fields, ApiError> {
        let mut req = TestRequest::default();
        if let Some(ct) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, ct));
        }
        Fields::parse(&req.to_http_request(), body.as_bytes())
    }

    #[test]
    fn empty_body_is_empty_whatever_the_type() {
        assert!(matches!(fields(None, ""), Ok(Fields::Empty)));
        assert!(matches!(
            fields(Some("image/png"), "  \n"),
            Ok(Fields::Empty)
        ));
    }

    #[test]
    fn json_and_form_give_the_same_integer() {
        let j = fields(Some("application/json; charset=utf-8"), r#"{"value": 5}"#).unwrap();
        let f = fields(Some("application/x-www-form-urlencoded"), "value=5").unwrap();
        assert_eq!(j.integer("value").unwrap(), Some(5));
        assert_eq!(f.integer("value").unwrap(), Some(5));
    }

    #[test]
    fn non_integers_are_refused() {
        for body in [
            r#"{"value": 1.5}"#,
            r#"{"value": "5"}"#,
            r#"{"value": 1e400}"#,
            r#"{"value": true}"#,
            r#"{"value": 99999999999999999999}"#,
        ] {
            let f = fields(Some("application/json"), body).unwrap_or(Fields::Empty);
            assert!(
                matches!(f, Fields::Empty) || f.integer("value").is_err(),
                "{body}"
            );
        }
        let f = fields(Some("application/x-www-form-urlencoded"), "value=abc").unwrap();
        assert!(f.integer("value").is_err());
    }

    #[test]
    fn wrong_type_and_bad_json_are_distinct_errors() {
        assert!(matches!(
            fields(Some("text/plain"), "value=1"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            fields(None, "value=1"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            fields(Some("application/json"), "{"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            fields(Some("application/json"), "[1]"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn unknown_and_duplicate_fields() {
        let f = fields(Some("application/json"), r#"{"vlaue": 1}"#).unwrap();
        assert!(f.allow_only(&["value"]).is_err());
        assert!(fields(Some("application/x-www-form-urlencoded"), "value=1&value=2").is_err());
    }
}
