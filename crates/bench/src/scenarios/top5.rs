//! Top-5 read latency as one board grows to each size: the board read
//! through the origin (the snapshot query, what clients see) and the bare
//! index query through the driver. At each size also the cost of a rank
//! (`GET .../players/{pid}/`), of around-me (`around/?n=2`) and of a page
//! of 100 after a cursor, each at ranks 10, 10,000 and 1,000,000 where the
//! board has them, and of the first page: a rank is a count of the index
//! entries before the player, so it grows with the rank.
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
    /// Rank, around-me and page reads through the origin.
    pub ranked: Vec<RankedResult>,
}

/// One ranked read at one rank.
#[derive(Debug, Clone, Serialize)]
pub struct RankedResult {
    /// `rank`, `around`, `page after` or `first page`.
    pub read: String,
    pub rank: usize,
    #[serde(flatten)]
    pub result: LoadResult,
}

/// The ranks whose reads are measured.
const RANKS: [usize; 3] = [10, 10_000, 1_000_000];

/// The score of player `x{i}`: spread over a wide range, in no particular
/// order, and distinct for `i` below 1,000,003 (both numbers are prime).
fn score_of(i: usize) -> i64 {
    (i as i64 * 7919) % 1_000_003
}

/// The player at each of `ranks` on a board of `size` players (highest
/// score first): `(player id, score)`. The scores are distinct, so this is
/// the order every reader sees.
fn players_at(size: usize, ranks: &[usize]) -> Vec<(String, i64)> {
    let mut all: Vec<(i64, usize)> = (0..size).map(|i| (score_of(i), i)).collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    ranks
        .iter()
        .map(|r| {
            let (score, i) = all[r - 1];
            (format!("x{i}"), score)
        })
        .collect()
}

/// The API's cursor for the position (score, player): URL-safe base64 of
/// `[score, "player"]`, as `web::cursor` writes it.
fn cursor(score: i64, player: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = serde_json::json!([score, player]).to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Reads at deep ranks are slow (O(rank)): fewer of them.
fn reads_at(rank: usize, reads: usize) -> u64 {
    (reads.min(2_000_000 / rank.max(1))).max(5) as u64
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
                    .map(|i| db::player_doc(&board, &format!("x{i}"), score_of(i)))
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
    let mut ranks_table = Table::new(
        "Rank, around-me and pages by board size and rank (origin, c=1)",
        &["players", "read", "rank", "reads", "mean", "p50", "p99"],
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
        let ranked = ranked_reads(bench, config, size).await?;
        for r in &ranked {
            ranks_table.row(vec![
                size.to_string(),
                r.read.clone(),
                r.rank.to_string(),
                r.result.ops.to_string(),
                fmt_us(r.result.latency.mean_us),
                fmt_us(r.result.latency.p50_us),
                fmt_us(r.result.latency.p99_us),
            ]);
        }
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
            ranked,
        });
    }
    report.table(table);
    report.table(ranks_table);
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

/// The rank, around-me and page reads at each measured rank of a board of
/// `size` players, and its first page.
async fn ranked_reads(
    bench: &Bench,
    config: &Config,
    size: usize,
) -> anyhow::Result<Vec<RankedResult>> {
    let ranks: Vec<usize> = RANKS.iter().copied().filter(|r| *r <= size).collect();
    let mut out = Vec::new();
    let port = bench.origin_port();
    let measure = |read: &str, rank: usize, path: String| {
        let read = read.to_owned();
        async move {
            let requests = Arc::new(vec![Request::get_json(port, &path)]);
            let clients = HttpClient::many(1, port, requests, 200).await?;
            let result = load::run(clients, Limit::Count(reads_at(rank, config.top5_reads))).await;
            check(config, &format!("{read} at rank {rank}"), &result)?;
            anyhow::Ok(RankedResult { read, rank, result })
        }
    };
    out.push(
        measure(
            "first page",
            1,
            format!("/boards/{BOARD}/players/?limit=100"),
        )
        .await?,
    );
    for ((player, score), rank) in players_at(size, &ranks).into_iter().zip(ranks) {
        out.push(measure("rank", rank, format!("/boards/{BOARD}/players/{player}/")).await?);
        out.push(
            measure(
                "around",
                rank,
                format!("/boards/{BOARD}/players/{player}/around/?n=2"),
            )
            .await?,
        );
        let after = cursor(score, &player);
        out.push(
            measure(
                "page after",
                rank,
                format!("/boards/{BOARD}/players/?limit=100&cursor={after}"),
            )
            .await?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_the_apis() {
        // URL-safe base64 of `[6512,"ann"]`, as the README's example.
        assert_eq!(cursor(6512, "ann"), "WzY1MTIsImFubiJd");
    }

    #[test]
    fn players_at_ranks_follow_the_scores() {
        let at = players_at(1000, &[1, 1000]);
        let best = (0..1000).map(score_of).max().unwrap();
        let worst = (0..1000).map(score_of).min().unwrap();
        assert_eq!((at[0].1, at[1].1), (best, worst));
    }
}
