//! The browser page: an HTML shell and the script, style and icon it loads,
//! all embedded in the binary so the origin stays a single file with no build
//! step for the front end.
//!
//! The page is served at `/`, and at `/boards/{id}/` to a client that prefers
//! `text/html` (the board handler calls [`board_page`]); its files are under
//! `/static/{file}`. The shell is the same for every board: the script reads
//! the board id from the address and follows the board's event stream, so the
//! origin renders nothing per request and stays stateless.
//!
//! Every answer is revalidated (`Cache-Control: no-cache`) against an ETag
//! that is a hash of the file, so a new deploy is picked up at once and an
//! unchanged file costs a 304. The Content-Security-Policy allows same-origin
//! scripts, styles, images and connections only, and no inline code.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::error::ApiError;

/// Everything the page loads comes from this origin; nothing inline, no
/// plugins, no framing. Trusted Types makes string-to-HTML sinks such as
/// `innerHTML` fail, which the page's script never uses.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
    require-trusted-types-for 'script'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// FNV-1a of the body, computed at compile time.
    hash: u64,
}

impl Asset {
    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

/// FNV-1a, 64-bit. It only has to change when a file changes, and it is
/// simple enough to run at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../static/", $name)),
            hash: fnv1a(include_bytes!(concat!("../static/", $name))),
        }
    };
}

/// The HTML shell. It is not under `/static/`: it is only ever the page.
static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// The files under `/static/`.
static ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("live.js", "text/javascript; charset=utf-8"),
    asset!("model.js", "text/javascript; charset=utf-8"),
    asset!("rules.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

fn serve(req: &HttpRequest, asset: &'static Asset) -> HttpResponse {
    let etag = asset.etag();
    let status = if not_modified(req, &etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((header::ETAG, etag))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ));
    if status == StatusCode::NOT_MODIFIED {
        return response.finish();
    }
    response
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ))
        .body(asset.body)
}

/// `GET /`: the page, which shows the `demo` board or else the first board.
pub async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX)
}

/// The page for `GET /boards/{id}/` when `Accept` prefers `text/html`. The
/// same address answers JSON and event streams too, so caches must key on
/// `Accept`.
pub fn board_page(req: &HttpRequest) -> HttpResponse {
    let mut response = serve(req, &INDEX);
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// The path of one of the page's files.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AssetPath {
    /// The file's name, e.g. `app.js`, `style.css`, `icon.svg`.
    #[param(example = "app.js")]
    file: String,
}

/// `GET /static/{file}`: one of the page's files, or the API's JSON 404.
#[utoipa::path(
    get,
    path = "/static/{file}",
    tag = "page",
    operation_id = "asset",
    summary = "One of the live page's files",
    params(AssetPath, crate::routes::IfNoneMatch),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/svg+xml"),
        )),
        (status = 304, description = "The file is unchanged (`If-None-Match` named its ETag)"),
        (status = 404, response = crate::error::NotFound),
    ),
)]
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    match find(&file) {
        Some(asset) => serve(&req, asset),
        None => ApiError::RouteNotFound(req.path().to_owned()).error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use actix_web::middleware::{NormalizePath, TrailingSlash};
    use actix_web::test::{self, TestRequest};
    use actix_web::App;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("assets are UTF-8")
    }

    /// The values of every `attr="..."` in `html`.
    fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
        let needle = format!(" {attr}=\"");
        html.match_indices(&needle)
            .map(|(at, _)| {
                let rest = &html[at + needle.len()..];
                &rest[..rest.find('"').expect("attribute is closed")]
            })
            .collect()
    }

    /// The targets of every `from './x.js'` in a module.
    fn imports(js: &str) -> Vec<&str> {
        js.match_indices("from './")
            .map(|(at, _)| {
                let rest = &js[at + "from './".len()..];
                &rest[..rest.find('\'').expect("import is closed")]
            })
            .collect()
    }

    #[test]
    fn content_types_follow_extensions() {
        let all = ASSETS.iter().chain(std::iter::once(&INDEX));
        for asset in all {
            let expected = match asset.name.rsplit_once('.').map(|(_, ext)| ext) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                other => panic!("no content type known for {other:?}"),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.name);
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
        }
    }

    #[test]
    fn asset_names_are_unique_and_etags_differ() {
        for (i, a) in ASSETS.iter().enumerate() {
            for b in &ASSETS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.hash, b.hash, "{} and {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn index_references_only_embedded_assets() {
        let html = text(&INDEX);
        let mut refs = attribute_values(html, "src");
        refs.extend(attribute_values(html, "href"));
        assert!(refs.len() >= 3, "found {refs:?}");
        for target in refs {
            if let Some(name) = target.strip_prefix("/static/") {
                assert!(find(name).is_some(), "index.html loads unknown {target}");
            } else {
                // In-page anchors and the API are the only other links.
                assert!(
                    target.starts_with('#') || target.starts_with("/boards/"),
                    "index.html links outside the app: {target}"
                );
            }
        }
    }

    #[test]
    fn modules_import_only_embedded_modules() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for target in imports(text(asset)) {
                assert!(
                    find(target).is_some(),
                    "{} imports unknown {target}",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn nothing_inline_and_nothing_from_elsewhere() {
        let html = text(&INDEX);
        // Every <script> loads a file: the policy forbids inline code.
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            assert!(tag.contains(" src=\"/static/"), "inline script: {tag}");
        }
        assert!(!html.contains(" style=\""), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
        assert!(!html.contains(" onclick=") && !html.contains(" onload="));
        for asset in ASSETS.iter().chain(std::iter::once(&INDEX)) {
            // The SVG's XML namespace is a name, not something loaded.
            let body = text(asset).replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for scheme in ["http://", "https://", "\"//", "'//", "url(//"] {
                assert!(!body.contains(scheme), "{} refers to {scheme}", asset.name);
            }
            assert!(
                !body.contains(".innerHTML"),
                "{} uses innerHTML",
                asset.name
            );
        }
    }

    #[test]
    fn policy_is_strict() {
        let csp = CONTENT_SECURITY_POLICY;
        assert!(csp.starts_with("default-src 'none';"));
        for directive in [
            "script-src 'self';",
            "style-src 'self';",
            "connect-src 'self';",
            "frame-ancestors 'none';",
        ] {
            assert!(csp.contains(directive), "missing {directive}");
        }
        assert!(!csp.contains("unsafe"));
        assert!(HeaderValue::from_str(csp).is_ok());
    }

    #[actix_web::test]
    async fn index_is_html_with_policy_and_validator() {
        let resp = index(TestRequest::get().uri("/").to_http_request()).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h.get("content-type").unwrap(), "text/html; charset=utf-8");
        assert_eq!(h.get("cache-control").unwrap(), "no-cache");
        assert_eq!(
            h.get("content-security-policy").unwrap(),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(h.get("etag").unwrap().to_str().unwrap(), INDEX.etag());
        let body = to_bytes(resp.into_body()).await.unwrap();
        assert!(body.starts_with(b"<!doctype html>"));
    }

    #[actix_web::test]
    async fn board_page_varies_on_accept() {
        let req = TestRequest::get()
            .uri("/boards/demo/")
            .insert_header(("accept", "text/html"))
            .to_http_request();
        let resp = board_page(&req);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get("vary").unwrap(), "Accept");
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "text/html; charset=utf-8"
        );
    }

    #[actix_web::test]
    async fn matching_etag_gets_304_without_body() {
        let etag = INDEX.etag();
        for header in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
            let req = TestRequest::get()
                .insert_header(("if-none-match", header.as_str()))
                .to_http_request();
            let resp = index(req).await;
            assert_eq!(resp.status(), 304, "{header}");
            assert_eq!(resp.headers().get("etag").unwrap().to_str().unwrap(), etag);
            assert!(to_bytes(resp.into_body()).await.unwrap().is_empty());
        }
        let req = TestRequest::get()
            .insert_header(("if-none-match", "\"0000000000000000\""))
            .to_http_request();
        assert_eq!(index(req).await.status(), 200);
    }

    /// Mirrors the app: `NormalizePath` appends a slash before routing, so
    /// the asset route is registered as `/static/{file}/` and the browser's
    /// `/static/app.js` still reaches it.
    #[actix_web::test]
    async fn assets_are_served_through_the_app_routing() {
        let app = test::init_service(
            App::new()
                .wrap(NormalizePath::new(TrailingSlash::Always))
                .route("/", web::get().to(index))
                .route("/static/{file}/", web::get().to(asset)),
        )
        .await;
        for a in ASSETS {
            let req = TestRequest::get()
                .uri(&format!("/static/{}", a.name))
                .to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(resp.status(), 200, "{}", a.name);
            assert_eq!(
                resp.headers().get("content-type").unwrap(),
                a.content_type,
                "{}",
                a.name
            );
            assert!(resp.headers().contains_key("content-security-policy"));
            let body = test::read_body(resp).await;
            assert_eq!(&body[..], a.body, "{}", a.name);
        }

        let req = TestRequest::get().uri("/").to_request();
        assert_eq!(test::call_service(&app, req).await.status(), 200);

        // The shell is not a static file, and nothing else is either.
        for unknown in [
            "/static/index.html",
            "/static/nope.js",
            "/static/..%2Fmain.rs",
        ] {
            let req = TestRequest::get().uri(unknown).to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(resp.status(), 404, "{unknown}");
            let body: serde_json::Value = test::read_body_json(resp).await;
            assert_eq!(body["error"], "not_found");
        }
    }
}
