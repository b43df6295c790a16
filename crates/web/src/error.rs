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
use serde::Serialize;
use store::StoreError;
use utoipa::{ToResponse, ToSchema};

/// Everything a handler can fail with; each maps to one status and one
/// [`ErrorCode`] (see [`ApiError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_input`: a value broke a domain rule.
    #[error("{0}")]
    Validation(#[from] ValidationError),
    /// 400 `bad_request`: a malformed body, query parameter or header; the
    /// text says what.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no board has this id.
    #[error("board {0:?} does not exist")]
    BoardNotFound(String),
    /// 404: the board exists but has no such player.
    #[error("player {player:?} does not exist on board {board:?}")]
    PlayerNotFound {
        /// The board's id.
        board: String,
        /// The player id asked for.
        player: String,
    },
    /// 404: the board has no finished period of this number.
    #[error("board {board:?} has no finished period {number}")]
    PeriodNotFound {
        /// The board's id.
        board: String,
        /// The period number asked for.
        number: u64,
    },
    /// 404 `not_found`: no route has this path.
    #[error("no such resource: {0}")]
    RouteNotFound(String),
    /// 405, with `Allow`.
    #[error("method {method} is not allowed here; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The methods the path takes, for `Allow`.
        allowed: &'static [&'static str],
    },
    /// 406: `Accept` allows none of the route's media types.
    #[error("cannot produce any type the Accept header allows; available: {}", available.join(", "))]
    NotAcceptable {
        /// The media types the route can produce.
        available: &'static [&'static str],
    },
    /// 403: a stream request the proxy did not sign; the text says why.
    #[error("event streams are served through the GRIP proxy, not by the origin directly: {0}")]
    StreamRequiresProxy(String),
    /// 401 with `WWW-Authenticate`: a write without a Bearer credential.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 401 with `WWW-Authenticate`: a Bearer credential that is not valid.
    #[error(
        "the credential is not valid (unknown key, bad signature, expired or not a write token)"
    )]
    InvalidCredential,
    /// 408: the body did not arrive in time; the connection is closed.
    #[error("reading the request body took too long")]
    BodyTimeout,
    /// 409: the id is taken; the text names what.
    #[error("{0} already exists")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The largest body accepted, in bytes.
        limit: usize,
    },
    /// 415: a body that is neither JSON nor a form; holds its `Content-Type`.
    #[error("unsupported Content-Type {0:?}; send application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType(String),
    /// 422: the score would leave ±`MAX_SCORE`.
    #[error("the resulting score would leave the range ±{}", domain::MAX_SCORE)]
    ScoreOutOfRange,
    /// 503 with `Retry-After`: the database could not be reached.
    #[error("the database is unavailable; try again shortly")]
    Unavailable(#[source] StoreError),
    /// 503 with `Retry-After`: the board's rank digest is behind.
    #[error("the board's ranks are being brought up to date; try again shortly")]
    RanksBehind,
    /// 503 with `Retry-After`: no rank read could be admitted in time.
    #[error("too many rank reads at once; try again shortly")]
    Busy,
    /// 500: logged with its cause; the client sees only a request id.
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

    /// The code a client sees in the `error` field.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Validation(_) => ErrorCode::InvalidInput,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::BoardNotFound(_) => ErrorCode::BoardNotFound,
            ApiError::PlayerNotFound { .. } => ErrorCode::PlayerNotFound,
            ApiError::PeriodNotFound { .. } => ErrorCode::PeriodNotFound,
            ApiError::RouteNotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::NotAcceptable { .. } => ErrorCode::NotAcceptable,
            ApiError::StreamRequiresProxy(_) => ErrorCode::StreamRequiresProxy,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::InvalidCredential => ErrorCode::InvalidCredential,
            ApiError::BodyTimeout => ErrorCode::RequestTimeout,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::ScoreOutOfRange => ErrorCode::ScoreOutOfRange,
            ApiError::Unavailable(_) => ErrorCode::DatabaseUnavailable,
            ApiError::RanksBehind => ErrorCode::RanksUnavailable,
            ApiError::Busy => ErrorCode::Busy,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// What kind of error an answer reports: the `error` field of every error
/// body. Stable; clients may branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a value broke a rule (an id, a name, a score, a board rule).
    InvalidInput,
    /// 400: a malformed body, an unknown or repeated query parameter or
    /// body field, a bad `Idempotency-Key`.
    BadRequest,
    /// 404
    BoardNotFound,
    /// 404
    PlayerNotFound,
    /// 404
    PeriodNotFound,
    /// 404: no route has this path.
    NotFound,
    /// 405, with `Allow`.
    MethodNotAllowed,
    /// 406: `Accept` allows nothing the route produces.
    NotAcceptable,
    /// 403: a stream request that the proxy did not sign.
    StreamRequiresProxy,
    /// 401: a write without a Bearer credential.
    Unauthorized,
    /// 401: a Bearer credential that is not valid.
    InvalidCredential,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 409: the id is taken.
    Conflict,
    /// 413: the body is larger than 4 KiB.
    PayloadTooLarge,
    /// 415: a body that is neither JSON nor a form.
    UnsupportedMediaType,
    /// 422: the score would leave ±(2^53 − 1).
    ScoreOutOfRange,
    /// 503, with `Retry-After`.
    DatabaseUnavailable,
    /// 503, with `Retry-After`: a board's rank digest is being brought up
    /// to date.
    RanksUnavailable,
    /// 503, with `Retry-After`: too many rank reads at once.
    Busy,
    /// 500: logged with its cause under `request_id`.
    Internal,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    // Not documented here: a doc comment would become a description of
    // this field in the OpenAPI document. ErrorCode's own says what it is.
    pub(crate) error: ErrorCode,
    /// What was wrong, for a person to read.
    pub message: String,
    /// On a 5xx only: the id of the log line that holds the cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub request_id: Option<String>,
}

/// A malformed request: a bad value, body, query parameter or header.
#[derive(ToResponse)]
pub struct BadRequest(#[allow(dead_code)] ErrorBody);

/// A write without a valid credential (`unauthorized`: none or not
/// `Bearer`; `invalid_credential`: unknown key, bad signature, expired, or
/// not a write token).
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"leaderboard\"`, with `error=\"invalid_token\"` for a credential that is not valid")))]
pub struct Unauthorized(#[allow(dead_code)] ErrorBody);

/// No such board, player or period (the code says which).
#[derive(ToResponse)]
pub struct NotFound(#[allow(dead_code)] ErrorBody);

/// The body did not all arrive within `BODY_TIMEOUT_SECS`; the connection
/// is closed.
#[derive(ToResponse)]
pub struct RequestTimeout(#[allow(dead_code)] ErrorBody);

/// The body is larger than 4 KiB.
#[derive(ToResponse)]
pub struct PayloadTooLarge(#[allow(dead_code)] ErrorBody);

/// The body is neither `application/json` (or `application/*+json`) nor
/// `application/x-www-form-urlencoded`.
#[derive(ToResponse)]
pub struct UnsupportedMediaType(#[allow(dead_code)] ErrorBody);

/// The database is unavailable, a board's ranks are being brought up to
/// date, or too many rank reads are in flight; safe to retry after
/// `Retry-After` seconds (with an `Idempotency-Key`, a score write too).
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u32, description = "Seconds to wait before trying again (1)")))]
pub struct Unavailable(#[allow(dead_code)] ErrorBody);

/// An unexpected failure; `request_id` names the log line with its cause.
#[derive(ToResponse)]
pub struct Internal(#[allow(dead_code)] ErrorBody);

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
        let request_id = status.is_server_error().then(|| {
            let id = request_id();
            log::error!("request {id}: {}", cause_chain(self));
            id
        });
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            request_id,
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
