//! Top-5 read latency as one board grows to each size: the board read
//! through the origin (the snapshot query, what clients see) and the bare
//! index query through the driver.
//!
//! Players are loaded straight into the database in bulk inserts, with the
//! worker stopped meanwhile: otherwise every inserted document is a
//! changefeed event for it to read, and the load would be measured instead.

use std::sync::Arc;
use std::time::Instant;

use domain::BoardId;
use serde::Serialize;

use super::check;
use crate::cli::Config;
use crate::db::{self, TopClient};
use crate::harness::{Bench, HttpClient};
use crate::http::Request;
use crate::load::{self, Limit, LoadResult};
use crate::report::{Report, Table, Target};
use crate::stats::{fmt_rate, fmt_us};

const BOARD: &str = "big";
/// Bulk inserts in flight at once.
const LOADERS: usize = 2;

#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub players: usize,
    /// Documents per second of the load that grew the board to this size.
    pub load_rate: f64,
    pub origin: LoadResult,
    pub database: LoadResult,
}

/// Inserts players `from..to` of the board, `batch` per query, on
/// [`LOADERS`] connections.
async fn load_players(bench: &Bench, from: usize, to: usize, batch: usize) -> anyhow::Result<()> {
    let batches: Vec<(usize, usize)> = (from..to)
        .step_by(batch)
        .map(|start| (start, (start + batch).min(to)))
        .collect();
    let per_loader = batches.len().div_ceil(LOADERS).max(1);
    let board = BoardId::parse(BOARD)?;
    let mut tasks = Vec::new();
    for chunk in batches.chunks(per_loader) {
        let board = board.clone();
        let chunk = chunk.to_vec();
        let session = db::connect(&bench.db_url).await?;
        tasks.push(tokio::spawn(async move {
            for (start, end) in chunk {
                let docs = (start..end)
                    .map(|i| {
                        // Scores spread over a wide range, in no particular
                        // order, as real ones would be.
                        let score = (i as i64 * 7919) % 1_000_003;
                        db::player_doc(&board, &format!("x{i}"), score)
                    })
                    .collect::<anyhow::Result<_>>()?;
                db::insert(&session, store::PLAYERS, docs).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    bench.board(BOARD, 0).await?;
    let mut sizes = config.top5_sizes.clone();
    sizes.sort_unstable();
    let reads = Limit::Count(config.top5_reads as u64);
    let origin_read = Arc::new(vec![Request::get_json(
        bench.origin_port(),
        &format!("/boards/{BOARD}/"),
    )]);
    let mut table = Table::new(
        "Top-5 read latency by board size (c=1)",
        &[
            "players",
            "load rate",
            "origin mean",
            "origin p50",
            "origin p99",
            "db mean",
            "db p50",
            "db p99",
        ],
    );
    let mut results: Vec<SizeResult> = Vec::new();
    let mut loaded = 0;
    for &size in &sizes {
        bench.stack.kill_worker();
        let started = Instant::now();
        load_players(bench, loaded, size, config.batch).await?;
        let load_rate = (size - loaded) as f64 / started.elapsed().as_secs_f64();
        loaded = size;
        bench.stack.start_worker().await?;

        let session = db::connect(&bench.db_url).await?;
        let database = load::run(
            vec![TopClient {
                session,
                board: BoardId::parse(BOARD)?,
                expect: size.min(5),
            }],
            reads,
        )
        .await;
        check(config, "top-5 read from the database", &database)?;
        let clients =
            HttpClient::many(1, bench.origin_port(), Arc::clone(&origin_read), 200).await?;
        let origin = load::run(clients, reads).await;
        check(config, "board read from the origin", &origin)?;
        table.row(vec![
            size.to_string(),
            fmt_rate(load_rate),
            fmt_us(origin.latency.mean_us),
            fmt_us(origin.latency.p50_us),
            fmt_us(origin.latency.p99_us),
            fmt_us(database.latency.mean_us),
            fmt_us(database.latency.p50_us),
            fmt_us(database.latency.p99_us),
        ]);
        results.push(SizeResult {
            players: size,
            load_rate,
            origin,
            database,
        });
    }
    report.table(table);
    if let (Some(small), Some(large)) = (results.first(), results.last()) {
        if results.len() > 1 {
            report.target(Target::ratio(
                &format!(
                    "top-5 read at {} players ≤ 2× at {} (origin, p50)",
                    large.players, small.players
                ),
                format!(
                    "origin {} / {}; database alone {} / {}",
                    fmt_us(large.origin.latency.p50_us),
                    fmt_us(small.origin.latency.p50_us),
                    fmt_us(large.database.latency.p50_us),
                    fmt_us(small.database.latency.p50_us)
                ),
                large.origin.latency.p50_us / small.origin.latency.p50_us,
                2.0,
            ));
        }
    }
    report.section("top5", &results);
    Ok(())
}
