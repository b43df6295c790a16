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
/// The OpenAPI document of every route, from the annotations above.
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

#[cfg(test)]
mod tests {

    use actix_web::middleware::{NormalizePath, TrailingSlash};
    use actix_web::test::{self, TestRequest};
    use actix_web::web::{self, Data};
    use actix_web::App;
    use serde_json::Value;

    use super::*;
    use crate::auth::WriteAuth;
    use crate::state::AppState;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    fn doc() -> Value {
        serde_json::from_str(document()).expect("the document is JSON")
    }

    fn state() -> AppState {
        AppState::offline(4)
    }

    /// Every documented operation: its method, an address for it and the
    /// operation's object.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let address = path
                .replace("{board}", "demo")
                .replace("{player}", "alice")
                .replace("{number}", "1")
                .replace("{file}", "app.js");
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    all.push((method.to_owned(), address.clone(), operation.clone()));
                }
            }
        }
        all
    }

    fn request(method: &str, uri: &str) -> TestRequest {
        let method = actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes())
            .expect("a method");
        TestRequest::default()
            .method(method)
            .uri(uri)
            .insert_header(("accept", "application/json"))
    }

    /// The status and JSON body of the answer to `req`.
    macro_rules! answer {
        ($app:expr, $req:expr) => {{
            let resp = test::call_service($app, $req.to_request()).await;
            let status = resp.status().as_u16();
            let body = test::read_body(resp).await;
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }};
    }

    macro_rules! app {
        ($auth:expr) => {
            test::init_service(
                App::new()
                    .app_data(Data::new(state()))
                    .app_data($auth)
                    .wrap(NormalizePath::new(TrailingSlash::Always))
                    .configure(crate::routes::configure)
                    .default_service(web::to(crate::routes::not_found)),
            )
            .await
        };
    }

    #[test]
    fn the_committed_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == document(),
            "docs/openapi.json differs from the document the code generates; \
             regenerate it with `{REGENERATE}`"
        );
    }

    /// Each documented path and method is routed, and each method the
    /// document leaves out of a path answers 405.
    #[actix_web::test]
    async fn the_document_has_every_route_and_only_those() {
        let doc = doc();
        let app = app!(WriteAuth::default());
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let (_, address, _) = operations(&serde_json::json!({ "paths": { path: item } }))
                .pop()
                .expect("an operation");
            for method in METHODS {
                let (status, body) = answer!(&app, request(method, &address));
                let routed = status != 405 && body["error"] != "not_found";
                assert_eq!(
                    routed,
                    item.get(method).is_some(),
                    "{method} {address}: {status} {body}"
                );
            }
        }
        let (status, body) = answer!(&app, request("get", "/nowhere/"));
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    }

    /// The query parameters each operation documents are the ones its
    /// handler takes: an unknown one is refused with the list of those.
    #[actix_web::test]
    async fn the_document_has_every_query_parameter_and_only_those() {
        let app = app!(WriteAuth::default());
        for (method, address, operation) in operations(&doc()) {
            let mut documented: Vec<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().expect("a name").to_owned())
                .collect();
            documented.sort();
            // A body with the required fields, so that the query is read.
            let form = match operation["operationId"].as_str() {
                Some("createPlayer") => "name=Ann",
                Some("scoreSubmit") => "value=1",
                _ => "",
            };
            let req = request(&method, &format!("{address}?zz=1"))
                .insert_header(("content-type", "application/x-www-form-urlencoded"))
                .set_payload(form);
            let (status, body) = answer!(&app, req);
            let message = body["message"].as_str().unwrap_or_default();
            let mut taken: Vec<String> = match message.split_once("; this route takes ") {
                Some((_, "no query parameters")) => Vec::new(),
                Some((_, names)) => names.split(", ").map(str::to_owned).collect(),
                // The route reads no query string at all.
                None => Vec::new(),
            };
            taken.sort();
            if !message.contains("unknown query parameter") {
                assert_ne!(status, 400, "{method} {address}: {body}");
            }
            assert_eq!(documented, taken, "{method} {address}: {body}");
        }
    }

    /// The operations that document the write credential are the ones that
    /// check it.
    #[actix_web::test]
    async fn the_document_marks_every_write_that_needs_a_credential() {
        let auth = WriteAuth::new(&["0123456789abcdef".to_owned()], None, None);
        let app = app!(auth);
        for (method, address, operation) in operations(&doc()) {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("writeCredential").is_some()));
            let (status, body) = answer!(&app, request(&method, &address));
            assert_eq!(
                status == 401,
                secured,
                "{method} {address}: {status} {body}"
            );
            if secured {
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {address}"
                );
            }
        }
        assert!(doc()["components"]["securitySchemes"]["writeCredential"].is_object());
    }
}
