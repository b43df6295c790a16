//! Direct driver access, bypassing the origin: the baselines the origin is
//! compared with, and fast bulk loading.
//!
//! The queries are written out here rather than borrowed from `store`,
//! which keeps them private, but they are the same ReQL terms the store
//! sends (a test in `store` pins the top-N term's wire form), so "the
//! database's own cost" is the cost of exactly what the origin asks for.

use anyhow::Context;
use domain::MAX_SCORE;
use serde_json::{json, Value};
use store::DatabaseUrl;
use unreql::cmd::connect::Options;
use unreql::cmd::options::{BetweenOptions, UpdateOptions};
use unreql::{func, r, rjson, Command, Session};

use crate::load::Client;

/// Opens one driver connection to `url`'s database.
pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Session> {
    r.connect(
        Options::new()
            .host(url.host.clone())
            .port(url.port)
            .user(url.user.clone())
            .password(url.password().to_owned())
            .db(url.db.clone()),
    )
    .await
    .with_context(|| format!("connect to the database at {}:{}", url.host, url.port))
}

/// A player's primary key, as the store writes it.
pub fn player_key(board: &str, player: &str) -> String {
    format!("{board}:{player}")
}

/// A player document as the store writes it.
pub fn player_doc(board: &str, player: &str, score: i64) -> Value {
    json!({
        "id": player_key(board, player),
        "board": board,
        "player": player,
        "name": player,
        "score": score,
    })
}

/// The store's score-add: one atomic update with the range check inside and
/// the new document returned.
pub fn score_update(key: &str, d: i64) -> Command {
    let update = func!(|p| {
        r.branch(
            p.clone().g("score").add(d).gt(MAX_SCORE).or(p
                .clone()
                .g("score")
                .add(d)
                .lt(-MAX_SCORE)),
            r.error("leaderboard: score out of range"),
            rjson!({ "score": p.g("score").add(d) }),
        )
    });
    r.table(store::PLAYERS)
        .get(key.to_owned())
        .update(r.with_opt(update, UpdateOptions::new().return_changes(true.into())))
}

/// The store's top-N read: the `[board, score]` index, descending.
pub fn top_players(board: &str, n: usize) -> Command {
    r.table(store::PLAYERS)
        .between(
            rjson!([board.to_owned(), r.minval()]),
            rjson!([board.to_owned(), r.maxval()]),
            r.with_opt(
                (),
                BetweenOptions::new().index(store::BOARD_SCORE_INDEX.to_owned()),
            ),
        )
        .order_by(r.index(r.desc(store::BOARD_SCORE_INDEX)))
        .limit(n)
}

/// Inserts `docs` in one query; fails if any was refused.
pub async fn insert(session: &Session, table: &str, docs: Vec<Value>) -> anyhow::Result<()> {
    let n = docs.len();
    let result: Value = r.table(table.to_owned()).insert(docs).exec(session).await?;
    anyhow::ensure!(
        result["errors"].as_u64() == Some(0) && result["inserted"].as_u64() == Some(n as u64),
        "insert of {n} documents: {result}"
    );
    Ok(())
}

/// A load client sending the store's score update straight to the database.
pub struct UpdateClient {
    pub session: Session,
    pub keys: std::sync::Arc<Vec<String>>,
}

impl Client for UpdateClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let key = &self.keys[seq as usize % self.keys.len()];
        let result: Value = score_update(key, 1).exec(&self.session).await?;
        anyhow::ensure!(result["replaced"].as_u64() == Some(1), "update: {result}");
        Ok(())
    }
}

/// A load client reading a board's top five straight from the database.
pub struct TopClient {
    pub session: Session,
    pub board: String,
    pub expect: usize,
}

impl Client for TopClient {
    async fn call(&mut self, _seq: u64) -> anyhow::Result<()> {
        let top: Vec<Value> = top_players(&self.board, 5)
            .exec_to_vec(&self.session)
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
    pub session: Session,
    pub board: String,
    pub prefix: String,
}

impl Client for InsertClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let doc = player_doc(&self.board, &format!("{}{seq}", self.prefix), 0);
        insert(&self.session, store::PLAYERS, vec![doc]).await
    }
}
