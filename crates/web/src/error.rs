//! The origin's one error type and its mapping to HTTP.
//!
//! Every error leaves as JSON `{"error": "<code>", "message": "<text>"}`.
//! Client errors say what was wrong. Server errors are logged with their
//! cause and a request id, and the client sees only a generic message with
//! that id, never internals such as database addresses.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::ValidationError;
use serde_json::json;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("{0}")]
    BadRequest(String),
    #[error("board {0:?} does not exist")]
    BoardNotFound(String),
    #[error("player {player:?} does not exist on board {board:?}")]
    PlayerNotFound { board: String, player: String },
    #[error("board {board:?} has no finished period {number}")]
    PeriodNotFound { board: String, number: u64 },
    #[error("no such resource: {0}")]
    RouteNotFound(String),
    #[error("method {method} is not allowed here; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        method: String,
        allowed: &'static [&'static str],
    },
    #[error("cannot produce any type the Accept header allows; available: {}", available.join(", "))]
    NotAcceptable { available: &'static [&'static str] },
    #[error("event streams are served through the GRIP proxy, not by the origin directly: {0}")]
    StreamRequiresProxy(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error(
        "the credential is not valid (unknown key, bad signature, expired or not a write token)"
    )]
    InvalidCredential,
    #[error("reading the request body took too long")]
    BodyTimeout,
    #[error("{0} already exists")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported Content-Type {0:?}; send application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType(String),
    #[error("the resulting score would leave the range ±{}", domain::MAX_SCORE)]
    ScoreOutOfRange,
    #[error("the database is unavailable; try again shortly")]
    Unavailable(#[source] StoreError),
    #[error("the board's ranks are being brought up to date; try again shortly")]
    RanksBehind,
    #[error("too many rank reads at once; try again shortly")]
    Busy,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The kind of database failure behind this error, for metrics.
    pub fn database_error_kind(&self) -> Option<&'static str> {
        match self {
            ApiError::Unavailable(_) => Some("unavailable"),
            ApiError::Internal(e) if e.downcast_ref::<StoreError>().is_some() => Some("query"),
            _ => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "invalid_input",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::BoardNotFound(_) => "board_not_found",
            ApiError::PlayerNotFound { .. } => "player_not_found",
            ApiError::PeriodNotFound { .. } => "period_not_found",
            ApiError::RouteNotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotAcceptable { .. } => "not_acceptable",
            ApiError::StreamRequiresProxy(_) => "stream_requires_proxy",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidCredential => "invalid_credential",
            ApiError::BodyTimeout => "request_timeout",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::ScoreOutOfRange => "score_out_of_range",
            ApiError::Unavailable(_) => "database_unavailable",
            ApiError::RanksBehind => "ranks_unavailable",
            ApiError::Busy => "busy",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::Unavailable(err),
            StoreError::ScoreOutOfRange => ApiError::ScoreOutOfRange,
            StoreError::RanksBehind => ApiError::RanksBehind,
            StoreError::Conflict => ApiError::Conflict("a record with this id".into()),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A short random id that ties a client-visible 5xx to the log line that
/// holds its cause.
fn request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::BoardNotFound(_)
            | ApiError::PlayerNotFound { .. }
            | ApiError::PeriodNotFound { .. }
            | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            ApiError::StreamRequiresProxy(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) | ApiError::InvalidCredential => StatusCode::UNAUTHORIZED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ScoreOutOfRange => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::RanksBehind | ApiError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        let body = if status.is_server_error() {
            let id = request_id();
            log::error!("request {id}: {}", cause_chain(self));
            json!({ "error": self.code(), "message": self.to_string(), "request_id": id })
        } else {
            json!({ "error": self.code(), "message": self.to_string() })
        };
        if let ApiError::MethodNotAllowed { allowed, .. } = self {
            response.insert_header((header::ALLOW, allowed.join(", ")));
        }
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"leaderboard\""),
                ));
            }
            ApiError::InvalidCredential => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"leaderboard\", error=\"invalid_token\"",
                    ),
                ));
            }
            _ => {}
        }
        if let ApiError::Unavailable(_) | ApiError::RanksBehind | ApiError::Busy = self {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        // The rest of a body sent too slowly would still be on its way:
        // the connection cannot carry another request.
        if let ApiError::BodyTimeout = self {
            response.force_close();
        }
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn server_errors_hide_their_cause() {
        let err = ApiError::from(StoreError::Query("secret table layout".into()));
        let resp = err.error_response();
        assert_eq!(resp.status(), 500);
        let body = to_bytes(resp.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "internal");
        assert!(body["request_id"].as_str().unwrap().len() == 16);
        assert!(!body.to_string().contains("secret"));
    }

    #[actix_web::test]
    async fn an_unavailable_database_is_503_with_retry_after() {
        let err = ApiError::from(StoreError::Unavailable(
            "ReqlInternalError: Unexpected exception: ... none of the servers were accessible"
                .into(),
        ));
        let resp = err.error_response();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
        let body = to_bytes(resp.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "database_unavailable");
        assert!(!body.to_string().contains("servers"));
    }

    #[actix_web::test]
    async fn a_body_timeout_closes_the_connection() {
        let resp = ApiError::BodyTimeout.error_response();
        assert_eq!(resp.status(), 408);
        assert!(resp.head().connection_type() == actix_web::http::ConnectionType::Close);
    }

    #[actix_web::test]
    async fn method_not_allowed_lists_methods() {
        let err = ApiError::MethodNotAllowed {
            method: "PUT".into(),
            allowed: &["GET", "DELETE"],
        };
        let resp = err.error_response();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers().get("allow").unwrap(), "GET, DELETE");
    }
}
