//! Query strings, read strictly: a parameter a route does not take is a
//! 400, as an unknown body field is, so that a misspelt `?rnak=5` is an
//! error rather than a silent first page.

use actix_web::HttpRequest;

use crate::error::ApiError;

/// A request's query parameters, each named once and each one the route
/// takes.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Reads the query string of `req`, refusing a parameter not in
    /// `allowed` and one given twice.
    pub fn parse(req: &HttpRequest, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                let takes = if allowed.is_empty() {
                    "this route takes no query parameters".to_owned()
                } else {
                    format!("this route takes {}", allowed.join(", "))
                };
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {name:?}; {takes}"
                )));
            }
            if pairs.iter().any(|(n, _)| n == &name) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {name:?} is given more than once"
                )));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let req = TestRequest::with_uri("/x?limit=5&cursor=abc").to_http_request();
        let q = Query::parse(&req, &["limit", "cursor"]).unwrap();
        assert_eq!(q.get("limit"), Some("5"));
        assert!(Query::parse(&req, &["limit"]).is_err());
        let twice = TestRequest::with_uri("/x?limit=5&limit=6").to_http_request();
        assert!(Query::parse(&twice, &["limit"]).is_err());
        let none = TestRequest::with_uri("/x").to_http_request();
        assert!(Query::parse(&none, &[]).is_ok());
        let any = TestRequest::with_uri("/x?a=1").to_http_request();
        assert!(Query::parse(&any, &[]).is_err());
    }
}
