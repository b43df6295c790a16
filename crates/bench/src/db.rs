//! Direct driver access, bypassing the origin: the baselines the origin is
//! compared with, and fast bulk loading.
//!
//! The score update and the top-N read are the store's own query builders
//! ([`store::score_update`], [`store::top_players_query`]), so "the
//! database's own cost" is the cost of exactly what the origin asks for.

use std::sync::Arc;

use anyhow::Context;
use domain::{BoardId, PlayerId, ScoreDelta};
use serde_json::{json, Value};
use store::DatabaseUrl;
use unreql::cmd::connect::Options;
use unreql::{r, Session};

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
    let result: Value = r.table(table.to_owned()).insert(docs).exec(session).await?;
    anyhow::ensure!(
        result["errors"].as_u64() == Some(0) && result["inserted"].as_u64() == Some(n as u64),
        "insert of {n} documents: {result}"
    );
    Ok(())
}

/// A load client sending the store's score update (+1) straight to the
/// database, cycling through `players`.
pub struct UpdateClient {
    pub session: Session,
    pub board: BoardId,
    pub players: Arc<Vec<PlayerId>>,
}

impl Client for UpdateClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let player = &self.players[seq as usize % self.players.len()];
        let result: Value = store::score_update(&self.board, player, ScoreDelta::ONE, None)
            .exec(&self.session)
            .await?;
        anyhow::ensure!(result["replaced"].as_u64() == Some(1), "update: {result}");
        Ok(())
    }
}

/// A load client reading a board's top five straight from the database.
pub struct TopClient {
    pub session: Session,
    pub board: BoardId,
    pub expect: usize,
}

impl Client for TopClient {
    async fn call(&mut self, _seq: u64) -> anyhow::Result<()> {
        let top: Vec<Value> = store::top_players_query(self.board.as_str(), 5)
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
    pub board: BoardId,
    pub prefix: String,
}

impl Client for InsertClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let doc = player_doc(&self.board, &format!("{}{seq}", self.prefix), 0)?;
        insert(&self.session, store::PLAYERS, vec![doc]).await
    }
}
