//! The HTTP API. Handlers validate input into domain types, call the store,
//! and render JSON or GRIP hold instructions; they hold no state of their own.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use domain::{BoardId, Name, Operator, Order, PlayerId, Reset, Rules, ScoreDelta, TOP_N};
use serde::{Deserialize, Serialize};
use store::reql::IdempotencyKey;
use store::{Lookup, NewBoard, NewPlayer, PageStart};
use utoipa::{IntoParams, ToSchema};

use crate::auth::WriteAccess;
use crate::body::Body;
use crate::cursor::Cursor;
use crate::error::{self, ApiError, ErrorBody};
use crate::negotiate::{negotiate, Representation};
use crate::page;
use crate::query::Query;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

/// Most boards `GET /boards/` lists, and the default and largest `limit` of
/// a player listing.
const MAX_LIST: usize = 1000;
const DEFAULT_PLAYER_LIST: usize = 100;
/// The most neighbours `around/` shows on each side.
const MAX_AROUND: usize = 50;

/// Registers every route. Paths end in a slash; `NormalizePath` in the app
/// adds a missing one, so `/boards/x` works too.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", &["GET"]).route(web::get().to(index)))
        // NormalizePath adds a slash to every path, files included.
        .service(resource("/static/{file}/", &["GET"]).route(web::get().to(page::asset)))
        .service(resource("/healthz/", &["GET"]).route(web::get().to(healthz)))
        .service(resource("/readyz/", &["GET"]).route(web::get().to(readyz)))
        .service(resource("/metrics/", &["GET"]).route(web::get().to(metrics)))
        .service(resource("/openapi.json/", &["GET"]).route(web::get().to(openapi)))
        .service(
            resource("/boards/", &["GET", "POST"])
                .route(web::get().to(list_boards))
                .route(web::post().to(create_board)),
        )
        .service(
            resource("/boards/{board}/", &["GET", "DELETE"])
                .route(web::get().to(get_board))
                .route(web::delete().to(delete_board)),
        )
        .service(resource("/boards/{board}/periods/", &["GET"]).route(web::get().to(periods)))
        .service(
            resource("/boards/{board}/periods/{number}/", &["GET"]).route(web::get().to(period)),
        )
        .service(
            resource("/boards/{board}/players/", &["GET", "POST"])
                .route(web::get().to(list_players))
                .route(web::post().to(create_player)),
        )
        .service(
            resource("/boards/{board}/players/{player}/", &["GET", "DELETE"])
                .route(web::get().to(get_player))
                .route(web::delete().to(delete_player)),
        )
        .service(
            resource("/boards/{board}/players/{player}/score-add/", &["POST"])
                .route(web::post().to(score_add)),
        )
        .service(
            resource("/boards/{board}/players/{player}/score/", &["POST"])
                .route(web::post().to(score_submit)),
        )
        .service(
            resource("/boards/{board}/players/{player}/around/", &["GET"])
                .route(web::get().to(around)),
        );
}

/// A resource whose other methods get 405 with an `Allow` header.
fn resource(path: &str, allowed: &'static [&'static str]) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allowed,
        })
    }))
}

/// Anything no route matched.
pub async fn not_found(req: HttpRequest) -> ApiResult {
    Err(ApiError::RouteNotFound(req.path().to_owned()))
}

fn board_id(raw: &str) -> Result<BoardId, ApiError> {
    Ok(BoardId::parse(raw)?)
}

fn player_id(raw: &str) -> Result<PlayerId, ApiError> {
    Ok(PlayerId::parse(raw)?)
}

fn json_response(status: StatusCode, body: impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}

/// What `GET /` answers an API client.
#[derive(Debug, Serialize, ToSchema)]
pub struct Index {
    #[schema(examples("leaderboard"))]
    name: &'static str,
    /// Where the boards are listed.
    #[schema(examples("/boards/"))]
    boards: &'static str,
}

/// `/`: the live page for browsers, a small JSON index for API clients.
#[utoipa::path(
    get,
    path = "/",
    tag = "page",
    operation_id = "index",
    summary = "A small JSON index, or the live page for a browser",
    description = "Answers JSON unless `Accept` prefers `text/html`, then the page's HTML shell.",
    params(IfNoneMatch),
    responses(
        (status = 200, description = "The index, or the page", content(
            (Index = "application/json"),
            (String = "text/html"),
        )),
        (status = 304, description = "The page is unchanged (`If-None-Match` named its ETag)"),
    ),
)]
pub async fn index(req: HttpRequest) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if negotiate(accept, &[Representation::Json, Representation::Html])
        == Some(Representation::Html)
    {
        return page::index(req).await;
    }
    json_response(
        StatusCode::OK,
        Index {
            name: "leaderboard",
            boards: "/boards/",
        },
    )
}

/// The body of `GET /healthz` and `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    #[schema(examples("ok", "ready"))]
    status: &'static str,
}

/// `GET /healthz`: 200 while the process answers; touches nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "Alive", body = Health)),
)]
pub async fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, Health { status: "ok" })
}

/// `GET /metrics`: the origin's Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    responses((status = 200, description = "The Prometheus text format, version 0.0.4",
        content((String = "text/plain")))),
)]
pub async fn metrics(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(state.metrics.render())
}

/// `GET /readyz`: 200 once the database answers and the schema is in place.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the database is reachable and the schema ready",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn readyz(state: Data<AppState>) -> ApiResult {
    state.ready().await?;
    state.store.ping().await?;
    Ok(json_response(StatusCode::OK, Health { status: "ready" }))
}

/// `GET /openapi.json`: this API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content((Object = "application/json")))),
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::document())
}

/// The body of `GET /boards/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BoardList {
    /// In id order, at most 1000.
    boards: Vec<domain::BoardSummary>,
}

/// `GET /boards/`: the boards, in id order.
#[utoipa::path(
    get,
    path = "/boards/",
    tag = "boards",
    operation_id = "listBoards",
    summary = "Lists the boards, in id order (at most 1000)",
    responses(
        (status = 200, description = "The boards", body = BoardList),
        (status = 400, response = error::BadRequest),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn list_boards(state: Data<AppState>, req: HttpRequest) -> ApiResult {
    Query::parse(&req, &[])?;
    state.ready().await?;
    let boards = state.store.list_boards(MAX_LIST).await?;
    Ok(json_response(StatusCode::OK, BoardList { boards }))
}

/// The body of `POST /boards/`; it may be empty. The rules are fixed from
/// then on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBoard {
    /// The board's id; a UUID when absent. Taken: 409.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[A-Za-z0-9_-]+$",
        examples("weekly")
    )]
    id: Option<String>,
    /// Trimmed, 1 to 100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100, examples("Weekly"))]
    name: Option<String>,
    /// Which scores rank first (default `desc`).
    order: Option<Order>,
    /// What `score/` does with a value (default `incr`).
    operator: Option<Operator>,
    /// How many players the board's snapshot and stream show (default 5).
    #[schema(minimum = 1, maximum = 100)]
    top: Option<usize>,
    /// When the board resets: `daily`, `weekly` (Mondays), `monthly` (the
    /// 1st), at 00:00 UTC, or a cron expression in UTC (five fields, or
    /// six with seconds first).
    #[schema(examples("daily"))]
    reset: Option<String>,
}

/// `POST /boards/`: creates a board (write credential required).
#[utoipa::path(
    post,
    path = "/boards/",
    tag = "boards",
    operation_id = "createBoard",
    summary = "Creates a board; its rules are fixed from then on",
    request_body(description = "May be empty: a board with a generated id and the default rules.",
        content(
            (CreateBoard = "application/json"),
            (CreateBoard = "application/x-www-form-urlencoded"),
        )),
    security(("writeCredential" = [])),
    responses(
        (status = 201, description = "Created", body = domain::Board,
            headers(("Location" = String, description = "`/boards/{id}/`"))),
        (status = 400, response = error::BadRequest),
        (status = 401, response = error::Unauthorized),
        (status = 408, response = error::RequestTimeout),
        (status = 409, description = "A board with this id exists (whatever rules it asks for)", body = ErrorBody),
        (status = 413, response = error::PayloadTooLarge),
        (status = 415, response = error::UnsupportedMediaType),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn create_board(
    _: WriteAccess,
    state: Data<AppState>,
    req: HttpRequest,
    Body(body): Body<CreateBoard>,
) -> ApiResult {
    Query::parse(&req, &[])?;
    let id = body.id.as_deref().map(BoardId::parse).transpose()?;
    let name = body.name.as_deref().map(Name::parse).transpose()?;
    let rules = Rules::new(
        body.order.unwrap_or_default(),
        body.operator.unwrap_or_default(),
        body.top.unwrap_or(TOP_N),
        body.reset.as_deref().map(Reset::parse).transpose()?,
    )?;
    state.ready().await?;
    let requested = id.clone();
    let board = state
        .store
        .create_board(NewBoard { id, name, rules })
        .await
        .map_err(|e| match (e, requested) {
            // The board exists: its rules (and name) stay as they are.
            (store::StoreError::Conflict, Some(id)) => ApiError::Conflict(format!(
                "board {:?} exists; a board's rules are fixed when it is created",
                id.as_str()
            )),
            (e, _) => e.into(),
        })?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/boards/{}/", board.id)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(board.view()))
}

/// The path of a board's routes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct BoardPath {
    /// The board's id: 1 to 63 characters of `[A-Za-z0-9_-]` (else 400).
    #[param(
        min_length = 1,
        max_length = 63,
        pattern = "^[A-Za-z0-9_-]+$",
        example = "demo"
    )]
    board: String,
}

/// The path of a player's routes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct PlayerPath {
    /// The board's id: 1 to 63 characters of `[A-Za-z0-9_-]` (else 400).
    #[param(
        min_length = 1,
        max_length = 63,
        pattern = "^[A-Za-z0-9_-]+$",
        example = "demo"
    )]
    board: String,
    /// The player's id on that board: 1 to 63 characters of
    /// `[A-Za-z0-9_-]` (else 400).
    #[param(
        min_length = 1,
        max_length = 63,
        pattern = "^[A-Za-z0-9_-]+$",
        example = "alice"
    )]
    player: String,
}

/// The query of `GET /boards/{board}/`: both concern its stream.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)]
pub struct BoardQuery {
    /// The marker of Pushpin's recovery link: with `1`, the request is a
    /// recovery request, answered as the stream whatever `Accept` says.
    #[param(required = false, example = "1")]
    recover: String,
    /// Where EventSource polyfills put `Last-Event-ID`.
    #[param(required = false, example = "3f0c2a9d1b7e4c55")]
    lastEventId: String,
}

/// `Last-Event-ID`, on a stream request.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct LastEventId {
    /// The `id` of the last event the client has: the first event is left
    /// out if the board is still at that version.
    #[param(
        required = false,
        rename = "Last-Event-ID",
        example = "3f0c2a9d1b7e4c55"
    )]
    last_event_id: String,
}

/// `If-None-Match`, on the answers that are the page's files.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IfNoneMatch {
    /// An ETag of the HTML page or file: 304 if it is still current.
    #[param(required = false, rename = "If-None-Match")]
    if_none_match: String,
}

/// `GET /boards/{board}/`: the board as JSON, its event stream, or the page.
#[utoipa::path(
    get,
    path = "/boards/{board}/",
    tag = "boards",
    operation_id = "getBoard",
    summary = "The board, its live event stream, or its page",
    description = include_str!("openapi/board.md"),
    params(BoardPath, BoardQuery, LastEventId, IfNoneMatch),
    responses(
        (status = 200, description = "The board as JSON; or, when `Accept` prefers \
`text/event-stream`, its stream (held open by Pushpin); or, when `Accept` prefers `text/html`, \
the page. `Vary: Accept`.", content(
            (domain::Board = "application/json"),
            (String = "text/event-stream", example = json!("id: 3f0c2a9d1b7e4c55\nevent: update\ndata: {\"id\":\"demo\",\"name\":\"Demo board\",\"rules\":{\"order\":\"desc\",\"operator\":\"incr\",\"top\":5},\"players\":[{\"id\":\"alice\",\"name\":\"Alice\",\"score\":8,\"rank\":1}]}\n\n")),
            (String = "text/html"),
        )),
        (status = 304, description = "The page is unchanged (`If-None-Match` named its ETag)"),
        (status = 400, response = error::BadRequest),
        (status = 403, description = "A stream request that Pushpin did not sign \
(`stream_requires_proxy`): streams are served only through the proxy", body = ErrorBody),
        (status = 404, response = error::NotFound),
        (status = 406, description = "`Accept` allows none of JSON, the event stream and \
HTML", body = ErrorBody),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn get_board(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult {
    let board = board_id(&path)?;
    // `recover` marks Pushpin's recovery link; `lastEventId` is where
    // EventSource polyfills put Last-Event-ID.
    Query::parse(&req, &["recover", "lastEventId"])?;
    let streams = &state.streams;
    // Pushpin's recovery requests say `Accept: */*`; they are recognised by
    // Grip-Last or the link's marker instead.
    let stream_request = match streams.recovery_request(&req, &board) {
        Some(recovery) => Some(recovery),
        None => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let offered = [
                Representation::Json,
                Representation::EventStream,
                Representation::Html,
            ];
            match negotiate(accept, &offered) {
                Some(Representation::EventStream) => Some(streams.client_request(&req)),
                Some(Representation::Json) => None,
                // The page finds out for itself whether the board exists,
                // so it loads even while the database is down.
                Some(Representation::Html) => return Ok(page::board_page(&req)),
                None => {
                    return Err(ApiError::NotAcceptable {
                        available: &["application/json", "text/event-stream", "text/html"],
                    })
                }
            }
        }
    };
    if stream_request.is_some() {
        streams.check_signature(&req)?;
    }
    state.ready().await?;
    let snapshot = state.store.snapshot(&board).await?;
    match (snapshot, stream_request) {
        (Some(snapshot), None) => {
            Ok(json_response(StatusCode::OK, snapshot.board()).customize_vary())
        }
        (Some(snapshot), Some(request)) => streams.hold(&board, &snapshot, &request),
        (None, Some(request)) if request.recovery => Ok(streams.gone(&board)),
        (None, _) => Err(ApiError::BoardNotFound(board.to_string())),
    }
}

trait VaryAccept {
    fn customize_vary(self) -> Self;
}

impl VaryAccept for HttpResponse {
    /// Responses differ by `Accept`, so caches must key on it.
    fn customize_vary(mut self) -> Self {
        self.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        self
    }
}

/// `DELETE /boards/{board}/`: deletes a board and its players (write credential required).
#[utoipa::path(
    delete,
    path = "/boards/{board}/",
    tag = "boards",
    operation_id = "deleteBoard",
    summary = "Deletes the board and all its players",
    description = "Its subscribers get `event: deleted`, then their streams close.",
    params(BoardPath),
    security(("writeCredential" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = error::BadRequest),
        (status = 401, response = error::Unauthorized),
        (status = 404, response = error::NotFound),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn delete_board(
    _: WriteAccess,
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult {
    let board = board_id(&path)?;
    Query::parse(&req, &[])?;
    state.ready().await?;
    if state.store.delete_board(&board).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::BoardNotFound(board.to_string()))
    }
}

/// The most players `?ids=` asks for at once.
const MAX_IDS: usize = 100;

/// The query of `GET /boards/{board}/players/`: a page (`limit` with
/// `cursor` or `rank`), or `ids` alone.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PlayersQuery {
    /// How many players (1 to 1000, default 100).
    #[param(required = false, minimum = 1, maximum = 1000, example = 50)]
    limit: u32,
    /// The `next_cursor` of the page before: the page starts after it.
    /// Opaque; one this API did not give is a 400. Not with `rank`.
    #[param(required = false)]
    cursor: String,
    /// The page starts at this rank (empty past the end). Not with `cursor`.
    #[param(
        required = false,
        minimum = 1,
        maximum = 9_007_199_254_740_991_i64,
        example = 1000
    )]
    rank: i64,
    /// Friends: up to 100 comma-separated player ids, answered with their
    /// board-wide ranks. Not with `limit`, `cursor` or `rank`.
    #[param(required = false, example = "alice,bob,carol")]
    ids: String,
}

/// A player with, when it is ranked, its rank and its percentile; a single
/// player's answer also says `out_of`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RankedPlayer {
    #[serde(flatten)]
    player: domain::Player,
    /// How many players the board ranks (a single player's answer, when
    /// the player is ranked).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1)]
    out_of: Option<u64>,
    /// The share of ranked players this one is ahead of or level with, in
    /// percent with two decimals: `100 × (out_of − rank + 1) / out_of`
    /// (when the player is ranked).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, maximum = 100)]
    percentile: Option<f64>,
}

/// A page of a board's players in rank order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerPage {
    players: Vec<RankedPlayer>,
    /// How many players the board ranks.
    out_of: u64,
    /// The `cursor` of the next page; null when this page is the last.
    #[schema(required)]
    next_cursor: Option<String>,
}

/// The given players with their board-wide ranks (`?ids=`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Friends {
    /// In rank order; players not ranked yet follow.
    players: Vec<RankedPlayer>,
    /// How many players the board ranks.
    out_of: u64,
    /// The ids given that name no player of the board.
    missing: Vec<String>,
}

/// The answer of `GET /boards/{board}/players/`: a page, or with `ids`
/// the friends.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum PlayersAnswer {
    // The variants carry no doc comments: they would become descriptions
    // in the OpenAPI document.
    Page(PlayerPage),
    Friends(Friends),
}

/// `GET /boards/{board}/players/`: the board in rank order, a page at a
/// time, from the top, after a `cursor` (the `next_cursor` of the page
/// before) or from a `rank`; or, with `ids=a,b,c`, those players with their
/// board-wide ranks. Every answer says `out_of` how many players are ranked,
/// and each ranked player its `percentile`. Paging is by position (score,
/// then id), so a walk while others write misses or repeats only players
/// whose own score changed meanwhile.
#[utoipa::path(
    get,
    path = "/boards/{board}/players/",
    tag = "players",
    operation_id = "listPlayers",
    summary = "A page of the board's players in rank order, or the given players' ranks",
    params(BoardPath, PlayersQuery),
    responses(
        (status = 200, description = "A page (`next_cursor`), or with `ids` the players \
named (`missing`)", body = PlayersAnswer),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn list_players(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult {
    let board = board_id(&path)?;
    let query = Query::parse(&req, &["limit", "cursor", "rank", "ids"])?;
    if let Some(ids) = query.get("ids") {
        if query.has("limit") || query.has("cursor") || query.has("rank") {
            return Err(ApiError::BadRequest(
                "ids cannot be combined with limit, cursor or rank".into(),
            ));
        }
        return friends(state, board, ids).await;
    }
    let limit = match query.get("limit") {
        None => DEFAULT_PLAYER_LIST,
        Some(raw) => bounded_param("limit", raw, 1, MAX_LIST)?,
    };
    let start = match (query.get("cursor"), query.get("rank")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either cursor or rank, not both".into(),
            ))
        }
        (Some(raw), None) => {
            let (score, player) = Cursor::decode(raw)?.into_position();
            PageStart::After(score, player)
        }
        (None, Some(raw)) => {
            PageStart::Rank(bounded_param("rank", raw, 1, domain::MAX_SCORE as usize)? as u64)
        }
        (None, None) => PageStart::Top,
    };
    state.ready().await?;
    // The first page's ranks are positions; the others are computed.
    let _admitted = match start {
        PageStart::Top => None,
        _ => Some(state.rank_read().await?),
    };
    let page = state
        .store
        .page(&board, start, limit)
        .await?
        .ok_or_else(|| ApiError::BoardNotFound(board.to_string()))?;
    let next = page.last.map(|(score, id)| Cursor::new(score, id).encode());
    Ok(json_response(
        StatusCode::OK,
        PlayersAnswer::Page(PlayerPage {
            players: ranked_players(page.players, page.out_of),
            out_of: page.out_of,
            next_cursor: next,
        }),
    ))
}

/// `?ids=a,b,c`: the given players (up to 100) with their board-wide
/// ranks, in rank order; players not ranked yet follow, and ids with no
/// player are listed in `missing`.
async fn friends(state: Data<AppState>, board: BoardId, raw: &str) -> ApiResult {
    let mut ids: Vec<PlayerId> = Vec::new();
    for part in raw.split(',') {
        let id = PlayerId::parse(part)
            .map_err(|e| ApiError::BadRequest(format!("ids: {part:?}: {e}")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!(
            "ids must name at most {MAX_IDS} players, got {}",
            ids.len()
        )));
    }
    state.ready().await?;
    // Each rank is a query of its own: the read takes a place per query
    // it keeps in flight, so `RANK_READS` bounds rank queries, not requests.
    let (_admitted, parallel) = state
        .rank_reads(ids.len().min(store::PARALLEL_RANKS))
        .await?;
    let ranked = state
        .store
        .players_ranked(&board, &ids, parallel)
        .await?
        .ok_or_else(|| ApiError::BoardNotFound(board.to_string()))?;
    let missing: Vec<String> = ids
        .iter()
        .map(PlayerId::as_str)
        .filter(|id| !ranked.players.iter().any(|p| p.id == *id))
        .map(str::to_owned)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        PlayersAnswer::Friends(Friends {
            players: ranked_players(ranked.players, ranked.out_of),
            out_of: ranked.out_of,
            missing,
        }),
    ))
}

/// The share of a board's ranked players that a player at `rank` is ahead
/// of or level with, in percent with two decimals: 100 for the first, and
/// `100 / out_of` for the last.
fn percentile(rank: u64, out_of: u64) -> f64 {
    let out_of = out_of.max(rank).max(1);
    let share = (out_of - rank + 1) as f64 * 100.0 / out_of as f64;
    (share * 100.0).floor() / 100.0
}

/// A player in a listing, with its `percentile` when it has a rank.
fn ranked_player(player: domain::Player, out_of: u64) -> RankedPlayer {
    RankedPlayer {
        percentile: player.rank.map(|rank| percentile(rank, out_of)),
        out_of: None,
        player,
    }
}

fn ranked_players(players: Vec<domain::Player>, out_of: u64) -> Vec<RankedPlayer> {
    players
        .into_iter()
        .map(|p| ranked_player(p, out_of))
        .collect()
}

/// A single player's answer: with its rank, also `out_of` and `percentile`.
fn player_answer(player: domain::Player, out_of: u64) -> RankedPlayer {
    let out_of = player.rank.map(|rank| out_of.max(rank));
    RankedPlayer {
        out_of,
        ..ranked_player(player, out_of.unwrap_or_default())
    }
}

/// A query parameter that must be an integer from `min` to `max`.
fn bounded_param(name: &str, raw: &str, min: usize, max: usize) -> Result<usize, ApiError> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} must be a number from {min} to {max}, got {raw:?}"
            ))
        })
}

/// The body of `POST /boards/{board}/players/`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlayer {
    /// The player's id on this board; a UUID when absent. Taken: 409.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[A-Za-z0-9_-]+$",
        examples("ann")
    )]
    id: Option<String>,
    /// Required: trimmed, 1 to 100 characters, no control characters.
    #[schema(
        required,
        nullable = false,
        min_length = 1,
        max_length = 100,
        examples("Ann")
    )]
    name: Option<String>,
}

/// `POST /boards/{board}/players/`: adds a player (write credential required).
#[utoipa::path(
    post,
    path = "/boards/{board}/players/",
    tag = "players",
    operation_id = "createPlayer",
    summary = "Adds a player to the board",
    description = "Its score is 0 on an `incr` board; on a `set` or `best` board it has no \
score (null), so no rank, until its first submission.",
    params(BoardPath),
    request_body(content(
        (CreatePlayer = "application/json"),
        (CreatePlayer = "application/x-www-form-urlencoded"),
    )),
    security(("writeCredential" = [])),
    responses(
        (status = 201, description = "Created", body = domain::Player,
            headers(("Location" = String, description = "`/boards/{board}/players/{id}/`"))),
        (status = 400, response = error::BadRequest),
        (status = 401, response = error::Unauthorized),
        (status = 408, response = error::RequestTimeout),
        (status = 404, response = error::NotFound),
        (status = 409, description = "A player with this id exists on the board", body = ErrorBody),
        (status = 413, response = error::PayloadTooLarge),
        (status = 415, response = error::UnsupportedMediaType),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn create_player(
    _: WriteAccess,
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Body(body): Body<CreatePlayer>,
) -> ApiResult {
    let board = board_id(&path)?;
    Query::parse(&req, &[])?;
    let id = body.id.as_deref().map(PlayerId::parse).transpose()?;
    let name = Name::parse(
        &body
            .name
            .ok_or_else(|| ApiError::BadRequest("field \"name\" is required".into()))?,
    )?;
    state.ready().await?;
    let requested = id.clone();
    let player = state
        .store
        .create_player(&board, NewPlayer { id, name })
        .await
        .map_err(|e| match (e, requested) {
            (store::StoreError::Conflict, Some(id)) => {
                ApiError::Conflict(format!("player {:?}", id.as_str()))
            }
            (e, _) => e.into(),
        })?
        .ok_or_else(|| ApiError::BoardNotFound(board.to_string()))?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/boards/{}/players/{}/", board, player.id),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(player))
}

/// `GET /boards/{board}/players/{player}/`: the player with its rank, out
/// of how many, and its percentile.
#[utoipa::path(
    get,
    path = "/boards/{board}/players/{player}/",
    tag = "players",
    operation_id = "getPlayer",
    summary = "The player with its rank, out of how many, and its percentile",
    params(PlayerPath),
    responses(
        (status = 200, description = "The player", body = RankedPlayer),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn get_player(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (board, player) = (board_id(&path.0)?, player_id(&path.1)?);
    Query::parse(&req, &[])?;
    state.ready().await?;
    let _admitted = state.rank_read().await?;
    let found = found(
        state.store.around(&board, &player, 0).await?,
        &board,
        &player,
    )?;
    Ok(json_response(
        StatusCode::OK,
        player_answer(found.player, found.out_of),
    ))
}

/// The query of `around/`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AroundQuery {
    /// How many players above and below (0 to 50, default 2).
    #[param(required = false, minimum = 0, maximum = 50, example = 2)]
    n: u32,
}

/// The answer of `around/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Around {
    /// The player, as `GET .../players/{player}/` answers it.
    player: RankedPlayer,
    /// The players above, the player, and the players below, in rank order.
    players: Vec<RankedPlayer>,
    /// How many players the board ranks.
    out_of: u64,
}

/// `GET /boards/{board}/players/{player}/around/?n=2`: the player with its
/// rank, and up to `n` (0 to 50, default 2) players above and below, in
/// rank order, each with its rank.
#[utoipa::path(
    get,
    path = "/boards/{board}/players/{player}/around/",
    tag = "players",
    operation_id = "around",
    summary = "The player and up to `n` players above and below it, in rank order",
    params(PlayerPath, AroundQuery),
    responses(
        (status = 200, description = "The neighbourhood", body = Around),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn around(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (board, player) = (board_id(&path.0)?, player_id(&path.1)?);
    let query = Query::parse(&req, &["n"])?;
    let n = match query.get("n") {
        None => 2,
        Some(raw) => bounded_param("n", raw, 0, MAX_AROUND)?,
    };
    state.ready().await?;
    let _admitted = state.rank_read().await?;
    let found = found(
        state.store.around(&board, &player, n).await?,
        &board,
        &player,
    )?;
    let mut players: Vec<_> = found.above.into_iter().rev().collect();
    players.push(found.player.clone());
    players.extend(found.below);
    Ok(json_response(
        StatusCode::OK,
        Around {
            player: player_answer(found.player, found.out_of),
            players: ranked_players(players, found.out_of),
            out_of: found.out_of,
        },
    ))
}

/// The found value of a lookup, or the 404 for what was missing.
fn found<T>(lookup: Lookup<T>, board: &BoardId, player: &PlayerId) -> Result<T, ApiError> {
    match lookup {
        Lookup::Found(t) => Ok(t),
        Lookup::NoBoard => Err(ApiError::BoardNotFound(board.to_string())),
        Lookup::NoPlayer => Err(ApiError::PlayerNotFound {
            board: board.to_string(),
            player: player.to_string(),
        }),
    }
}

/// `DELETE /boards/{board}/players/{player}/`: removes a player (write credential required).
#[utoipa::path(
    delete,
    path = "/boards/{board}/players/{player}/",
    tag = "players",
    operation_id = "deletePlayer",
    summary = "Removes the player",
    params(PlayerPath),
    security(("writeCredential" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = error::BadRequest),
        (status = 401, response = error::Unauthorized),
        (status = 404, response = error::NotFound),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn delete_player(
    _: WriteAccess,
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (board, player) = (board_id(&path.0)?, player_id(&path.1)?);
    Query::parse(&req, &[])?;
    state.ready().await?;
    if state.store.delete_player(&board, &player).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::PlayerNotFound {
            board: board.to_string(),
            player: player.to_string(),
        })
    }
}

/// The body of `POST .../score-add/`; it may be empty.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreAdd {
    /// What to add (default 1); the score must stay within ±(2^53 − 1).
    #[schema(minimum = -9_007_199_254_740_991_i64, maximum = 9_007_199_254_740_991_i64, examples(10))]
    value: Option<i64>,
}

/// The query of a score write.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ScoreQuery {
    /// `rank`: the answer also carries the rank the write produced, with
    /// `out_of` and `percentile` (left out, still 200, in the rare moment
    /// the board's rank digest is being brought up to date).
    #[param(required = false, inline)]
    with: With,
}

/// The `Idempotency-Key` of a score write.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKeyHeader {
    /// Makes the write safe to retry: a repeat of the key on the same player
    /// within 15 minutes changes nothing and answers with the player as the
    /// first request left it. 1 to 128 visible ASCII characters, at most
    /// one such header (else 400).
    #[param(
        required = false,
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 128,
        pattern = "^[!-~]+$",
        example = "7f1c0c2e-retry-safe"
    )]
    idempotency_key: String,
}

/// What a score write's answer adds.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum With {
    /// `with=rank`: the player's rank after the write.
    Rank,
}

/// The optional `Idempotency-Key` header of a score-add: at most one, of
/// 1–128 visible ASCII characters.
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = req.headers().get_all("idempotency-key");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(
            "send at most one Idempotency-Key header".into(),
        ));
    }
    let raw = value.to_str().map_err(|_| {
        ApiError::BadRequest("Idempotency-Key must be visible ASCII characters only".into())
    })?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(ApiError::BadRequest)
}

/// `POST .../score-add/`: adds 1, or the integer `value` of a JSON or form
/// body, in one atomic update, and answers with the player as that update
/// left it. With an `Idempotency-Key`, a repeat of the key on this player
/// within the window changes nothing and answers with the first result.
#[utoipa::path(
    post,
    path = "/boards/{board}/players/{player}/score-add/",
    tag = "scores",
    operation_id = "scoreAdd",
    summary = "Adds 1, or `value`, to the player's score, on any board",
    description = "One atomic update; the answer is the player as that update left it.",
    params(PlayerPath, ScoreQuery, IdempotencyKeyHeader),
    request_body(description = "May be empty: adds 1.", content(
        (ScoreAdd = "application/json"),
        (ScoreAdd = "application/x-www-form-urlencoded"),
    )),
    security(("writeCredential" = [])),
    responses(
        (status = 200, description = "The player with the score this write produced", body = RankedPlayer),
        (status = 400, response = error::BadRequest),
        (status = 401, response = error::Unauthorized),
        (status = 408, response = error::RequestTimeout),
        (status = 404, response = error::NotFound),
        (status = 422, description = "The score would leave ±(2^53 − 1) \
(`score_out_of_range`); nothing is written", body = ErrorBody),
        (status = 413, response = error::PayloadTooLarge),
        (status = 415, response = error::UnsupportedMediaType),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn score_add(
    _: WriteAccess,
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    Body(body): Body<ScoreAdd>,
) -> ApiResult {
    let (board, player) = (board_id(&path.0)?, player_id(&path.1)?);
    let delta = match body.value {
        Some(v) => ScoreDelta::new(v)?,
        None => ScoreDelta::ONE,
    };
    let key = idempotency_key(&req)?;
    let with_rank = with_rank(&req)?;
    state.ready().await?;
    match state
        .store
        .add_score(&board, &player, delta, key.as_ref())
        .await?
    {
        Some(p) => Ok(json_response(
            StatusCode::OK,
            write_answer(&state, &board, p, with_rank).await?,
        )),
        None => Err(ApiError::PlayerNotFound {
            board: board.to_string(),
            player: player.to_string(),
        }),
    }
}

/// Whether a score write asks for its rank: `?with=rank`.
fn with_rank(req: &HttpRequest) -> Result<bool, ApiError> {
    let query = Query::parse(req, &["with"])?;
    match query.get("with") {
        None => Ok(false),
        Some("rank") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "with takes \"rank\", got {other:?}"
        ))),
    }
}

/// A score write's answer: the player as the write left it, and, when
/// asked, the rank that score has now, out of how many, and the
/// percentile. The rank is read in a second query, after the write; it is
/// left out when the board's digest cannot give it at once (the answer is
/// still 200: the write is done).
async fn write_answer(
    state: &AppState,
    board: &BoardId,
    mut player: domain::Player,
    with_rank: bool,
) -> Result<RankedPlayer, ApiError> {
    let unranked = |player| RankedPlayer {
        player,
        out_of: None,
        percentile: None,
    };
    let Some(score) = player.score.filter(|_| with_rank) else {
        return Ok(unranked(player));
    };
    let id = player_id(&player.id)?;
    match state.store.rank_of(board, &id, score).await {
        Ok(Some((rank, out_of))) => {
            player.rank = Some(rank);
            Ok(player_answer(player, out_of))
        }
        // The write is done: a rank the digest cannot give at once (its
        // keeper is behind) is left out rather than turning the write's
        // answer into an error that a client would retry.
        Err(store::StoreError::RanksBehind) => Ok(unranked(player)),
        Ok(None) => Err(ApiError::BoardNotFound(board.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// The body of `POST .../score/`: the value to submit, required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreSubmit {
    /// Required: the value, within ±(2^53 − 1).
    #[schema(
        required,
        nullable = false,
        minimum = -9_007_199_254_740_991_i64,
        maximum = 9_007_199_254_740_991_i64,
        examples(6512)
    )]
    value: Option<i64>,
}

/// The answer of `POST .../score/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    #[serde(flatten)]
    player: RankedPlayer,
    /// Whether the submission moved the score (a `best` submission that is
    /// no better, or a `set` to the same score, does not).
    changed: bool,
}

/// `POST .../score/`: submits `value` under the board's operator (`incr`
/// adds it, `set` replaces the score, `best` keeps the better of the two)
/// in one atomic update, and answers with the player and whether the
/// submission changed the score. Takes an `Idempotency-Key` as score-add
/// does.
#[utoipa::path(
    post,
    path = "/boards/{board}/players/{player}/score/",
    tag = "scores",
    operation_id = "scoreSubmit",
    summary = "Submits `value` under the board's operator",
    description = "`incr` adds it, `set` replaces the score, `best` keeps the better of the \
two under the board's order; one atomic update.",
    params(PlayerPath, ScoreQuery, IdempotencyKeyHeader),
    request_body(content(
        (ScoreSubmit = "application/json"),
        (ScoreSubmit = "application/x-www-form-urlencoded"),
    )),
    security(("writeCredential" = [])),
    responses(
        (status = 200, description = "The player and whether the score moved", body = Submitted),
        (status = 400, response = error::BadRequest),
        (status = 401, response = error::Unauthorized),
        (status = 408, response = error::RequestTimeout),
        (status = 404, response = error::NotFound),
        (status = 422, description = "The score would leave ±(2^53 − 1) \
(`score_out_of_range`); nothing is written", body = ErrorBody),
        (status = 413, response = error::PayloadTooLarge),
        (status = 415, response = error::UnsupportedMediaType),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn score_submit(
    _: WriteAccess,
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    Body(body): Body<ScoreSubmit>,
) -> ApiResult {
    let (board, player) = (board_id(&path.0)?, player_id(&path.1)?);
    let value = body
        .value
        .ok_or_else(|| ApiError::BadRequest("field \"value\" is required".into()))?;
    let value = ScoreDelta::new(value)?.get();
    let key = idempotency_key(&req)?;
    let with_rank = with_rank(&req)?;
    state.ready().await?;
    match state
        .store
        .submit_score(&board, &player, value, key.as_ref())
        .await?
    {
        Some(done) => {
            let player = write_answer(&state, &board, done.player, with_rank).await?;
            Ok(json_response(
                StatusCode::OK,
                Submitted {
                    player,
                    changed: done.changed,
                },
            ))
        }
        None => Err(ApiError::PlayerNotFound {
            board: board.to_string(),
            player: player.to_string(),
        }),
    }
}

/// How many finished periods `periods/` lists.
const MAX_PERIODS: usize = 100;

/// `GET /boards/{board}/periods/`: the board's finished periods, newest
/// first (at most 100), each with its final standings.
#[utoipa::path(
    get,
    path = "/boards/{board}/periods/",
    tag = "boards",
    operation_id = "listPeriods",
    summary = "The board's finished periods, newest first (at most 100)",
    params(BoardPath),
    responses(
        (status = 200, description = "The finished periods", body = crate::openapi::PeriodList),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn periods(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult {
    let board = board_id(&path)?;
    Query::parse(&req, &[])?;
    state.ready().await?;
    let periods = state
        .store
        .periods(&board, MAX_PERIODS)
        .await?
        .ok_or_else(|| ApiError::BoardNotFound(board.to_string()))?;
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({ "periods": periods }),
    ))
}

/// The path of one finished period.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct PeriodPath {
    /// The board's id: 1 to 63 characters of `[A-Za-z0-9_-]` (else 400).
    #[param(
        min_length = 1,
        max_length = 63,
        pattern = "^[A-Za-z0-9_-]+$",
        example = "demo"
    )]
    board: String,
    /// The period's number, from 1 (else 400).
    #[param(minimum = 1, maximum = 4_294_967_295_u64, example = 1)]
    number: u32,
}

/// `GET /boards/{board}/periods/{number}/`: one finished period.
#[utoipa::path(
    get,
    path = "/boards/{board}/periods/{number}/",
    tag = "boards",
    operation_id = "getPeriod",
    summary = "One finished period: its final top and how many players had a score",
    params(PeriodPath),
    responses(
        (status = 200, description = "The period", body = crate::openapi::Period),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 503, response = error::Unavailable),
        (status = 500, response = error::Internal),
    ),
)]
pub async fn period(
    state: Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let board = board_id(&path.0)?;
    Query::parse(&req, &[])?;
    let number = bounded_param("period number", &path.1, 1, u32::MAX as usize)? as u64;
    state.ready().await?;
    match state.store.period(&board, number).await? {
        Some(p) => Ok(json_response(StatusCode::OK, p)),
        None if state.store.board_exists(&board).await? => Err(ApiError::PeriodNotFound {
            board: board.to_string(),
            number,
        }),
        None => Err(ApiError::BoardNotFound(board.to_string())),
    }
}
