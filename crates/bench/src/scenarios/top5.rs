//! Top-5 read latency as one board grows to each size: the board read
//! through the origin (the snapshot query, what clients see) and the bare
//! index query through the driver. At each size also the cost of a rank
//! (`GET .../players/{pid}/`), of around-me (`around/?n=2`), of a page of
//! 100 after a cursor, of a page of 10 from a rank (`?rank=`) and of ten
//! friends (`?ids=`), each at ranks 10, 10,000 and 1,000,000 where the
//! board has them, and of the first page; the time the worker takes to
//! build the board's rank digest after the load, and its memory.
//!
//! At the largest size, also: the rebuild after the digest's keeper is
//! killed (`kill -9`, a new worker recounts every leaf), score-adds on
//! another board alone and beside 16 clients reading deep ranks,
//! score-add throughput with and without the rank keeper, and what
//! `?with=rank` adds to a score-add.
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
use crate::load::{self, Limit, LoadResult, Paced};
use crate::report::{Report, Table, Target};
use crate::stats::{fmt_rate, fmt_us, Samples};

const BOARD: &str = "big";
/// Bulk inserts in flight at once.
const LOADERS: usize = 2;
/// Score-adds a second offered beside the deep readers.
const WRITE_RATE: f64 = 200.0;
/// The clients that share [`WRITE_RATE`], each paced at its part (10/s):
/// a client's write waits for its previous one only when that took over
/// 100 ms. With 2 clients (100/s each, before), a write slower than 10 ms
/// delayed the next, and once writes took about 10 ms the clients fell
/// behind and the p99 measured their own backlog, not the origin. Their
/// slots are staggered (one every 5 ms): started together, the 20 would
/// send a burst of 20 every 100 ms, and each write would count its place
/// in that burst's queue.
const WRITERS: usize = 20;
/// Alternating windows of paced score-adds alone and beside deep readers,
/// each at least [`BESIDE_WINDOW`] long; the p99s compared are taken over
/// all the windows' samples of each kind (about 8,000), so that the disk's
/// stalls (score-adds are fsynced) weigh on both sides by how often they
/// come, not by which window one fell in.
const BESIDE_ROUNDS: usize = 4;
const BESIDE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// The unmeasured start of each timed score-add window.
const WARMUP: std::time::Duration = std::time::Duration::from_secs(1);
/// The board written beside the big one.
const W: &str = "w";
/// Alternating throughput runs, with and without the rank keeper.
const THROUGHPUT_ROUNDS: usize = 10;
/// Alternating windows of score-adds with `?with=rank` and without.
const WITH_RANK_ROUNDS: usize = 6;
/// Bursts of score-adds after which the quiet lag is measured, and their size.
const LAG_ROUNDS: usize = 10;
const LAG_BURST: usize = 400;
/// The lag docs/scaling.md states: a board quiet this long has every rank exact.
const STATED_LAG: std::time::Duration = std::time::Duration::from_secs(2);

/// One run of score-adds with the rank keeper or without it.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRound {
    /// The worker kept rank digests (`RANK_DIGESTS=true`).
    pub keeper: bool,
    /// The database server's CPU time per score-add (µs), when its
    /// process is on this machine.
    pub db_cpu_us: Option<f64>,
    /// The worker's CPU time per score-add (µs).
    pub worker_cpu_us: Option<f64>,
    /// The score-adds' throughput and latencies.
    #[serde(flatten)]
    pub result: LoadResult,
}

/// What one board size measured.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    /// Players on the board.
    pub players: usize,
    /// Documents per second of the load that grew the board to this size.
    pub load_rate: f64,
    /// Board reads through the origin (the snapshot query).
    pub origin: LoadResult,
    /// The bare top-5 index query through the driver.
    pub database: LoadResult,
    /// Rank, around-me and page reads through the origin.
    pub ranked: Vec<RankedResult>,
    /// From the worker's start to the rank digest of the whole board.
    pub digest_build_s: f64,
    /// The worker's resident memory once the digest is built.
    pub worker_rss: u64,
    /// The digest's leaves.
    pub leaves: f64,
}

/// One ranked read at one rank.
#[derive(Debug, Clone, Serialize)]
pub struct RankedResult {
    /// `rank`, `around`, `page after` or `first page`.
    pub read: String,
    /// The depth of the read: 1 for the first page, else 10, 10,000 or
    /// 1,000,000 (those the board has).
    pub rank: usize,
    /// The database server's CPU time per read (µs), when its process is
    /// on this machine.
    pub db_cpu_us: Option<f64>,
    /// The reads' throughput and latencies.
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

/// The same number of reads at every depth: a rank costs the same.
fn reads_at(_rank: usize, reads: usize) -> u64 {
    reads as u64
}

/// Waits until the origin answers the rank of the board's last player with
/// `out_of` = `size`: the worker has built the rank digest.
async fn wait_for_digest(bench: &Bench, size: usize) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let (player, _) = players_at(size, &[size]).remove(0);
    let path = format!("/boards/{BOARD}/players/{player}/");
    let mut conn = crate::http::Connection::new(bench.origin_port());
    loop {
        let response = conn
            .send(&Request::get_json(bench.origin_port(), &path))
            .await?;
        if response.status == 200 {
            let body = response.json()?;
            if body["rank"].as_u64() == Some(size as u64)
                && body["out_of"].as_u64() == Some(size as u64)
            {
                return Ok(started.elapsed());
            }
        }
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "no rank digest of {size} players after 10 minutes: {}",
            response.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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

/// Runs the top-5 scenario, growing one board through each size.
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
        &[
            "players",
            "read",
            "rank",
            "reads",
            "mean",
            "p50",
            "p99",
            "database CPU per read",
        ],
    );
    let mut results: Vec<SizeResult> = Vec::new();
    let mut loaded = 0;
    let status_port = free_port()?;
    bench
        .stack
        .set_worker_env("STATUS_PORT", &status_port.to_string());
    let mut builds = Table::new(
        "Rank digest: build after the load, and the worker's memory",
        &["players", "build", "leaves", "worker RSS"],
    );
    for &size in &sizes {
        bench.stack.kill_worker();
        let started = Instant::now();
        load_players(bench, loaded, size, config.batch).await?;
        let load_rate = (size - loaded) as f64 / started.elapsed().as_secs_f64();
        loaded = size;
        // The digest of the players loaded meanwhile is stale: start it
        // afresh, as for a board the keeper has never seen.
        db::delete_digest(&bench.db_url, BOARD).await?;
        bench.stack.start_worker().await?;
        let build = wait_for_digest(bench, size).await?;
        let metrics = crate::harness::worker_metrics(status_port).await?;
        let leaves = metrics
            .get("dblistener_rank_leaves")
            .copied()
            .unwrap_or(0.0);
        let worker_rss = rss_bytes(bench.pids()?.1);
        builds.row(vec![
            size.to_string(),
            format!("{:.2} s", build.as_secs_f64()),
            format!("{leaves}"),
            format!("{:.1} MB", worker_rss as f64 / 1e6),
        ]);

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
                r.db_cpu_us.map_or("-".into(), fmt_us),
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
            digest_build_s: build.as_secs_f64(),
            worker_rss,
            leaves,
        });
    }
    report.table(table);
    report.table(ranks_table);
    report.table(builds);
    if let Some(largest) = results.last() {
        depth_targets(report, largest);
        beside_writes(bench, config, report, largest.players, status_port).await?;
    }
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
    let db_pid = crate::machine::listener_pid(bench.db_url.port);
    let measure = |read: &str, rank: usize, path: String| {
        let read = read.to_owned();
        async move {
            let requests = Arc::new(vec![Request::get_json(port, &path)]);
            let clients = HttpClient::many(1, port, requests, 200).await?;
            let cpu_before = db_pid.and_then(crate::machine::cpu_time);
            let result = load::run(clients, Limit::Count(reads_at(rank, config.top5_reads))).await;
            let db_cpu_us = cpu_before
                .zip(db_pid.and_then(crate::machine::cpu_time))
                .map(|(a, b)| (b - a).as_secs_f64() * 1e6 / result.ops.max(1) as f64);
            check(config, &format!("{read} at rank {rank}"), &result)?;
            anyhow::Ok(RankedResult {
                read,
                rank,
                db_cpu_us,
                result,
            })
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
    for ((player, score), rank) in players_at(size, &ranks).into_iter().zip(ranks.clone()) {
        out.push(measure("rank", rank, format!("/boards/{BOARD}/players/{player}/")).await?);
        out.push(
            measure(
                "page from rank",
                rank,
                format!("/boards/{BOARD}/players/?rank={rank}&limit=10"),
            )
            .await?,
        );
        // Ten friends at about this depth (above it at the board's end).
        let near: Vec<usize> = (0..10)
            .map(|k| {
                if rank + 70 <= size {
                    rank + k * 7
                } else {
                    rank - k * 7
                }
            })
            .collect();
        let ids: Vec<String> = players_at(size, &near)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        out.push(
            measure(
                "friends",
                rank,
                format!("/boards/{BOARD}/players/?ids={}", ids.join(",")),
            )
            .await?,
        );
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

/// The depth targets at the largest size: each read at the deepest rank
/// within 3× the same read at rank 10 (p50), with p99 ≤ 25 ms.
fn depth_targets(report: &mut Report, largest: &SizeResult) {
    let deepest = largest.ranked.iter().map(|r| r.rank).max().unwrap_or(1);
    if deepest <= 10 {
        return;
    }
    for read in ["rank", "around", "page from rank", "friends"] {
        let at = |rank: usize| {
            largest
                .ranked
                .iter()
                .find(|r| r.read == read && r.rank == rank)
        };
        let (Some(shallow), Some(deep)) = (at(10), at(deepest)) else {
            continue;
        };
        report.target(Target::ratio(
            &format!(
                "{read} at rank {deepest} ≤ 3× at rank 10 ({} players, p50)",
                largest.players
            ),
            format!(
                "{} / {}",
                fmt_us(deep.result.latency.p50_us),
                fmt_us(shallow.result.latency.p50_us)
            ),
            deep.result.latency.p50_us / shallow.result.latency.p50_us.max(1.0),
            3.0,
        ));
        report.target(Target::ratio(
            &format!("{read} at rank {deepest}: p99 ≤ 25 ms"),
            fmt_us(deep.result.latency.p99_us),
            deep.result.latency.p99_us / 25_000.0,
            1.0,
        ));
    }
}

/// At the largest size: the keeper's rebuild after `kill -9`, score-adds
/// beside deep reads, and score-add throughput with and without the keeper.
async fn beside_writes(
    bench: &mut Bench,
    config: &Config,
    report: &mut Report,
    size: usize,
    status_port: u16,
) -> anyhow::Result<()> {
    // The keeper dies; a new one takes the shard once the lease expires and
    // recounts every leaf of the digest it finds.
    bench.stack.kill_worker();
    let started = Instant::now();
    bench.stack.start_worker().await?;
    let (mut taken, mut rebuilt) = (None, None);
    while rebuilt.is_none() {
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "no rebuild within 10 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let m = crate::harness::worker_metrics(status_port)
            .await
            .unwrap_or_default();
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        if taken.is_none() && get("dblistener_rank_boards") >= 1.0 {
            taken = Some(started.elapsed());
        }
        if taken.is_some()
            && get("dblistener_rank_doubtful_leaves") == 0.0
            && get("dblistener_rank_recounts_total") >= get("dblistener_rank_leaves")
        {
            rebuilt = Some(started.elapsed());
        }
    }
    let (taken, rebuilt) = (taken.unwrap_or_default(), rebuilt.unwrap_or_default());
    let mut table = Table::new(
        &format!("The rank keeper killed with kill -9 ({size} players)"),
        &["digest loaded", "every leaf recounted", "rebuild"],
    );
    table.row(vec![
        format!("{:.2} s", taken.as_secs_f64()),
        format!("{:.2} s", rebuilt.as_secs_f64()),
        format!("{:.2} s", (rebuilt - taken).as_secs_f64()),
    ]);
    report.table(table);

    // Score-adds on another board, alone and beside 16 deep readers.
    let players = bench.board(W, 1000).await?;
    let writes = crate::harness::score_add_requests(bench.origin_port(), W, &players);
    let window = Limit::Time {
        warmup: WARMUP,
        measure: config.duration,
    };
    let beside_measure = if config.strict() {
        config.duration
    } else {
        config.duration.max(BESIDE_WINDOW)
    };
    let beside_window = Limit::Time {
        warmup: WARMUP,
        measure: beside_measure,
    };
    // A steady 200 score-adds a second from 20 clients, well below what
    // the origin sustains alone, each measured from its slot: the question
    // is what deep readers do to a write's latency, not to the machine's
    // capacity, which the readers share.
    let paced_writers = |port: u16| {
        let writes = Arc::clone(&writes);
        async move {
            anyhow::Ok(Paced::staggered(
                HttpClient::many(WRITERS, port, writes, 200).await?,
                WRITE_RATE,
            ))
        }
    };
    let deep: Vec<usize> = (0..64).map(|k| size - k * 13 % size.max(1)).collect();
    let deep_reads = Arc::new(
        players_at(size, &deep)
            .into_iter()
            .map(|(p, _)| {
                Request::get_json(
                    bench.origin_port(),
                    &format!("/boards/{BOARD}/players/{p}/"),
                )
            })
            .collect::<Vec<_>>(),
    );
    let mut table = Table::new(
        &format!("Score-adds ({WRITE_RATE}/s from {WRITERS} clients) alone and beside 16 clients reading deep ranks, alternating"),
        &[
            "round",
            "",
            "score-adds/s",
            "p50",
            "p99",
            "deep reads/s",
            "deep p99",
        ],
    );
    let (mut alone_all, mut beside_all) = (Samples::new(), Samples::new());
    let rounds = if config.strict() { 1 } else { BESIDE_ROUNDS };
    for round in 1..=rounds {
        let (alone, samples) =
            load::run_sampled(paced_writers(bench.origin_port()).await?, beside_window).await;
        alone_all.extend(samples);
        check(config, "score-adds alone", &alone)?;
        table.row(vec![
            round.to_string(),
            "alone".into(),
            fmt_rate(alone.throughput),
            fmt_us(alone.latency.p50_us),
            fmt_us(alone.latency.p99_us),
            String::new(),
            String::new(),
        ]);
        let readers =
            HttpClient::many(16, bench.origin_port(), Arc::clone(&deep_reads), 200).await?;
        let writers = paced_writers(bench.origin_port()).await?;
        let ((beside, samples), reads) = tokio::join!(
            load::run_sampled(writers, beside_window),
            load::run(
                readers,
                Limit::Time {
                    warmup: std::time::Duration::ZERO,
                    // The writers' warm-up and window, and a second more.
                    measure: beside_measure + std::time::Duration::from_secs(2),
                }
            )
        );
        beside_all.extend(samples);
        check(config, "score-adds beside deep reads", &beside)?;
        // Readers past the admission's wait are refused with 503 `busy`:
        // counted, not a failure of the run.
        anyhow::ensure!(
            reads.ops > 0,
            "no deep read succeeded: {:?}",
            reads.first_error
        );
        table.row(vec![
            round.to_string(),
            "beside deep reads".into(),
            fmt_rate(beside.throughput),
            fmt_us(beside.latency.p50_us),
            fmt_us(beside.latency.p99_us),
            fmt_rate(reads.throughput),
            fmt_us(reads.latency.p99_us),
        ]);
    }
    let (alone, beside) = (alone_all.summary(), beside_all.summary());
    for (what, all) in [("alone", &alone), ("beside deep reads", &beside)] {
        table.row(vec![
            "all".into(),
            what.into(),
            format!("{} samples", all.count),
            fmt_us(all.p50_us),
            fmt_us(all.p99_us),
            String::new(),
            String::new(),
        ]);
    }
    report.target(Target::ratio(
        "score-add p99 beside 16 deep readers ≤ 1.5× alone (over every alternating round's samples)",
        format!("{} / {}", fmt_us(beside.p99_us), fmt_us(alone.p99_us)),
        beside.p99_us / alone.p99_us.max(1.0),
        1.5,
    ));
    report.table(table);

    // Throughput with the keeper and with a worker that keeps no digest,
    // alternating, so that neither side has the machine's quieter moments.
    // Each round also takes the CPU time per score-add of the database and
    // of the worker: what the keeper costs, which a throughput on two
    // shared cores shows only through their noise.
    let db_pid = crate::machine::listener_pid(bench.db_url.port);
    let mut rounds = Vec::new();
    let mut table = Table::new(
        "Score-add throughput with the rank keeper and without (16 clients), alternating",
        &[
            "round",
            "worker",
            "score-adds/s",
            "p99",
            "database CPU per score-add",
            "worker CPU per score-add",
        ],
    );
    for round in 0..THROUGHPUT_ROUNDS {
        let keeper = round % 2 == 0;
        bench.stack.kill_worker();
        bench
            .stack
            .set_worker_env("RANK_DIGESTS", if keeper { "true" } else { "false" });
        bench.stack.start_worker().await?;
        if keeper {
            // Measured in the keeper's steady state, not while a new
            // holder recounts the big board's digest (measured above).
            digest_settled(status_port).await?;
        }
        let (_, worker_pid) = bench.pids()?;
        let clients = HttpClient::many(16, bench.origin_port(), Arc::clone(&writes), 200).await?;
        let cpu = |pid: Option<u32>| pid.and_then(crate::machine::cpu_time);
        let before = (cpu(db_pid), cpu(Some(worker_pid)));
        let result = load::run(clients, window).await;
        let after = (cpu(db_pid), cpu(Some(worker_pid)));
        check(
            config,
            "score-adds with and without the rank keeper",
            &result,
        )?;
        // The CPU counts the warm-up too: per score-add of the whole run.
        let warm_ops = result.throughput * WARMUP.as_secs_f64();
        let per_op = |a: Option<std::time::Duration>, b: Option<std::time::Duration>| {
            a.zip(b)
                .map(|(a, b)| (b - a).as_secs_f64() * 1e6 / (result.ops as f64 + warm_ops).max(1.0))
        };
        let measured = ThroughputRound {
            keeper,
            db_cpu_us: per_op(before.0, after.0),
            worker_cpu_us: per_op(before.1, after.1),
            result,
        };
        table.row(vec![
            (round + 1).to_string(),
            if keeper { "keeper" } else { "no digests" }.into(),
            fmt_rate(measured.result.throughput),
            fmt_us(measured.result.latency.p99_us),
            measured.db_cpu_us.map_or("-".into(), fmt_us),
            measured.worker_cpu_us.map_or("-".into(), fmt_us),
        ]);
        rounds.push(measured);
    }
    let side = |keeper: bool| rounds.iter().filter(move |r| r.keeper == keeper);
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let throughput = |keeper| mean(side(keeper).map(|r| r.result.throughput).collect());
    let db_cpu = |keeper| mean(side(keeper).filter_map(|r| r.db_cpu_us).collect());
    let worker_cpu = |keeper| mean(side(keeper).filter_map(|r| r.worker_cpu_us).collect());
    for keeper in [true, false] {
        table.row(vec![
            "mean".into(),
            if keeper { "keeper" } else { "no digests" }.into(),
            fmt_rate(throughput(keeper)),
            String::new(),
            fmt_us(db_cpu(keeper)),
            fmt_us(worker_cpu(keeper)),
        ]);
    }
    report.table(table);
    report.section("keeper_throughput", &rounds);
    let (with, without) = (throughput(true), throughput(false));
    bench.stack.kill_worker();
    bench.stack.set_worker_env("RANK_DIGESTS", "true");
    bench.stack.start_worker().await?;
    quiet_lag(bench, report, &players).await?;
    with_rank_cost(bench, config, report, size).await?;
    report.target(Target::ratio(
        &format!(
            "score-add throughput with the rank keeper ≥ 0.9× without (16 clients, {} runs each, alternating)",
            THROUGHPUT_ROUNDS / 2
        ),
        format!("{} / {}", fmt_rate(with), fmt_rate(without)),
        without / with.max(1e-9),
        1.0 / 0.9,
    ));
    Ok(())
}

/// What `?with=rank` costs a score-add: writes of players spread over
/// every depth of the big board, in alternating windows with the rank
/// asked for and without, from one client (the write's latency) and from
/// 16 (what the database can take), with the database's CPU time per
/// write. It is why a score-add gives its rank only on request
/// (docs/api.md).
async fn with_rank_cost(
    bench: &Bench,
    config: &Config,
    report: &mut Report,
    size: usize,
) -> anyhow::Result<()> {
    let depths: Vec<usize> = (0..64).map(|k| 1 + k * (size / 64)).collect();
    let players = players_at(size, &depths);
    let writes = |query: &str| {
        Arc::new(
            players
                .iter()
                .map(|(p, _)| {
                    Request::post_json(
                        bench.origin_port(),
                        &format!("/boards/{BOARD}/players/{p}/score-add/{query}"),
                        r#"{"value":1}"#,
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let (with, without) = (writes("?with=rank"), writes(""));
    let window = Limit::Time {
        warmup: WARMUP,
        measure: config.duration,
    };
    let db_pid = crate::machine::listener_pid(bench.db_url.port);
    let mut table = Table::new(
        &format!("Score-adds with ?with=rank and without (players at every depth of {size}), alternating"),
        &[
            "clients",
            "round",
            "",
            "score-adds/s",
            "mean",
            "p99",
            "database CPU per score-add",
        ],
    );
    let side_name = |ranked: bool| if ranked { "with ?with=rank" } else { "without" };
    let rounds = if config.strict() { 2 } else { WITH_RANK_ROUNDS };
    let mut measured = Vec::new();
    for clients in [1, 16] {
        // Per side: the samples, the throughputs, the CPU and the writes.
        let mut sides: [(Samples, Vec<f64>, f64, f64); 2] = Default::default();
        for round in 0..rounds {
            let ranked = round % 2 == 0;
            let requests = if ranked { &with } else { &without };
            let client =
                HttpClient::many(clients, bench.origin_port(), Arc::clone(requests), 200).await?;
            let before = db_pid.and_then(crate::machine::cpu_time);
            let (result, samples) = load::run_sampled(client, window).await;
            let after = db_pid.and_then(crate::machine::cpu_time);
            check(
                config,
                &format!("score-adds {}", side_name(ranked)),
                &result,
            )?;
            // The CPU counts the warm-up too: per score-add of the whole run.
            let ops = result.ops as f64 + result.throughput * WARMUP.as_secs_f64();
            let cpu = before.zip(after).map(|(a, b)| (b - a).as_secs_f64() * 1e6);
            let side = &mut sides[usize::from(!ranked)];
            side.0.extend(samples);
            side.1.push(result.throughput);
            side.2 += cpu.unwrap_or(f64::NAN);
            side.3 += ops;
            table.row(vec![
                clients.to_string(),
                (round + 1).to_string(),
                side_name(ranked).into(),
                fmt_rate(result.throughput),
                fmt_us(result.latency.mean_us),
                fmt_us(result.latency.p99_us),
                cpu.map_or("-".into(), |c| fmt_us(c / ops.max(1.0))),
            ]);
        }
        let mut means = [(0.0, 0.0); 2];
        for (i, (samples, rates, cpu, ops)) in sides.into_iter().enumerate() {
            let all = samples.summary();
            let rate = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
            means[i] = (all.mean_us, rate);
            table.row(vec![
                clients.to_string(),
                "all".into(),
                side_name(i == 0).into(),
                fmt_rate(rate),
                fmt_us(all.mean_us),
                fmt_us(all.p99_us),
                if cpu.is_finite() {
                    fmt_us(cpu / ops.max(1.0))
                } else {
                    "-".into()
                },
            ]);
        }
        let (latency, throughput) = (
            means[0].0 / means[1].0.max(1e-9),
            means[0].1 / means[1].1.max(1e-9),
        );
        table.row(vec![
            clients.to_string(),
            "ratio".into(),
            "with / without".into(),
            format!("{throughput:.2}×"),
            format!("{latency:.2}×"),
            String::new(),
            String::new(),
        ]);
        measured.push(serde_json::json!({
            "clients": clients,
            "mean_latency_ratio": latency,
            "throughput_ratio": throughput,
        }));
    }
    report.table(table);
    report.section("with_rank", &measured);
    Ok(())
}

/// Waits until the worker's keeper holds a digest with no leaf in doubt
/// and has recounted every leaf since it started.
async fn digest_settled(status_port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let m = crate::harness::worker_metrics(status_port)
            .await
            .unwrap_or_default();
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        if get("dblistener_rank_boards") >= 1.0
            && get("dblistener_rank_doubtful_leaves") == 0.0
            && get("dblistener_rank_recounts_total") >= get("dblistener_rank_leaves")
        {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "the rank digests never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// How long after the last write of a burst every rank is exact, over
/// [`LAG_ROUNDS`] bursts of random score-adds on board `W` (its players
/// `players`): the first page (positions, no digest) is the truth; pages
/// from ranks, a sample of players' own ranks and `out_of` (all from the
/// digest) must agree with it.
async fn quiet_lag(bench: &Bench, report: &mut Report, players: &[String]) -> anyhow::Result<()> {
    let port = bench.origin_port();
    // A worker just started: once it holds the shard, the ranks are exact.
    let started = Instant::now();
    while !ranks_exact(bench, &true_order(bench, players.len()).await?).await? {
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "ranks of board {W} never exact after the worker started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut lags = Vec::new();
    for round in 0..LAG_ROUNDS {
        // Values from -20 to 29: players cross leaves both ways.
        let burst = Arc::new(
            (0..LAG_BURST)
                .map(|i| {
                    let p = &players[(i * 7919 + round * 31) % players.len()];
                    let value = ((i * 37 + round) % 50) as i64 - 20;
                    Request::post_json(
                        port,
                        &format!("/boards/{W}/players/{p}/score-add/"),
                        &format!(r#"{{"value":{value}}}"#),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let result = load::run(
            HttpClient::many(16, port, burst, 200).await?,
            Limit::Count(LAG_BURST as u64),
        )
        .await;
        anyhow::ensure!(result.errors == 0, "burst: {:?}", result.first_error);
        let quiet_from = Instant::now();
        // Nothing writes from here on: the true order is read once, and
        // each check reads only what the digest answers (about 30 reads),
        // so the lag is measured to within a check's time.
        let truth = true_order(bench, players.len()).await?;
        loop {
            anyhow::ensure!(
                quiet_from.elapsed() < std::time::Duration::from_secs(60),
                "ranks not exact 60 s after the last write"
            );
            if ranks_exact(bench, &truth).await? {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        lags.push(quiet_from.elapsed());
    }
    lags.sort();
    let ms = |d: &std::time::Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let mut table = Table::new(
        &format!(
            "Quiet lag: after a burst of {LAG_BURST} score-adds on a board of {} players, until every rank is exact ({LAG_ROUNDS} bursts)",
            players.len()
        ),
        &["min", "median", "max", "stated lag"],
    );
    let max = lags.last().copied().unwrap_or_default();
    table.row(vec![
        ms(&lags[0]),
        ms(&lags[lags.len() / 2]),
        ms(&max),
        ms(&STATED_LAG),
    ]);
    report.table(table);
    report.target(Target::ratio(
        "every rank exact within the stated lag of the last write (max over bursts)",
        format!("{} / {}", ms(&max), ms(&STATED_LAG)),
        max.as_secs_f64() / STATED_LAG.as_secs_f64(),
        1.0,
    ));
    Ok(())
}

/// Whether the digest's ranks of board `W` agree with the board's order.
/// The board `W` in rank order, `(id, rank)`: the first page, whose ranks
/// are positions (no digest).
async fn true_order(bench: &Bench, players: usize) -> anyhow::Result<Vec<(String, u64)>> {
    let page = bench
        .call(
            Request::get_json(
                bench.origin_port(),
                &format!("/boards/{W}/players/?limit={players}"),
            ),
            200,
        )
        .await?;
    let truth = listed_ranks(&page);
    anyhow::ensure!(truth.len() == players, "the first page has {}", truth.len());
    Ok(truth)
}

fn listed_ranks(page: &serde_json::Value) -> Vec<(String, u64)> {
    page["players"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["id"].as_str().unwrap_or("").to_owned(),
                        p["rank"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the digest's ranks of board `W` agree with `truth`: every page
/// from a rank, `out_of`, and the ranks of a player in every 50.
async fn ranks_exact(bench: &Bench, truth: &[(String, u64)]) -> anyhow::Result<bool> {
    let port = bench.origin_port();
    let players = truth.len();
    for from in (0..players).step_by(100) {
        let page = bench
            .call(
                Request::get_json(
                    port,
                    &format!("/boards/{W}/players/?rank={}&limit=100", from + 1),
                ),
                200,
            )
            .await?;
        if page["out_of"].as_u64() != Some(players as u64)
            || listed_ranks(&page)[..] != truth[from..(from + 100).min(players)]
        {
            return Ok(false);
        }
    }
    for (id, rank) in truth.iter().step_by(50) {
        let p = bench
            .call(
                Request::get_json(port, &format!("/boards/{W}/players/{id}/")),
                200,
            )
            .await?;
        if p["rank"].as_u64() != Some(*rank) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_the_apis() {
        // URL-safe base64 of `[6512,"ann"]`, as docs/api.md's example.
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
