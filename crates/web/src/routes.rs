//! The HTTP API. Handlers validate input into domain types, call the store,
//! and render JSON or GRIP hold instructions; they hold no state of their own.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use domain::{BoardId, Name, Operator, Order, PlayerId, Reset, Rules, ScoreDelta, TOP_N};
use serde::Deserialize;
use serde_json::json;
use store::reql::IdempotencyKey;
use store::{Lookup, NewBoard, NewPlayer, PageStart};

use crate::auth::WriteAccess;
use crate::body::Body;
use crate::cursor::Cursor;
use crate::error::ApiError;
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

fn json_response(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(body)
}

/// `/`: the live page for browsers, a small JSON index for API clients.
async fn index(req: HttpRequest) -> HttpResponse {
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
        json!({ "name": "leaderboard", "boards": "/boards/" }),
    )
}

async fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, json!({ "status": "ok" }))
}

async fn metrics(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(state.metrics.render())
}

async fn readyz(state: Data<AppState>) -> ApiResult {
    state.ready().await?;
    state.store.ping().await?;
    Ok(json_response(StatusCode::OK, json!({ "status": "ready" })))
}

async fn list_boards(state: Data<AppState>, req: HttpRequest) -> ApiResult {
    Query::parse(&req, &[])?;
    state.ready().await?;
    let boards = state.store.list_boards(MAX_LIST).await?;
    Ok(json_response(StatusCode::OK, json!({ "boards": boards })))
}

/// The body of `POST /boards/`; it may be empty. The rules are fixed from
/// then on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBoard {
    id: Option<String>,
    name: Option<String>,
    order: Option<Order>,
    operator: Option<Operator>,
    top: Option<usize>,
    reset: Option<String>,
}

async fn create_board(
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

async fn get_board(state: Data<AppState>, req: HttpRequest, path: web::Path<String>) -> ApiResult {
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
        (Some(snapshot), None) => Ok(json_response(
            StatusCode::OK,
            serde_json::to_value(snapshot.board()).unwrap_or_default(),
        )
        .customize_vary()),
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

async fn delete_board(
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

/// `GET /boards/{board}/players/`: the board in rank order, a page at a
/// time, from the top, after a `cursor` (the `next_cursor` of the page
/// before) or from a `rank`; or, with `ids=a,b,c`, those players with their
/// board-wide ranks. Every answer says `out_of` how many players are ranked,
/// and each ranked player its `percentile`. Paging is by position (score,
/// then id), so a walk while others write misses or repeats only players
/// whose own score changed meanwhile.
async fn list_players(
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
        json!({
            "players": ranked_players(&page.players, page.out_of),
            "out_of": page.out_of,
            "next_cursor": next,
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
    let missing: Vec<&str> = ids
        .iter()
        .map(PlayerId::as_str)
        .filter(|id| !ranked.players.iter().any(|p| p.id == *id))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "players": ranked_players(&ranked.players, ranked.out_of),
            "out_of": ranked.out_of,
            "missing": missing,
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

/// A player's JSON, with its `percentile` when it has a rank.
fn ranked_player(player: &domain::Player, out_of: u64) -> serde_json::Value {
    let mut value = serde_json::to_value(player).unwrap_or_default();
    if let Some(rank) = player.rank {
        value["percentile"] = json!(percentile(rank, out_of));
    }
    value
}

fn ranked_players(players: &[domain::Player], out_of: u64) -> Vec<serde_json::Value> {
    players.iter().map(|p| ranked_player(p, out_of)).collect()
}

/// A single player's JSON: with its rank, also `out_of` and `percentile`.
fn player_answer(player: &domain::Player, out_of: u64) -> serde_json::Value {
    let mut value = ranked_player(player, out_of);
    if let Some(rank) = player.rank {
        value["out_of"] = json!(out_of.max(rank));
    }
    value
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePlayer {
    id: Option<String>,
    name: Option<String>,
}

async fn create_player(
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
async fn get_player(
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
        player_answer(&found.player, found.out_of),
    ))
}

/// `GET /boards/{board}/players/{player}/around/?n=2`: the player with its
/// rank, and up to `n` (0 to 50, default 2) players above and below, in
/// rank order, each with its rank.
async fn around(
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
        json!({
            "player": player_answer(&found.player, found.out_of),
            "players": ranked_players(&players, found.out_of),
            "out_of": found.out_of,
        }),
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

async fn delete_player(
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreAdd {
    value: Option<i64>,
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
async fn score_add(
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
) -> Result<serde_json::Value, ApiError> {
    let Some(score) = player.score.filter(|_| with_rank) else {
        return Ok(serde_json::to_value(player).unwrap_or_default());
    };
    let id = player_id(&player.id)?;
    match state.store.rank_of(board, &id, score).await {
        Ok(Some((rank, out_of))) => {
            player.rank = Some(rank);
            Ok(player_answer(&player, out_of))
        }
        // The write is done: a rank the digest cannot give at once (its
        // keeper is behind) is left out rather than turning the write's
        // answer into an error that a client would retry.
        Err(store::StoreError::RanksBehind) => Ok(serde_json::to_value(player).unwrap_or_default()),
        Ok(None) => Err(ApiError::BoardNotFound(board.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// The body of `POST .../score/`: the value to submit, required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreSubmit {
    value: Option<i64>,
}

/// `POST .../score/`: submits `value` under the board's operator (`incr`
/// adds it, `set` replaces the score, `best` keeps the better of the two)
/// in one atomic update, and answers with the player and whether the
/// submission changed the score. Takes an `Idempotency-Key` as score-add
/// does.
async fn score_submit(
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
            let mut answer = write_answer(&state, &board, done.player, with_rank).await?;
            answer["changed"] = json!(done.changed);
            Ok(json_response(StatusCode::OK, answer))
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
async fn periods(state: Data<AppState>, req: HttpRequest, path: web::Path<String>) -> ApiResult {
    let board = board_id(&path)?;
    Query::parse(&req, &[])?;
    state.ready().await?;
    let periods = state
        .store
        .periods(&board, MAX_PERIODS)
        .await?
        .ok_or_else(|| ApiError::BoardNotFound(board.to_string()))?;
    Ok(json_response(StatusCode::OK, json!({ "periods": periods })))
}

/// `GET /boards/{board}/periods/{number}/`: one finished period.
async fn period(
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
