//! Direct driver access, bypassing the origin: the baselines the origin is
//! compared with, and fast bulk loading.
//!
//! The score update and the top-N read are the store's own query builders
//! ([`store::reql::score_update_unread`], [`store::top_players_query`]), so
//! "the database's own cost" is the cost of exactly what the origin asks
//! for. Beside them, [`bare_increment`] is the score-add as it was before
//! boards had rules: a baseline for what the rules cost, with and without
//! the read of the board ([`store::score_update`]).

use std::sync::Arc;

use anyhow::Context;
use domain::{BoardId, PlayerId, ScoreDelta, MAX_SCORE};
use reql_terms::{func, r, term, Term};
use serde_json::{json, Value};
use store::DatabaseUrl;
use testkit::DbSession as Session;

use crate::load::Client;

/// Opens one driver connection to `url`'s database.
pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Session> {
    Session::connect(
        &url.host,
        url.port,
        &url.user,
        url.password(),
        Some(&url.db),
    )
    .await
    .with_context(|| format!("connect to the database {}", url.db))
}

/// A player document as `Store::create_player` writes it (with any score),
/// named after its id.
pub fn player_doc(board: &BoardId, player: &str, score: i64) -> anyhow::Result<Value> {
    let id = PlayerId::parse(player)?;
    Ok(json!({
        "id": store::player_key(board, &id),
        "board": board.as_str(),
        "player": id.as_str(),
        "name": id.as_str(),
        "score": score,
    }))
}

/// Player ids `{prefix}0` to `{prefix}{n-1}`.
pub fn player_ids(prefix: &str, n: usize) -> anyhow::Result<Vec<PlayerId>> {
    (0..n)
        .map(|i| Ok(PlayerId::parse(&format!("{prefix}{i}"))?))
        .collect()
}

/// Inserts `docs` in one query; fails if any was refused.
pub async fn insert(session: &Session, table: &str, docs: Vec<Value>) -> anyhow::Result<()> {
    let n = docs.len();
    let result = session.one(&r.table(table).insert(docs)).await?;
    anyhow::ensure!(
        result["errors"].as_u64() == Some(0) && result["inserted"].as_u64() == Some(n as u64),
        "insert of {n} documents: {result}"
    );
    Ok(())
}

/// A board document as `Store::create_board` writes it, with the default
/// rules, named after its id. The store's score update reads it (the rules
/// and the reset period) in the same query as the player.
pub fn board_doc(board: &BoardId) -> Value {
    json!({
        "id": board.as_str(),
        "name": board.as_str(),
        "slot": domain::slot_of(board.as_str()),
        "rules": domain::Rules::default(),
    })
}

/// Boards `{prefix}0` to `{prefix}{n-1}` with `players` players each
/// (`p0`, `p1`, ...; score 0), as `Store::create_board` and
/// `Store::create_player` write them (the board's slot included, so the
/// workers' shard feeds see them). Returns the boards' and the players'
/// documents, the players ordered player by player across the boards, so
/// that consecutive ones are on different boards.
pub fn boards_with_players(
    prefix: &str,
    n: usize,
    players: usize,
) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let boards: Vec<BoardId> = (0..n)
        .map(|i| Ok(BoardId::parse(&format!("{prefix}{i}"))?))
        .collect::<anyhow::Result<_>>()?;
    let board_docs = boards.iter().map(board_doc).collect();
    let mut player_docs = Vec::with_capacity(n * players);
    for p in player_ids("p", players)? {
        for b in &boards {
            player_docs.push(json!({
                "id": store::player_key(b, &p),
                "board": b.as_str(),
                "player": p.as_str(),
                "name": p.as_str(),
                "score": 0,
                "slot": domain::slot_of(b.as_str()),
            }));
        }
    }
    Ok((board_docs, player_docs))
}

/// Adds 1 to the score of each player of `keys` (document keys), in one
/// query.
pub fn add_one(keys: Vec<String>) -> Term {
    r.table(store::PLAYERS)
        .get_all(keys)
        .update(func!(|p| term!({"score": p.g("score").add(1)})))
}

/// A load client adding 1 to `batch` players per query, straight in the
/// database (`getAll(keys…).update(score + 1)`), taking the next `batch`
/// keys of `keys` each time: many boards changed by few connections, at a
/// rate that one score-add per query could not reach on a durable server,
/// where each query waits for the disk.
pub struct BatchUpdateClient {
    /// The client's own driver connection.
    pub session: Session,
    /// Player document keys, consecutive ones on different boards.
    pub keys: Arc<Vec<String>>,
    /// Players updated per query.
    pub batch: usize,
}

impl Client for BatchUpdateClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let n = self.keys.len();
        let start = (seq as usize).wrapping_mul(self.batch) % n;
        let keys: Vec<String> = (0..self.batch)
            .map(|i| self.keys[(start + i) % n].clone())
            .collect();
        let result = self.session.one(&add_one(keys)).await?;
        anyhow::ensure!(
            result["replaced"].as_u64() == Some(self.batch as u64)
                && result["errors"].as_u64() == Some(0),
            "batch update: {result}"
        );
        Ok(())
    }
}

/// A load client sending the store's score update (+1) straight to the
/// database, cycling through `players`: the term the store sends on a board
/// it has not seen reset ([`store::reql::score_update_unread`]), or, with
/// `read_board`, the one that reads the board in the same query
/// ([`store::score_update`], sent on boards that reset).
pub struct UpdateClient {
    /// The client's driver connection: its own, or shared with others.
    pub session: Arc<Session>,
    /// The board whose players are updated.
    pub board: BoardId,
    /// The players, one per operation in turn.
    pub players: Arc<Vec<PlayerId>>,
    /// Send the term that also reads the board.
    pub read_board: bool,
}

impl Client for UpdateClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let player = &self.players[seq as usize % self.players.len()];
        let term = if self.read_board {
            store::score_update(&self.board, player, ScoreDelta::ONE, None)
        } else {
            store::reql::score_update_unread(&self.board, player, ScoreDelta::ONE, None)
        };
        let result = self.session.one(&term).await?;
        anyhow::ensure!(result["replaced"].as_u64() == Some(1), "update: {result}");
        Ok(())
    }
}

/// A bare atomic increment of one player's score by `delta`, with no board
/// read: `players.get(key).update(p => branch(out of range, error,
/// {score: p.score + d}), return_changes: true)`. This is the score-add term
/// as it was before boards had rules (reset periods) and idempotency keys,
/// kept here as a baseline, not used by the store: the store's terms against
/// this one, in the same run, are what the rules and the board read cost.
pub fn bare_increment(board: &BoardId, player: &PlayerId, delta: ScoreDelta) -> Term {
    let d = delta.get();
    r.table(store::PLAYERS)
        .get(store::player_key(board, player))
        .update(func!(|p| {
            let score = p.g("score").add(d);
            r.branch(
                score.clone().gt(MAX_SCORE).or(score.clone().lt(-MAX_SCORE)),
                r.error(store::reql::OUT_OF_RANGE),
                term!({ "score": score }),
            )
        }))
        .opt("return_changes", true)
}

/// A load client sending [`bare_increment`] (+1) straight to the database,
/// cycling through `players`: [`UpdateClient`] without the board read.
pub struct BareUpdateClient {
    /// The client's own driver connection.
    pub session: Session,
    /// The board whose players are updated.
    pub board: BoardId,
    /// The players, one per operation in turn.
    pub players: Arc<Vec<PlayerId>>,
}

impl Client for BareUpdateClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let player = &self.players[seq as usize % self.players.len()];
        let result = self
            .session
            .one(&bare_increment(&self.board, player, ScoreDelta::ONE))
            .await?;
        anyhow::ensure!(result["replaced"].as_u64() == Some(1), "update: {result}");
        Ok(())
    }
}

/// A load client reading a board's top five straight from the database.
pub struct TopClient {
    /// The client's own driver connection.
    pub session: Session,
    /// The board read.
    pub board: BoardId,
    /// How many players each read must return (5, or fewer on a small board).
    pub expect: usize,
}

impl Client for TopClient {
    async fn call(&mut self, _seq: u64) -> anyhow::Result<()> {
        let top = self
            .session
            .run(&store::top_players_query(self.board.as_str(), 5))
            .await?;
        anyhow::ensure!(
            top.len() == self.expect,
            "top-5 read gave {} players",
            top.len()
        );
        Ok(())
    }
}

/// A load client inserting one new player per operation.
pub struct InsertClient {
    /// The client's own driver connection.
    pub session: Session,
    /// The board the players join.
    pub board: BoardId,
    /// Start of every new player's id; the operation's number follows.
    pub prefix: String,
}

impl Client for InsertClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let doc = player_doc(&self.board, &format!("{}{seq}", self.prefix), 0)?;
        insert(&self.session, store::PLAYERS, vec![doc]).await
    }
}

/// Deletes a board's rank digest, so that the worker builds it afresh.
pub async fn delete_digest(url: &DatabaseUrl, board: &str) -> anyhow::Result<()> {
    let session = connect(url).await?;
    session.one(&store::ranks::delete_digest(board)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(cmd: &Term) -> String {
        serde_json::to_string(cmd).expect("a term serialises")
    }

    #[test]
    fn the_bare_increment_reads_no_board() {
        let board = BoardId::parse("b1").unwrap();
        let player = PlayerId::parse("ann").unwrap();
        let bare = wire(&bare_increment(&board, &player, ScoreDelta::ONE));
        assert!(bare.contains("\"b1:ann\""), "{bare}");
        assert!(bare.contains("\"return_changes\":true"), "{bare}");
        assert!(bare.contains(store::reql::OUT_OF_RANGE), "{bare}");
        assert!(!bare.contains(store::BOARDS), "{bare}");
        // The store's term on boards that reset is the update behind a read
        // of the board; the one it sends first reads no board.
        let store = wire(&store::score_update(&board, &player, ScoreDelta::ONE, None));
        assert!(store.contains(&format!("\"{}\"", store::BOARDS)), "{store}");
        assert!(store.len() > bare.len(), "{store}");
        let unread = wire(&store::reql::score_update_unread(
            &board,
            &player,
            ScoreDelta::ONE,
            None,
        ));
        assert!(
            !unread.contains(&format!("\"{}\"", store::BOARDS)),
            "{unread}"
        );
    }
}
