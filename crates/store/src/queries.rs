use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use domain::{Board, BoardId, BoardSummary, Name, Player, PlayerId, Rules, ScoreDelta, Snapshot};
use futures::StreamExt;
use reql_terms::Term;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::pool::{Pool, PoolOptions};
use crate::rank_reads::{rank_from, root_for, walk_of, DigestCopies};
use crate::ranks::{self, RankKey, LIVE_CAP};
use crate::reql::{
    self, player_key, Idempotency, IdempotencyKey, PageStart, BOARD_RESETS, OUT_OF_RANGE,
};
use crate::{DatabaseUrl, StoreError};

/// Rows per answer when a query walks a whole table.
const PAGE: usize = 1000;
/// Ranks of one friends list read at once.
pub const PARALLEL_RANKS: usize = 8;

/// The leaderboard's queries, over a pool of connections.
///
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Store {
    pool: Arc<Pool>,
    resetting: Arc<Resetting>,
    digests: Arc<DigestCopies>,
}

/// The boards this process has seen reset, so that their score-adds read
/// the board at once (see [`Store::add_score`]). Only a hint: a wrong one
/// costs a round trip, never a wrong score. Bounded: when full it starts
/// again from empty.
#[derive(Default)]
struct Resetting(Mutex<HashSet<String>>);

impl Resetting {
    const MOST: usize = 10_000;

    fn contains(&self, board: &BoardId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(board.as_str())
    }

    fn insert(&self, board: &BoardId) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= Self::MOST {
            set.clear();
        }
        set.insert(board.as_str().to_owned());
    }
}

/// What a client asks for when creating a board.
#[derive(Debug, Clone)]
pub struct NewBoard {
    /// A chosen id, or `None` for a random UUID.
    pub id: Option<BoardId>,
    /// A display name; `None` stores an empty one.
    pub name: Option<Name>,
    /// How scores combine and order, and whether the board resets.
    pub rules: Rules,
}

/// A board as stored: its id, name, rules and, if it resets, its period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreatedBoard {
    /// The board's id.
    pub id: String,
    /// Its display name, empty if it has none.
    #[serde(default)]
    pub name: String,
    /// How scores combine and order, and whether the board resets.
    #[serde(default)]
    pub rules: Rules,
    /// The period in force, on a board that resets.
    #[serde(default)]
    pub period: Option<StoredPeriod>,
    /// The period whose reset is unfinished, if one is.
    #[serde(default)]
    pub archiving: Option<StoredPeriod>,
    /// The slot (a hash of the id) that puts the board in a worker's shard;
    /// `None` on a board stored before slots and not migrated yet.
    #[serde(default)]
    pub slot: Option<u16>,
}

/// A board's period as stored: its number and its bounds in milliseconds
/// since the epoch (RethinkDB numbers are doubles).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct StoredPeriod {
    /// The period's number, from 1 for the board's first.
    pub n: u64,
    /// When the period started, in milliseconds since the epoch.
    pub start: f64,
    /// When it ends (the next reset), in milliseconds since the epoch.
    pub end: f64,
    /// When the period after it ends, in milliseconds since the epoch:
    /// writes past it are refused until the board has switched (see
    /// `reql::RESET_BEHIND`). Absent on boards written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_end: Option<f64>,
}

impl StoredPeriod {
    /// [`StoredPeriod::start`] in whole milliseconds.
    pub fn start_ms(&self) -> i64 {
        self.start as i64
    }

    /// [`StoredPeriod::end`] in whole milliseconds.
    pub fn end_ms(&self) -> i64 {
        self.end as i64
    }
}

impl CreatedBoard {
    /// The board as its JSON shows it (no players).
    pub fn view(&self) -> Board {
        Board {
            id: self.id.clone(),
            name: self.name.clone(),
            rules: self.rules.clone(),
            period: self.period.map(|p| domain::PeriodInfo {
                number: p.n,
                start: domain::rfc3339(p.start_ms()),
            }),
            next_reset: self.period.map(|p| domain::rfc3339(p.end_ms())),
            ends_at_ms: self.period.map(|p| p.end_ms()),
            resetting: self.archiving.is_some(),
            players: Vec::new(),
        }
    }
}

/// A board whose reset is due: `now` is the database's clock.
#[derive(Debug, Clone)]
pub struct DueResets {
    /// The database's time of the read, in milliseconds since the epoch.
    pub now: i64,
    /// The boards whose period has ended or whose reset is unfinished.
    pub boards: Vec<CreatedBoard>,
}

/// A player with its rank and its neighbours in rank order, nearest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Around {
    /// The player asked about, with its rank.
    pub player: Player,
    /// Better-ranked players, nearest first.
    pub above: Vec<Player>,
    /// Worse-ranked players, nearest first.
    pub below: Vec<Player>,
    /// The board's ranked players.
    pub out_of: u64,
}

/// Players of a board with their ranks, and out of how many.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranked {
    /// Ranked players best first, then unranked ones by id.
    pub players: Vec<Player>,
    /// The board's ranked players.
    pub out_of: u64,
}

/// What the store found when asked for something under a board and one of
/// its players.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Both exist; what was asked for.
    Found(T),
    /// There is no such board.
    NoBoard,
    /// The board exists but has no such player.
    NoPlayer,
}

/// A page of a board in rank order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page's players in rank order, each with its rank.
    pub players: Vec<Player>,
    /// The board's ranked players.
    pub out_of: u64,
    /// The position of the page's last player, to continue after it; `None`
    /// when the page was not full (the board ends here).
    pub last: Option<(i64, String)>,
}

/// A score submission's outcome: the player as it now stands, and whether
/// the submission changed its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The player after the submission (for a repeated key, its first result).
    pub player: Player,
    /// Whether the submission changed the player's score.
    pub changed: bool,
}

/// What a client asks for when creating a player.
#[derive(Debug, Clone)]
pub struct NewPlayer {
    /// A chosen id, or `None` for a random UUID.
    pub id: Option<PlayerId>,
    /// The player's display name.
    pub name: Name,
}

/// A write's summary, as RethinkDB reports it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WriteResult {
    inserted: u64,
    replaced: u64,
    unchanged: u64,
    skipped: u64,
    deleted: u64,
    errors: u64,
    first_error: Option<String>,
    changes: Vec<Change>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Change {
    new_val: Option<Value>,
}

impl WriteResult {
    fn new_val<T: DeserializeOwned>(self) -> Result<Option<T>, StoreError> {
        match self.changes.into_iter().next().and_then(|c| c.new_val) {
            Some(v) => decode(v).map(Some),
            None => Ok(None),
        }
    }
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Decode(e.to_string()))
}

pub(crate) fn single(mut values: Vec<Value>) -> Result<Value, StoreError> {
    match values.len() {
        1 => Ok(values.pop().unwrap_or(Value::Null)),
        0 => Ok(Value::Null),
        n => Err(StoreError::Decode(format!("expected one value, got {n}"))),
    }
}

/// A player document as stored: `{id: "<board>:<player>", board, player,
/// name, score}`. Clients know a player by its `player` field.
#[derive(Deserialize)]
struct PlayerDoc {
    player: String,
    name: String,
    #[serde(default, deserialize_with = "domain::optional_score")]
    score: Option<i64>,
}

/// The client's view of a player document, read from the answer in place.
fn player_view(doc: &Value) -> Result<Player, StoreError> {
    let doc = PlayerDoc::deserialize(doc).map_err(|e| StoreError::Decode(e.to_string()))?;
    Ok(Player {
        id: doc.player,
        name: doc.name,
        score: doc.score,
        rank: None,
    })
}

fn player_views(docs: Vec<Value>) -> Result<Vec<Player>, StoreError> {
    docs.iter().map(player_view).collect()
}

/// A stored period as the API shows it: without its key and board.
fn period_view(mut doc: Value) -> Value {
    if let Some(map) = doc.as_object_mut() {
        map.remove("id");
        map.remove("board");
    }
    doc
}

/// Players in rank order, the first of them at rank `first`.
fn ranked_from(first: u64, docs: Vec<Value>) -> Result<Vec<Player>, StoreError> {
    let mut players = player_views(docs)?;
    for (i, p) in players.iter_mut().enumerate() {
        p.rank = Some(first + i as u64);
    }
    Ok(players)
}

impl Store {
    /// A store for `url`. Connections are opened lazily, so this succeeds
    /// even while the database is down.
    pub fn new(url: DatabaseUrl, options: PoolOptions) -> Self {
        Self {
            pool: Arc::new(Pool::new(url, options)),
            resetting: Arc::default(),
            digests: Arc::default(),
        }
    }

    /// The copies of rank digests this process searches (see
    /// [`crate::rank_reads`]).
    pub(crate) fn digests(&self) -> &DigestCopies {
        &self.digests
    }

    /// The database this store connects to.
    pub fn url(&self) -> &DatabaseUrl {
        self.pool.url()
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub(crate) async fn run(&self, query: Term) -> Result<Vec<Value>, StoreError> {
        self.pool.run(query).await
    }

    /// Checks that the database answers and the schema is in place.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let count = single(self.run(reql::ping()).await?)?;
        if count.is_number() {
            Ok(())
        } else {
            Err(StoreError::Decode(format!("count returned {count}")))
        }
    }

    /// A board with its rules and its top players (its `top` of them, in
    /// its order, each with its rank), or `None` if no such board exists.
    /// One round trip: the board and its players are read by a single query.
    pub async fn snapshot(&self, board: &BoardId) -> Result<Option<Snapshot>, StoreError> {
        let value = single(self.run(reql::snapshot(board)).await?)?;
        #[derive(Deserialize)]
        struct Row {
            board: Option<CreatedBoard>,
            players: Vec<Value>,
        }
        let row: Row = decode(value)?;
        let Some(board) = row.board else {
            return Ok(None);
        };
        let mut view = board.view();
        view.players = ranked_from(1, row.players)?;
        Ok(Some(Snapshot::new(view)))
    }

    /// A player with its rank and up to `n` players on each side.
    pub async fn around(
        &self,
        board: &BoardId,
        player: &PlayerId,
        n: usize,
    ) -> Result<Lookup<Around>, StoreError> {
        let held = self.digests().root(board.as_str());
        let known = held.as_ref().map(|root| root.v);
        let value = single(self.run(reql::around(board, player, n, known)).await?)?;
        #[derive(Deserialize)]
        struct Row {
            board: Option<Value>,
            player: Option<Value>,
            #[serde(default)]
            root: Value,
            #[serde(default)]
            above: Vec<Value>,
            #[serde(default)]
            below: Vec<Value>,
        }
        let row: Row = decode(value)?;
        let Some(doc) = row.board else {
            return Ok(Lookup::NoBoard);
        };
        let Some(me) = row.player else {
            return Ok(Lookup::NoPlayer);
        };
        let mut player = player_view(&me)?;
        let Some(score) = player.score else {
            // Not ranked before its first submission.
            let out_of = self.ranked_on(board).await?;
            return Ok(Lookup::Found(Around {
                player,
                above: Vec::new(),
                below: Vec::new(),
                out_of,
            }));
        };
        let walk = walk_of(&doc);
        let root = root_for(self, board.as_str(), walk, held, row.root)?;
        let key = RankKey(score, player.id.clone());
        let rank = self
            .count_rank(board.as_str(), walk, root.as_deref(), &key)
            .await?;
        player.rank = Some(rank);
        let mut above = player_views(row.above)?;
        for (i, p) in above.iter_mut().enumerate() {
            p.rank = Some(rank.saturating_sub(i as u64 + 1).max(1));
        }
        let mut below = player_views(row.below)?;
        for (i, p) in below.iter_mut().enumerate() {
            p.rank = Some(rank + i as u64 + 1);
        }
        let out_of = root.map_or(0, |root| root.n).max(rank + below.len() as u64);
        Ok(Lookup::Found(Around {
            player,
            above,
            below,
            out_of,
        }))
    }

    /// The players ranked on a board, as its digest counts them.
    async fn ranked_on(&self, board: &BoardId) -> Result<u64, StoreError> {
        decode(single(
            self.run(ranks::ranked_count(board.as_str())).await?,
        )?)
    }

    /// A page of `limit` players in rank order from `start`; `None` if
    /// there is no board.
    pub async fn page(
        &self,
        board: &BoardId,
        start: PageStart,
        limit: usize,
    ) -> Result<Option<Page>, StoreError> {
        let held = self.digests().root(board.as_str());
        let known = held.as_ref().map(|root| root.v);
        let value = single(
            self.run(reql::page(board, start.clone(), limit, known))
                .await?,
        )?;
        #[derive(Deserialize)]
        struct Row {
            board: Option<Value>,
            #[serde(default)]
            players: Vec<Value>,
            #[serde(default)]
            root: Value,
            #[serde(default)]
            out_of: u64,
        }
        let row: Row = decode(value)?;
        let Some(doc) = row.board else {
            return Ok(None);
        };
        let walk = walk_of(&doc);
        let (first, docs, out_of) = match start {
            PageStart::Top => (1, row.players, row.out_of),
            PageStart::After(..) => {
                let root = root_for(self, board.as_str(), walk, held, row.root)?;
                let out_of = root.as_ref().map_or(0, |root| root.n);
                let first = match row.players.first() {
                    Some(doc) => {
                        let p = player_view(doc)?;
                        let key = RankKey(p.score.unwrap_or_default(), p.id);
                        self.count_rank(board.as_str(), walk, root.as_deref(), &key)
                            .await?
                    }
                    None => 1,
                };
                (first, row.players, out_of)
            }
            PageStart::Rank(rank) => {
                let rank = rank.max(1);
                let root = root_for(self, board.as_str(), walk, held, row.root)?;
                let out_of = root.as_ref().map_or(0, |root| root.n);
                let ahead = rank - 1;
                let leaf = self.leaf_of_rank(root.as_deref(), walk, ahead).await?;
                let skip = ahead - leaf.base;
                if skip > LIVE_CAP {
                    // Far past the leaf's start: the board ends before the
                    // rank, or the keeper is behind. The index tells which.
                    let reach = ranks::reach(board.as_str(), walk, &leaf.from);
                    let live: u64 = decode(single(self.run(reach).await?)?)?;
                    if live > LIVE_CAP || live > skip {
                        return Err(StoreError::RanksBehind);
                    }
                    return Ok(Some(Page {
                        players: Vec::new(),
                        last: None,
                        out_of: out_of.max(leaf.base + live),
                    }));
                }
                let page = ranks::page_from(board.as_str(), walk, &leaf.from, skip, limit);
                (rank, self.run(page).await?, out_of)
            }
        };
        let players = ranked_from(first, docs)?;
        let last = match players.last() {
            Some(p) if players.len() >= limit => Some((p.score.unwrap_or_default(), p.id.clone())),
            _ => None,
        };
        // The last player's rank says at least that many are ranked; an
        // empty page (past the end) says nothing more than the digest.
        let out_of = match players.len() as u64 {
            0 => out_of,
            n => out_of.max(first + n - 1),
        };
        Ok(Some(Page {
            players,
            last,
            out_of,
        }))
    }

    /// The given players of a board with their board-wide ranks: ranked
    /// players in rank order, then those not ranked yet; ids with no player
    /// are left out. `None` if there is no board. The ranks are counted
    /// `parallel` at once (at least one, at most [`PARALLEL_RANKS`]), each
    /// bounded as one rank is.
    pub async fn players_ranked(
        &self,
        board: &BoardId,
        players: &[PlayerId],
        parallel: usize,
    ) -> Result<Option<Ranked>, StoreError> {
        if players.is_empty() {
            return Ok(self.board_exists(board).await?.then(Ranked::default));
        }
        let held = self.digests().root(board.as_str());
        let known = held.as_ref().map(|root| root.v);
        let value = single(self.run(reql::players_of(board, players, known)).await?)?;
        #[derive(Deserialize)]
        struct Row {
            board: Option<Value>,
            #[serde(default)]
            players: Vec<Value>,
            #[serde(default)]
            root: Value,
        }
        let row: Row = decode(value)?;
        let Some(doc) = row.board else {
            return Ok(None);
        };
        let walk = walk_of(&doc);
        let root = root_for(self, board.as_str(), walk, held, row.root)?;
        let found = player_views(row.players)?;
        let ranks: Vec<Result<Option<u64>, StoreError>> = futures::stream::iter(found.iter())
            .map(|p| {
                let root = root.clone();
                async move {
                    let Some(score) = p.score else {
                        return Ok(None);
                    };
                    let key = RankKey(score, p.id.clone());
                    self.count_rank(board.as_str(), walk, root.as_deref(), &key)
                        .await
                        .map(Some)
                }
            })
            .buffered(parallel.clamp(1, PARALLEL_RANKS))
            .collect()
            .await;
        let mut out_of = root.as_ref().map_or(0, |root| root.n);
        let mut ranked = Vec::with_capacity(found.len());
        for (mut player, rank) in found.into_iter().zip(ranks) {
            if let Some(rank) = rank? {
                player.rank = Some(rank);
                out_of = out_of.max(rank);
            }
            ranked.push(player);
        }
        // Ranked first, best first; the unranked after them, by id.
        ranked.sort_by(|a, b| match (a.rank, b.rank) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.id.cmp(&b.id),
        });
        Ok(Some(Ranked {
            players: ranked,
            out_of,
        }))
    }

    /// The rank a player with `score` has on a board (the key a write just
    /// left), and out of how many; `None` if there is no board. One round
    /// trip when this process has a current copy of the digest's part the
    /// key falls in (the count is sent with the check that the copy is
    /// current); two or three otherwise.
    pub async fn rank_of(
        &self,
        board: &BoardId,
        player: &PlayerId,
        score: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let key = RankKey(score, player.as_str().to_owned());
        let held = self.digests().root(board.as_str());
        let known = held.as_ref().map(|root| root.v);
        // Counted at once from the copy; used only if the copy is current.
        let guess = held.as_ref().and_then(|root| {
            let walk = if root.asc {
                reql::Walk::Up
            } else {
                reql::Walk::Down
            };
            let leaf = self.copied_leaf_of_key(root, walk, &key)?;
            Some((walk, leaf))
        });
        let live = guess.as_ref().map(|(walk, leaf)| {
            ranks::live_count(
                board.as_str(),
                *walk,
                &leaf.from,
                reql_terms::r.expr(score),
                reql_terms::r.expr(player.as_str().to_owned()),
            )
        });
        let value = single(self.run(reql::rank_of(board, known, live)).await?)?;
        if value.is_null() {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Row {
            board: Value,
            #[serde(default)]
            root: Value,
            #[serde(default)]
            live: Option<u64>,
        }
        let row: Row = decode(value)?;
        let walk = walk_of(&row.board);
        let same = row.root.get("same").is_some();
        let root = root_for(self, board.as_str(), walk, held, row.root)?;
        let rank = match (guess, row.live) {
            (Some((guessed, leaf)), Some(live)) if same && guessed == walk && root.is_some() => {
                rank_from(&leaf, live)?
            }
            _ => {
                self.count_rank(board.as_str(), walk, root.as_deref(), &key)
                    .await?
            }
        };
        let out_of = root.map_or(0, |root| root.n);
        Ok(Some((rank, out_of.max(rank))))
    }

    /// Boards in id order, at most `limit`.
    pub async fn list_boards(&self, limit: usize) -> Result<Vec<BoardSummary>, StoreError> {
        self.boards_page(None, limit).await
    }

    /// Boards in id order, at most `limit`, starting after the board `after`.
    async fn boards_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BoardSummary>, StoreError> {
        let values = self.run(reql::boards_page(after, limit)).await?;
        values.into_iter().map(decode).collect()
    }

    /// Every board id, for the worker's republish after a reconnect, read a
    /// page at a time so that no answer holds the whole table.
    pub async fn all_board_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = Vec::new();
        loop {
            let page = self
                .boards_page(ids.last().map(String::as_str), PAGE)
                .await?;
            let full = page.len() == PAGE;
            ids.extend(page.into_iter().map(|b| b.id));
            if !full {
                return Ok(ids);
            }
        }
    }

    /// Inserts a new board (with its first period, if it resets) and
    /// returns it as stored; [`StoreError::Conflict`] if the id is taken.
    pub async fn create_board(&self, new: NewBoard) -> Result<CreatedBoard, StoreError> {
        // The id is chosen here, not by the database, because the board's
        // slot (a hash of its id) is stored with it.
        let id = new.id.unwrap_or_else(|| {
            BoardId::parse(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid id")
        });
        let mut doc = json!({
            "id": id.as_str(),
            "name": new.name.map(String::from).unwrap_or_default(),
            "slot": domain::slot_of(id.as_str()),
            "rules": new.rules,
        });
        if let Some(reset) = &new.rules.reset {
            // The first period runs from now to the schedule's next reset.
            let now = now_millis();
            let end = reset
                .next_after(now)
                .ok_or_else(|| StoreError::Query("the reset schedule has no next time".into()))?;
            let next_end = reset
                .next_after(end)
                .ok_or_else(|| StoreError::Query("the reset schedule has no next time".into()))?;
            doc["period"] = json!({ "n": 1, "start": now, "end": end, "next_end": next_end });
        }
        let result = self.write(reql::insert_board(doc)).await?;
        if result.errors > 0 {
            return Err(write_error(result.first_error));
        }
        result
            .new_val()?
            .ok_or_else(|| StoreError::Decode("insert returned no new value".into()))
    }

    /// Deletes a board and then its players. Returns whether the board
    /// existed. Players are deleted even if the board row was already gone,
    /// so an interrupted earlier delete is finished by a retry.
    pub async fn delete_board(&self, board: &BoardId) -> Result<bool, StoreError> {
        let result = self.write(reql::delete_board(board)).await?;
        let players = self.write(reql::delete_board_players(board)).await?;
        if players.errors > 0 {
            return Err(write_error(players.first_error));
        }
        // The rank digest goes last: a board created again under this id
        // starts a digest of its own.
        self.delete_digest(board.as_str()).await?;
        Ok(result.deleted > 0)
    }

    /// Adds a player with score 0. `Ok(None)` if the board does not exist.
    pub async fn create_player(
        &self,
        board: &BoardId,
        new: NewPlayer,
    ) -> Result<Option<Player>, StoreError> {
        let Some(stored) = self.board(board).await? else {
            return Ok(None);
        };
        let rules = stored.rules;
        let id = new.id.unwrap_or_else(|| {
            PlayerId::parse(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid id")
        });
        let mut doc = json!({
            "id": player_key(board, &id),
            "board": board.as_str(),
            "player": id.as_str(),
            "name": new.name.as_str(),
            "slot": domain::slot_of(board.as_str()),
        });
        // On an `incr` board a player starts at 0, as it always has. On a
        // `set` or `best` board it has no score, and so no rank, until its
        // first submission: a lap time of 0 would otherwise top the board.
        if rules.operator == domain::Operator::Incr {
            doc["score"] = json!(0);
        }
        if let Some(period) = stored.period {
            doc["period"] = json!(period.n);
        }
        let result = self.write(reql::insert_player(doc)).await?;
        if result.errors > 0 {
            return Err(write_error(result.first_error));
        }
        let Some(row) = result.new_val::<Value>()? else {
            return Err(StoreError::Decode("insert returned no new value".into()));
        };
        let player = player_view(&row)?;
        // A board deleted between the check and the insert would leave this
        // player orphaned; look again and undo.
        if !self.board_exists(board).await? {
            self.write(reql::delete_player(board, &id)).await?;
            return Ok(None);
        }
        Ok(Some(player))
    }

    /// A board as stored, or `None` if there is no such board.
    pub async fn board(&self, board: &BoardId) -> Result<Option<CreatedBoard>, StoreError> {
        let value = single(self.run(reql::get_board(board)).await?)?;
        if value.is_null() {
            return Ok(None);
        }
        decode(value).map(Some)
    }

    /// The boards whose reset is due, or unfinished, by the database's clock.
    pub async fn due_resets(&self) -> Result<DueResets, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            now: f64,
            boards: Vec<CreatedBoard>,
        }
        let row: Row = decode(single(self.run(reql::due_resets()).await?)?)?;
        Ok(DueResets {
            now: row.now as i64,
            boards: row.boards,
        })
    }

    /// Switches `board` from period `n` to the next, which ends at
    /// `next_end`, the one after it at `then`; `false` if the board was not
    /// in period `n` with its end passed (someone else switched it, or it is
    /// not due).
    pub async fn switch_period(
        &self,
        board: &str,
        n: u64,
        end: i64,
        next_end: i64,
        then: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .write(reql::switch_period(board, n, end, next_end, then))
            .await?;
        if result.errors > 0 {
            return Err(write_error(result.first_error));
        }
        Ok(result.replaced > 0)
    }

    /// Moves the players of `board` still in period `n` into the next.
    pub async fn move_players(&self, board: &str, n: u64, incr: bool) -> Result<u64, StoreError> {
        let result = self.write(reql::move_players(board, n, incr)).await?;
        if result.errors > 0 {
            return Err(write_error(result.first_error));
        }
        Ok(result.replaced)
    }

    /// Archives the finished period `period` of `board` (a no-op if it is
    /// archived already) and returns the archive as its JSON shows it.
    pub async fn archive_period(
        &self,
        board: &CreatedBoard,
        period: StoredPeriod,
    ) -> Result<Value, StoreError> {
        let walk = reql::Walk::of(board.rules.order);
        let value = single(
            self.run(reql::period_standings(
                &board.id,
                period.n,
                walk,
                board.rules.top(),
            ))
            .await?,
        )?;
        #[derive(Deserialize)]
        struct Entry {
            player: String,
            name: String,
            prev: Prev,
        }
        #[derive(Deserialize)]
        struct Prev {
            #[serde(deserialize_with = "domain::integral_score")]
            score: i64,
        }
        #[derive(Deserialize)]
        struct Standings {
            top: Vec<Entry>,
            players: u64,
        }
        let standings: Standings = decode(value)?;
        let top: Vec<Player> = standings
            .top
            .into_iter()
            .enumerate()
            .map(|(i, e)| Player {
                id: e.player,
                name: e.name,
                score: Some(e.prev.score),
                rank: Some(i as u64 + 1),
            })
            .collect();
        let doc = json!({
            "id": format!("{}:{}", board.id, period.n),
            "board": board.id,
            "number": period.n,
            "start": domain::rfc3339(period.start_ms()),
            "end": domain::rfc3339(period.end_ms()),
            "players": standings.players,
            "top": top,
        });
        let result = self.write(reql::insert_period(doc)).await?;
        // A duplicate means an earlier holder archived this period already:
        // the stored archive is the one that counts.
        match write_error_if_any(&result) {
            None | Some(StoreError::Conflict) => {}
            Some(e) => return Err(e),
        }
        let id = BoardId::parse(&board.id).map_err(|e| StoreError::Decode(e.to_string()))?;
        let stored = single(self.run(reql::period(&id, period.n)).await?)?;
        if stored.is_null() {
            return Err(StoreError::Decode("the archived period is missing".into()));
        }
        Ok(period_view(stored))
    }

    /// Marks the reset of period `n` of `board` finished.
    pub async fn finish_reset(&self, board: &str, n: u64) -> Result<(), StoreError> {
        let result = self.write(reql::finish_reset(board, n)).await?;
        if result.errors > 0 {
            return Err(write_error(result.first_error));
        }
        Ok(())
    }

    /// A board's finished periods, newest first (at most `limit`); `None`
    /// if there is no such board.
    pub async fn periods(
        &self,
        board: &BoardId,
        limit: usize,
    ) -> Result<Option<Vec<Value>>, StoreError> {
        if !self.board_exists(board).await? {
            return Ok(None);
        }
        let rows = self.run(reql::periods(board, limit)).await?;
        Ok(Some(rows.into_iter().map(period_view).collect()))
    }

    /// One finished period of a board.
    pub async fn period(&self, board: &BoardId, n: u64) -> Result<Option<Value>, StoreError> {
        let value = single(self.run(reql::period(board, n)).await?)?;
        Ok((!value.is_null()).then(|| period_view(value)))
    }

    /// Whether a board with this id exists.
    pub async fn board_exists(&self, board: &BoardId) -> Result<bool, StoreError> {
        let value = single(self.run(reql::get_board(board)).await?)?;
        Ok(!value.is_null())
    }

    /// A player of `board`, or `None` if there is no such player on it.
    pub async fn player(
        &self,
        board: &BoardId,
        player: &PlayerId,
    ) -> Result<Option<Player>, StoreError> {
        let value = single(self.run(reql::get_player(board, player)).await?)?;
        if value.is_null() {
            return Ok(None);
        }
        player_view(&value).map(Some)
    }

    /// Deletes a player of `board`. Returns whether it existed there.
    pub async fn delete_player(
        &self,
        board: &BoardId,
        player: &PlayerId,
    ) -> Result<bool, StoreError> {
        let result = self.write(reql::delete_player(board, player)).await?;
        if result.errors > 0 {
            return Err(write_error(result.first_error));
        }
        Ok(result.deleted > 0)
    }

    /// Adds `delta` to a player's score in one atomic server-side update and
    /// returns the player as that update left it.
    ///
    /// The range check runs inside the update function, on the document
    /// being written, so there is no read-modify-write window.
    ///
    /// With an idempotency `key`, the same update records the key with the
    /// score it produced; a repeat within [`reql::IDEMPOTENCY_WINDOW_MS`]
    /// changes nothing and returns the player with that first score. Still
    /// one round trip.
    ///
    /// Only a board that resets needs its document read in the same query
    /// (its period decides which period the write counts in), and reading
    /// it costs RethinkDB more than the update itself. So unless this
    /// process has seen the board reset, the update is sent without the
    /// read ([`reql::score_update_unread`]); on a board that resets it is
    /// refused, writing nothing, and sent again with the read.
    pub async fn add_score(
        &self,
        board: &BoardId,
        player: &PlayerId,
        delta: ScoreDelta,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<Player>, StoreError> {
        if key.is_none() && delta.get() == 0 {
            // Nothing to write; RethinkDB would report `unchanged` and
            // return no change to read the player from. (Keyed, even a zero
            // delta is written: it records the key, so a retry answers with
            // this score whatever happens in between.)
            return self.player(board, player).await;
        }
        let idempotency = key.map(|key| Idempotency {
            key,
            now_millis: now_millis(),
        });
        let mut row = None;
        if !self.resetting.contains(board) {
            let result = self
                .write(reql::score_update_unread(board, player, delta, idempotency))
                .await?;
            let refused = result.errors > 0
                && result
                    .first_error
                    .as_deref()
                    .is_some_and(|e| e.contains(BOARD_RESETS));
            if refused {
                self.resetting.insert(board);
            } else {
                match Self::score_result(result)? {
                    Some(found) => row = Some(found),
                    None => return Ok(None),
                }
            }
        }
        let row = match row {
            Some(row) => row,
            None => {
                let result = self
                    .write(reql::score_update(board, player, delta, idempotency))
                    .await?;
                match Self::score_result(result)? {
                    Some(row) => row,
                    None => return Ok(None),
                }
            }
        };
        let Some(key) = key else {
            return player_view(&row).map(Some);
        };
        let mut player = player_view(&row)?;
        player.score = Some(first_score(&row, key)?);
        Ok(Some(player))
    }

    /// Submits `value` under the board's operator (see
    /// [`reql::score_submit`]); `None` if there is no such player.
    pub async fn submit_score(
        &self,
        board: &BoardId,
        player: &PlayerId,
        value: i64,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<Submitted>, StoreError> {
        let idempotency = key.map(|key| Idempotency {
            key,
            now_millis: now_millis(),
        });
        let result = self
            .write(reql::score_submit(board, player, value, idempotency))
            .await?;
        let replaced = result.replaced > 0;
        let Some(row) = Self::score_result(result)? else {
            return Ok(None);
        };
        let mut player = player_view(&row)?;
        let changed = match key {
            // A keyed submission's own write is the key's record; whether it
            // changed the score is read from the score it recorded.
            Some(key) => {
                player.score = Some(first_score(&row, key)?);
                key_changed(&row, key)
            }
            None => replaced,
        };
        Ok(Some(Submitted { player, changed }))
    }

    /// The document a score update left, `None` if there is no such player.
    fn score_result(result: WriteResult) -> Result<Option<Value>, StoreError> {
        if result.skipped > 0 {
            return Ok(None);
        }
        if result.errors > 0 {
            return match result.first_error.as_deref() {
                Some(e) if e.contains(OUT_OF_RANGE) => Err(StoreError::ScoreOutOfRange),
                Some(e) if e.contains(reql::ARCHIVE_PENDING) => Err(StoreError::Unavailable(
                    "the board's last reset is being finished".into(),
                )),
                Some(e) if e.contains(reql::RESET_BEHIND) => Err(StoreError::Unavailable(
                    "the board's resets are behind its schedule".into(),
                )),
                _ => Err(write_error(result.first_error)),
            };
        }
        match result.new_val::<Value>()? {
            Some(row) => Ok(Some(row)),
            None => Err(StoreError::Decode("update returned no change".into())),
        }
    }

    async fn write(&self, query: Term) -> Result<WriteResult, StoreError> {
        decode(single(self.run(query).await?)?)
    }
}

/// The score recorded with `key` in a player document's `idem` list: what
/// the first increment with this key produced.
fn first_score(doc: &Value, key: &IdempotencyKey) -> Result<i64, StoreError> {
    #[derive(Deserialize)]
    struct Entry {
        k: String,
        #[serde(deserialize_with = "domain::integral_score")]
        score: i64,
    }
    #[derive(Deserialize)]
    struct Keys {
        #[serde(default)]
        idem: Vec<Entry>,
    }
    let keys = Keys::deserialize(doc).map_err(|e| StoreError::Decode(e.to_string()))?;
    keys.idem
        .into_iter()
        .rev()
        .find(|e| e.k == key.as_str())
        .map(|e| e.score)
        .ok_or_else(|| StoreError::Decode("the update did not record its idempotency key".into()))
}

/// Whether the write recorded with `key` changed the score (an entry
/// written by a score-add, which always does, does not say).
fn key_changed(doc: &Value, key: &IdempotencyKey) -> bool {
    doc.get(reql::IDEMPOTENCY_FIELD)
        .and_then(Value::as_array)
        .and_then(|entries| {
            entries
                .iter()
                .rev()
                .find(|e| e.get("k").and_then(Value::as_str) == Some(key.as_str()))
        })
        .and_then(|e| e.get("c"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// The origin's clock, for the age of idempotency keys.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The error a write reported, if it reported one.
fn write_error_if_any(result: &WriteResult) -> Option<StoreError> {
    (result.errors > 0).then(|| write_error(result.first_error.clone()))
}

fn write_error(first_error: Option<String>) -> StoreError {
    match first_error {
        Some(e) if e.starts_with("Duplicate primary key") => StoreError::Conflict,
        Some(e) => StoreError::Query(e),
        None => StoreError::Query("write reported errors".into()),
    }
}
