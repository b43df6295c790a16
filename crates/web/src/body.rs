//! Request bodies: the [`Body`] extractor reads a body within a size and a
//! time limit, then decodes JSON or a form into a typed struct.
//!
//! Both encodings are accepted because the original's page posted forms and
//! API clients post JSON. The structs refuse unknown fields
//! (`#[serde(deny_unknown_fields)]`), so a misspelt `vaule` is an error, not
//! a silent default. An empty body decodes as one with no fields, whatever
//! its content type.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// Largest request body accepted. The largest valid body, a player with a
/// 100-character name and a 64-character id, is well under this.
pub const MAX_BODY_BYTES: usize = 4096;

/// How bodies are read; registered as app data, with a default when absent.
#[derive(Debug, Clone)]
pub struct BodyConfig {
    /// Largest body, in bytes (413 beyond).
    pub limit: usize,
    /// The whole body must arrive within this (408 after it), so a client
    /// that stalls half-way does not hold a request open.
    pub timeout: Duration,
}

impl Default for BodyConfig {
    fn default() -> Self {
        Self {
            limit: MAX_BODY_BYTES,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A request body decoded into `T`, a struct with
/// `#[serde(deny_unknown_fields)]`. Put it after the extractors whose
/// errors come first (write access, for one): actix-web reports the first
/// failing extractor in argument order.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let config = req.app_data::<BodyConfig>().cloned().unwrap_or_default();
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let bytes = read(&req, payload, &config).await?;
            decode(&req, &bytes).map(Body)
        })
    }
}

/// Reads the whole body, failing as soon as it passes the size limit, or
/// when it has not all arrived within the time limit.
async fn read(
    req: &HttpRequest,
    mut payload: Payload,
    config: &BodyConfig,
) -> Result<Bytes, ApiError> {
    let limit = config.limit;
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
    let reading = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::BadRequest(format!("could not read the request body: {e}"))
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(config.timeout, reading)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

/// Decodes a body by its `Content-Type`.
fn decode<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return form(b"");
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
        "application/json" => json(body),
        e if e.starts_with("application/") && e.ends_with("+json") => json(body),
        "application/x-www-form-urlencoded" => form(body),
        _ => Err(ApiError::UnsupportedMediaType(content_type)),
    }
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // A struct would also take a JSON array (its fields in order): only an
    // object is a valid body.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(match serde_json::from_slice::<Value>(body) {
            Ok(other) => ApiError::BadRequest(format!(
                "the JSON body must be an object, not {}",
                kind(&other)
            )),
            Err(e) => ApiError::BadRequest(format!("malformed JSON body: {e}")),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let (path, inner) = (e.path().to_string(), e.into_inner());
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest(format!("malformed JSON body: {inner}"));
        }
        // The position says nothing more than the field does.
        let text = inner.to_string();
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        field_error(&path, text.strip_suffix(&position).unwrap_or(&text))
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    Ok(value)
}

fn form<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(body));
    serde_path_to_error::deserialize(de)
        .map_err(|e| field_error(&e.path().to_string(), &e.into_inner().to_string()))
}

fn field_error(path: &str, message: &str) -> ApiError {
    ApiError::BadRequest(if path.is_empty() || path == "." || path == "?" {
        message.to_owned()
    } else {
        format!("field {path:?}: {message}")
    })
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
    use actix_web::error::PayloadError;
    use actix_web::test::TestRequest;
    use actix_web::ResponseError;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ScoreAdd {
        value: Option<i64>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewPlayer {
        id: Option<String>,
        name: String,
    }

    fn body<T: DeserializeOwned>(content_type: Option<&str>, body: &str) -> Result<T, ApiError> {
        let mut req = TestRequest::default();
        if let Some(ct) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, ct));
        }
        decode(&req.to_http_request(), body.as_bytes())
    }

    const JSON: Option<&str> = Some("application/json");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn message(err: ApiError) -> String {
        match err {
            ApiError::BadRequest(m) => m,
            other => panic!("not a 400: {other:?}"),
        }
    }

    proptest! {
        /// Any bytes under any of the content types a client may send give
        /// a body or a 4xx, never a panic or a 5xx.
        #[test]
        fn any_body_decodes_or_is_a_client_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            ct in prop_oneof![
                Just("application/json"), Just("application/x-www-form-urlencoded"),
                Just("text/plain"), Just(""), Just("application/vnd.x+json; charset=utf-8"),
            ],
        ) {
            let ct = if ct.is_empty() { None } else { Some(ct) };
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = body::<ScoreAdd>(ct, &text) {
                prop_assert!(e.status_code().is_client_error());
            }
            if let Err(e) = body::<NewPlayer>(ct, &text) {
                prop_assert!(e.status_code().is_client_error());
            }
        }

        #[test]
        fn integers_round_trip_in_json_and_forms(v in any::<i64>()) {
            let j: ScoreAdd = body(JSON, &format!(r#"{{"value":{v}}}"#)).unwrap();
            prop_assert_eq!(j.value, Some(v));
            let f: ScoreAdd = body(FORM, &format!("value={v}")).unwrap();
            prop_assert_eq!(f.value, Some(v));
        }
    }

    #[test]
    fn an_empty_body_has_no_fields_whatever_the_type() {
        assert_eq!(
            body::<ScoreAdd>(None, "").unwrap(),
            ScoreAdd { value: None }
        );
        assert_eq!(
            body::<ScoreAdd>(Some("image/png"), "  \n").unwrap(),
            ScoreAdd { value: None }
        );
        let missing = message(body::<NewPlayer>(None, "").unwrap_err());
        assert!(missing.contains("name"), "{missing}");
    }

    #[test]
    fn json_and_forms_give_the_same_struct() {
        let j: NewPlayer = body(
            Some("application/json; charset=utf-8"),
            r#"{"name":"Ann","id":"a"}"#,
        )
        .unwrap();
        let f: NewPlayer = body(FORM, "name=Ann&id=a").unwrap();
        assert_eq!(j, f);
        let null: ScoreAdd = body(JSON, r#"{"value": null}"#).unwrap();
        assert_eq!(null.value, None, "null means absent");
    }

    #[test]
    fn non_integers_are_refused_naming_the_field() {
        for text in [
            r#"{"value": 1.5}"#,
            r#"{"value": "5"}"#,
            r#"{"value": true}"#,
            r#"{"value": [1]}"#,
            r#"{"value": 99999999999999999999}"#,
        ] {
            let err = body::<ScoreAdd>(JSON, text).unwrap_err();
            assert!(err.status_code().is_client_error(), "{text}");
            if let ApiError::BadRequest(m) = err {
                assert!(m.contains("value"), "{text}: {m}");
            }
        }
        let m = message(body::<ScoreAdd>(FORM, "value=abc").unwrap_err());
        assert!(m.contains("value"), "{m}");
        // serde_json refuses a number beyond f64 as it reads it.
        let m = message(body::<ScoreAdd>(JSON, r#"{"value": 1e400}"#).unwrap_err());
        assert!(m.starts_with("malformed JSON body"), "{m}");
    }

    #[test]
    fn wrong_type_and_bad_json_are_distinct_errors() {
        assert!(matches!(
            body::<ScoreAdd>(Some("text/plain"), "value=1"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            body::<ScoreAdd>(None, "value=1"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(message(body::<ScoreAdd>(JSON, "{").unwrap_err()).starts_with("malformed JSON"));
        assert!(message(body::<ScoreAdd>(JSON, "{} x").unwrap_err()).starts_with("malformed JSON"));
        assert_eq!(
            message(body::<ScoreAdd>(JSON, "[1]").unwrap_err()),
            "the JSON body must be an object, not an array"
        );
    }

    #[test]
    fn unknown_and_duplicate_fields_are_refused() {
        let m = message(body::<ScoreAdd>(JSON, r#"{"vlaue": 1}"#).unwrap_err());
        assert!(m.contains("vlaue") && m.contains("value"), "{m}");
        let m = message(body::<ScoreAdd>(FORM, "vlaue=1").unwrap_err());
        assert!(m.contains("vlaue"), "{m}");
        assert!(body::<ScoreAdd>(FORM, "value=1&value=2").is_err());
        assert!(body::<ScoreAdd>(JSON, r#"{"value":1,"value":2}"#).is_err());
    }

    #[actix_web::test]
    async fn a_body_too_large_or_too_slow_is_refused() {
        let config = BodyConfig {
            limit: 8,
            timeout: Duration::from_millis(100),
        };
        let req = TestRequest::default()
            .insert_header((header::CONTENT_LENGTH, "9"))
            .to_http_request();
        assert!(matches!(
            read(&req, Payload::None, &config).await,
            Err(ApiError::PayloadTooLarge { limit: 8 })
        ));
        // Half a body, then nothing more.
        let stalled =
            futures::stream::once(async { Ok::<_, PayloadError>(Bytes::from_static(b"{\"va")) })
                .chain(futures::stream::pending());
        let payload =
            Payload::from(Box::pin(stalled) as std::pin::Pin<Box<dyn futures::Stream<Item = _>>>);
        let req = TestRequest::default().to_http_request();
        let started = std::time::Instant::now();
        let err = read(&req, payload, &config).await.unwrap_err();
        assert!(matches!(err, ApiError::BodyTimeout), "{err:?}");
        assert_eq!(err.status_code(), 408);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
