//! The API's OpenAPI 3.1 document, derived from the handlers' `#[utoipa::path]`
//! annotations and the types they read and write. `GET /openapi.json`
//! serves it, `leaderboard-web openapi` prints it, and `docs/openapi.json`
//! is a copy that a test keeps current.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::{error, page, routes};

/// The command that writes the committed copy, named by the test that
/// compares them.
pub const REGENERATE: &str =
    "cargo run -q -p web --bin leaderboard-web -- openapi > docs/openapi.json";

/// A finished period of a board that resets, as `periods/` lists it and the
/// stream's `reset` event carries it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Period {
    /// 1 for the board's first period.
    #[schema(minimum = 1)]
    pub number: u64,
    /// When the period began (RFC 3339).
    #[schema(format = DateTime)]
    pub start: String,
    /// When it ended (RFC 3339).
    #[schema(format = DateTime)]
    pub end: String,
    /// How many players had a score in it.
    pub players: u64,
    /// Its final top (the board's `top` players), in rank order.
    pub top: Vec<domain::Player>,
}

/// The body of `GET /boards/{board}/periods/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodList {
    /// Newest first, at most 100.
    pub periods: Vec<Period>,
}

/// The `data` of the stream's `deleted` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedEvent {
    /// The deleted board's id.
    pub id: String,
}

/// Registers the write credential: a Bearer token, checked by
/// [`crate::auth::WriteAuth`].
struct WriteCredential;

impl Modify for WriteCredential {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "writeCredential",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key or HS256 JWT")
                    .description(Some(include_str!("openapi/credential.md")))
                    .build(),
            ),
        );
    }
}

/// Marks the request bodies that may be empty as optional: [`crate::body`]
/// decodes an empty body as one with no fields, which these operations
/// take (the others then refuse it for a missing required field).
struct OptionalBodies;

/// The operations whose every body field is optional.
const OPTIONAL_BODIES: &[&str] = &["createBoard", "scoreAdd"];

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.post, &mut item.put, &mut item.patch]
                .into_iter()
                .flatten()
            {
                let optional = operation
                    .operation_id
                    .as_deref()
                    .is_some_and(|id| OPTIONAL_BODIES.contains(&id));
                if let (true, Some(body)) = (optional, operation.request_body.as_mut()) {
                    body.required = Some(utoipa::openapi::Required::False);
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leaderboard",
        description = include_str!("openapi/info.md"),
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        routes::index,
        page::asset,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi,
        routes::list_boards,
        routes::create_board,
        routes::get_board,
        routes::delete_board,
        routes::periods,
        routes::period,
        routes::list_players,
        routes::create_player,
        routes::get_player,
        routes::delete_player,
        routes::around,
        routes::score_add,
        routes::score_submit,
    ),
    components(
        schemas(DeletedEvent, Period),
        responses(
            error::BadRequest,
            error::Unauthorized,
            error::NotFound,
            error::RequestTimeout,
            error::PayloadTooLarge,
            error::UnsupportedMediaType,
            error::Unavailable,
            error::Internal,
        ),
    ),
    modifiers(&WriteCredential, &OptionalBodies),
    tags(
        (name = "boards", description = "Boards, their rules, their stream and their finished periods"),
        (name = "players", description = "Players and their ranks"),
        (name = "scores", description = "Score writes"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "page", description = "The live page and its files"),
    ),
)]
pub struct ApiDoc;

/// The document as pretty JSON with a final newline, as committed.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises");
        text.push('\n');
        text
    })
}
