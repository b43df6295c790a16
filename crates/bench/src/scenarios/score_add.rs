//! Score-add throughput and latency: straight to the origin and through
//! Pushpin, beside the same atomic update sent straight to the database
//! through the driver (the floor the origin's cost is measured against) and
//! through the store's pool in this process (which splits the origin's
//! overhead into the pool's and HTTP's).

use std::sync::Arc;

use domain::{BoardId, PlayerId, ScoreDelta};
use store::{PoolOptions, Store};

use super::{check, load_row, PathResult, LOAD_HEADER};
use crate::cli::Config;
use crate::db::{self, UpdateClient};
use crate::harness::{score_add_requests, Bench, HttpClient};
use crate::load::{self, Client, LoadResult};
use crate::report::{Report, Table, Target};

const BOARD: &str = "sa";

/// The origin's database layer, run in this process.
struct StoreClient {
    store: Store,
    board: BoardId,
    players: Arc<Vec<PlayerId>>,
    offset: usize,
}

impl Client for StoreClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let player = &self.players[(self.offset + seq as usize) % self.players.len()];
        let found = self
            .store
            .add_score(&self.board, player, ScoreDelta::ONE)
            .await?;
        anyhow::ensure!(found.is_some(), "player {player} not found");
        Ok(())
    }
}

pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let players = bench.board(BOARD, config.players).await?;
    let keys = Arc::new(
        players
            .iter()
            .map(|p| db::player_key(BOARD, p))
            .collect::<Vec<_>>(),
    );
    let store = Store::new(bench.db_url.clone(), PoolOptions::default());
    let board = BoardId::parse(BOARD)?;
    let player_ids = Arc::new(
        players
            .iter()
            .map(|p| PlayerId::parse(p))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let direct = score_add_requests(bench.origin_port(), BOARD, &players);
    let proxied = score_add_requests(bench.pushpin_port(), BOARD, &players);

    let mut table = Table::new("Score-add (POST …/score-add/, +1)", &LOAD_HEADER);
    let mut results = Vec::new();
    let mut push = |table: &mut Table, path: &str, r: LoadResult| {
        table.row(load_row(path, &r));
        results.push(PathResult {
            path: path.to_owned(),
            result: r,
        });
    };
    let mut db_c1 = None;
    let mut origin_c1 = None;
    for &c in &config.concurrency {
        // The database alone, then the origin, back to back at each level so
        // that the ratio compares figures taken under the same conditions.
        let mut clients = Vec::with_capacity(c);
        for _ in 0..c {
            clients.push(UpdateClient {
                session: db::connect(&bench.db_url).await?,
                keys: Arc::clone(&keys),
            });
        }
        let r = load::run(clients, config.timed()).await;
        check(config, "database update", &r)?;
        if c == 1 {
            db_c1 = Some(r.clone());
        }
        push(&mut table, "database (unreql)", r);

        let clients = (0..c)
            .map(|i| StoreClient {
                store: store.clone(),
                board: board.clone(),
                players: Arc::clone(&player_ids),
                offset: i,
            })
            .collect();
        let r = load::run(clients, config.timed()).await;
        check(config, "store add_score", &r)?;
        push(&mut table, "store pool (in-process)", r);

        let clients = HttpClient::many(c, bench.origin_port(), Arc::clone(&direct), 200).await?;
        let r = load::run(clients, config.timed()).await;
        check(config, "score-add to the origin", &r)?;
        if c == 1 {
            origin_c1 = Some(r.clone());
        }
        push(&mut table, "origin", r);

        let clients = HttpClient::many(c, bench.pushpin_port(), Arc::clone(&proxied), 200).await?;
        let r = load::run(clients, config.timed()).await;
        check(config, "score-add through Pushpin", &r)?;
        push(&mut table, "pushpin → origin", r);
    }
    report.table(table);
    report.section("score_add", &results);

    if let (Some(db), Some(origin)) = (db_c1, origin_c1) {
        report.target(Target::ratio(
            "origin score-add ≤ 1.3× database update (c=1, mean)",
            format!(
                "origin {:.0} µs / database {:.0} µs (p50 {:.0} / {:.0})",
                origin.latency.mean_us,
                db.latency.mean_us,
                origin.latency.p50_us,
                db.latency.p50_us
            ),
            origin.latency.mean_us / db.latency.mean_us,
            1.3,
        ));
    }
    Ok(())
}
