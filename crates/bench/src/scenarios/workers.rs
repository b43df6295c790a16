//! The workers' throughput: distinct boards published per second.
//!
//! Writers add 1 to players of many boards straight in the database at a
//! steady offered rate (open loop, on four connections), in batches: one
//! query changes `--write-batch` players, each on another board, so that
//! the rate can exceed what a worker publishes on the dev server and on a
//! durable RethinkDB alike, where one score-add per query would be bound by
//! the disk. Every board has five players, so every change alters its top
//! five and is worth a publish; what a worker cannot keep up with it
//! coalesces (one publish of a board carries all of its changes since the
//! last). A worker publishes a board at most once per pass over its due
//! boards, so its publishes are distinct boards.
//!
//! The workers' own counters (`/metrics` on their status ports) give the
//! boards published, the changes read from the feeds, the backlog of boards
//! changed and not yet published (`dblistener_dirty_boards`, sampled every
//! 100 ms) and the mean lag from a board's first unpublished change to its
//! publish; their CPU time comes from `/proc`.
//!
//! - `worker-ceiling`: one worker, at each offered rate of `--rates`. The
//!   ceiling is where publishes stop following the rate.
//! - `workers`: 1, 2 and 4 workers sharing the shards, at `--workers-rate`
//!   (above one worker's ceiling on the dev server).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use domain::Shards;
use serde::Serialize;

use super::check;
use crate::cli::Config;
use crate::db::{self, BatchUpdateClient};
use crate::harness::{worker_metrics, Bench, WorkerHandle};
use crate::load::{self, LoadResult, Paced};
use crate::machine::{child_named, cpu_time, listener_pid};
use crate::report::{Report, Table};
use crate::stats::fmt_rate;

/// Players on each board: its whole top five.
const PLAYERS_PER_BOARD: usize = 5;
/// How often the backlog is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Documents per insert while loading the boards.
const LOAD_BATCH: usize = 1000;
/// Writer connections; the offered rate is split between them.
const WRITERS: usize = 4;

/// What one load level measured, summed over the workers.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerLoad {
    /// Workers sharing the shards.
    pub workers: usize,
    /// Score-adds per second offered.
    pub offered: usize,
    /// Score-adds per writer query, each on another board.
    pub write_batch: usize,
    /// Boards the score-adds are spread over.
    pub boards: usize,
    /// The writers' queries (their latencies include the wait for each
    /// query's slot).
    pub writes: LoadResult,
    /// Score-adds applied per second: queries × batch.
    pub score_adds_per_s: f64,
    /// Player changes read from the feeds per second.
    pub changes_per_s: f64,
    /// Board snapshots published per second.
    pub publishes_per_s: f64,
    /// Each worker's share of that, in the order they were started.
    pub publishes_per_s_by_worker: Vec<f64>,
    /// Reads or publishes that failed during the window.
    pub publish_failures: f64,
    /// Changefeeds lost and reopened during the window (a feed whose reader
    /// falls too far behind is cut by the server).
    pub feed_reconnects: f64,
    /// Boards changed and not yet published, sampled every 100 ms.
    pub backlog_mean: f64,
    /// The largest backlog sampled.
    pub backlog_max: f64,
    /// Mean time from a board's first unpublished change to the publish
    /// carrying it, over the publishes of the window, ms.
    pub lag_mean_ms: f64,
    /// The workers' CPU time over the window, in cores (1.0 = one core).
    pub worker_cpu_cores: f64,
    /// Worker CPU time per publish, µs.
    pub worker_cpu_us_per_publish: f64,
    /// The database server's CPU time over the window, in cores: the dev
    /// server this process started, or a server listening on loopback (a
    /// server on another machine goes unmeasured).
    pub database_cpu_cores: Option<f64>,
    /// The window the rates are over, s.
    pub seconds: f64,
}

/// One worker's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    publishes: f64,
    changes: f64,
    failures: f64,
    reconnects: f64,
    lag_sum: f64,
    lag_count: f64,
    cpu: Duration,
}

async fn counters(worker: &WorkerHandle) -> anyhow::Result<Counters> {
    let m = worker_metrics(worker.status_port).await?;
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
    Ok(Counters {
        publishes: get("dblistener_publishes_total"),
        changes: get("dblistener_changes_consumed_total"),
        failures: get("dblistener_publish_failures_total"),
        reconnects: get("dblistener_feed_reconnects_total"),
        lag_sum: get("dblistener_publish_lag_seconds_sum"),
        lag_count: get("dblistener_publish_lag_seconds_count"),
        cpu: cpu_time(worker.pid).unwrap_or_default(),
    })
}

async fn all_counters(workers: &[WorkerHandle]) -> anyhow::Result<Vec<Counters>> {
    let mut out = Vec::with_capacity(workers.len());
    for w in workers {
        out.push(counters(w).await?);
    }
    Ok(out)
}

/// What the sampler saw over the measured window.
struct Window {
    before: Vec<Counters>,
    after: Vec<Counters>,
    seconds: f64,
    backlog: Vec<f64>,
    database_cpu: Option<Duration>,
}

/// Reads the workers' counters when the warm-up ends and when the window
/// ends, sampling their backlog in between.
async fn sample(
    workers: &[WorkerHandle],
    database: Option<u32>,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Window> {
    tokio::time::sleep(warmup).await;
    let start = Instant::now();
    let database_before = database.and_then(cpu_time);
    let before = all_counters(workers).await?;
    let mut backlog = Vec::new();
    while start.elapsed() < window {
        tokio::time::sleep(SAMPLE_EVERY.min(window.saturating_sub(start.elapsed()))).await;
        let mut dirty = 0.0;
        for w in workers {
            let m = worker_metrics(w.status_port).await?;
            dirty += m.get("dblistener_dirty_boards").copied().unwrap_or(0.0);
        }
        backlog.push(dirty);
    }
    let after = all_counters(workers).await?;
    let seconds = start.elapsed().as_secs_f64();
    let database_cpu = match (database.and_then(cpu_time), database_before) {
        (Some(after), Some(before)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(Window {
        before,
        after,
        seconds,
        backlog,
        database_cpu,
    })
}

/// The boards the writers spread over.
struct Boards {
    /// Every player's key, consecutive ones on different boards.
    keys: Arc<Vec<String>>,
    /// One player's key per shard that has boards, with the shard.
    probes: Vec<(u16, String)>,
}

/// Loads `n` boards of [`PLAYERS_PER_BOARD`] players straight into the
/// database, in bulk.
async fn load_boards(
    bench: &Bench,
    config: &Config,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Boards> {
    let (board_docs, player_docs) = db::boards_with_players(prefix, n, PLAYERS_PER_BOARD)?;
    let keys: Vec<String> = player_docs
        .iter()
        .filter_map(|doc| doc["id"].as_str().map(str::to_owned))
        .collect();
    let shards = Shards::new(config.worker_shards).context("the shard count")?;
    let mut probes: BTreeMap<u16, String> = BTreeMap::new();
    // The first `n` keys are player `p0` of each board, in board order.
    for (doc, key) in player_docs.iter().zip(&keys).take(n) {
        let board = doc["board"].as_str().unwrap_or_default();
        probes
            .entry(shards.of_board(board))
            .or_insert_with(|| key.clone());
    }
    let session = db::connect(&bench.db_url).await?;
    for (table, docs) in [(store::BOARDS, board_docs), (store::PLAYERS, player_docs)] {
        for chunk in docs.chunks(LOAD_BATCH) {
            db::insert(&session, table, chunk.to_vec()).await?;
        }
    }
    Ok(Boards {
        keys: Arc::new(keys),
        probes: probes.into_iter().collect(),
    })
}

/// A worker's changes read, publishes and dirty boards.
async fn progress(worker: &WorkerHandle) -> anyhow::Result<[f64; 3]> {
    let m = worker_metrics(worker.status_port).await?;
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
    Ok([
        get("dblistener_changes_consumed_total"),
        get("dblistener_publishes_total"),
        get("dblistener_dirty_boards"),
    ])
}

/// The shards a worker reports holding on `/healthz`.
async fn held_shards(bench: &Bench, worker: &WorkerHandle) -> anyhow::Result<Vec<u16>> {
    let (_, health) = bench
        .stack
        .worker_health(&worker.id)
        .await
        .with_context(|| format!("worker {} does not answer /healthz", worker.id))?;
    Ok(health["leases"]["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_u64().and_then(|s| u16::try_from(s).ok()))
        .collect())
}

/// Waits until the workers have read and published everything, so that a
/// level starts with nothing left over from the one before (changes queued
/// in the feeds on the server, or the republish of every board of a shard
/// whose feed opened).
///
/// Counters standing still are not enough: a worker reads the snapshots of
/// all its due boards before it publishes any, and reads no change
/// meanwhile, so a long pass looks idle. So a probe goes first, one
/// score-add on a board of every shard, and each worker must have read the
/// probes of its shards (which it does only between passes) and published
/// since; then nothing may move, with nothing dirty, for `quiet`.
async fn wait_idle(
    bench: &Bench,
    session: &testkit::DbSession,
    boards: &Boards,
    quiet: Duration,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut expected = Vec::with_capacity(bench.workers.len());
    let mut before = Vec::with_capacity(bench.workers.len());
    for w in &bench.workers {
        let held = held_shards(bench, w).await?;
        let probes = boards
            .probes
            .iter()
            .filter(|(shard, _)| held.contains(shard))
            .count();
        expected.push(probes as f64);
        before.push(progress(w).await?);
    }
    let keys: Vec<String> = boards.probes.iter().map(|(_, key)| key.clone()).collect();
    session.one(&db::add_one(keys)).await?;
    let mut last = None;
    let mut quiet_since = Instant::now();
    loop {
        let mut now = Vec::with_capacity(bench.workers.len());
        for w in &bench.workers {
            now.push(progress(w).await?);
        }
        let probed = now
            .iter()
            .zip(&before)
            .zip(&expected)
            .all(|((n, b), &e)| n[0] - b[0] >= e && (e == 0.0 || n[1] > b[1]));
        let dirty: f64 = now.iter().map(|n| n[2]).sum();
        if probed && dirty == 0.0 && last.as_ref() == Some(&now) {
            if quiet_since.elapsed() >= quiet {
                return Ok(());
            }
        } else {
            last = Some(now);
            quiet_since = Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workers were still busy after {within:?}"
        );
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// The database server's pid: the dev server this process started, or the
/// server that listens on the database's port on this machine.
fn database_pid(bench: &Bench) -> Option<u32> {
    let url = &bench.db_url;
    let local = matches!(url.host.as_str(), "127.0.0.1" | "localhost" | "::1");
    child_named("reql-dev-server").or_else(|| local.then(|| listener_pid(url.port)).flatten())
}

/// Offers `rate` score-adds a second for the configured time and measures
/// the workers.
async fn measure(
    bench: &Bench,
    config: &Config,
    boards: &Boards,
    rate: usize,
) -> anyhow::Result<WorkerLoad> {
    let keys = &boards.keys;
    let session = db::connect(&bench.db_url).await?;
    // A second in a measuring run; the smoke run only checks that it works.
    let quiet = Duration::from_millis(if config.strict() { 300 } else { 1000 });
    wait_idle(bench, &session, boards, quiet, Duration::from_secs(300)).await?;
    let batch = config
        .write_batch
        .min(keys.len() / PLAYERS_PER_BOARD)
        .max(1);
    let queries = rate as f64 / batch as f64;
    let mut clients = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let client = BatchUpdateClient {
            session: db::connect(&bench.db_url).await?,
            keys: Arc::clone(keys),
            batch,
        };
        clients.push(client);
    }
    let (writes, window) = tokio::join!(
        load::run(Paced::staggered(clients, queries), config.timed()),
        sample(
            &bench.workers,
            database_pid(bench),
            config.warmup,
            config.duration
        )
    );
    let window = window?;
    check(config, "batched score-adds", &writes)?;
    let delta = |f: fn(&Counters) -> f64| -> Vec<f64> {
        window
            .before
            .iter()
            .zip(&window.after)
            .map(|(b, a)| f(a) - f(b))
            .collect()
    };
    let per_s = |v: f64| v / window.seconds;
    let publishes_by_worker: Vec<f64> = delta(|c| c.publishes).into_iter().map(per_s).collect();
    let publishes: f64 = delta(|c| c.publishes).iter().sum();
    let lag_sum: f64 = delta(|c| c.lag_sum).iter().sum();
    let lag_count: f64 = delta(|c| c.lag_count).iter().sum();
    let cpu: f64 = delta(|c| c.cpu.as_secs_f64()).iter().sum();
    let backlog_mean = window.backlog.iter().sum::<f64>() / window.backlog.len().max(1) as f64;
    let result = WorkerLoad {
        workers: bench.workers.len(),
        offered: rate,
        write_batch: batch,
        boards: keys.len() / PLAYERS_PER_BOARD,
        score_adds_per_s: writes.throughput * batch as f64,
        changes_per_s: per_s(delta(|c| c.changes).iter().sum()),
        publishes_per_s: per_s(publishes),
        publishes_per_s_by_worker: publishes_by_worker,
        publish_failures: delta(|c| c.failures).iter().sum(),
        feed_reconnects: delta(|c| c.reconnects).iter().sum(),
        backlog_mean,
        backlog_max: window.backlog.iter().copied().fold(0.0, f64::max),
        lag_mean_ms: if lag_count > 0.0 {
            lag_sum / lag_count * 1e3
        } else {
            0.0
        },
        worker_cpu_cores: cpu / window.seconds,
        worker_cpu_us_per_publish: cpu * 1e6 / publishes.max(1.0),
        database_cpu_cores: window
            .database_cpu
            .map(|d| d.as_secs_f64() / window.seconds),
        seconds: window.seconds,
        writes,
    };
    if result.publishes_per_s == 0.0 {
        let what = format!(
            "the workers published nothing at {rate} score-adds/s offered ({:.0}/s applied, {:.0} changes read/s)",
            result.score_adds_per_s, result.changes_per_s
        );
        anyhow::ensure!(!config.strict(), "{what}");
        eprintln!("warning: {what}");
    }
    anyhow::ensure!(
        result.publish_failures == 0.0 || !config.strict(),
        "{} publishes failed",
        result.publish_failures
    );
    Ok(result)
}

const HEADER: [&str; 14] = [
    "workers",
    "offered",
    "score-adds/s",
    "changes read/s",
    "boards published/s",
    "per worker",
    "backlog mean",
    "backlog max",
    "lag mean",
    "worker CPU",
    "CPU per publish",
    "database CPU",
    "feed reconnects",
    "failures",
];

fn row(r: &WorkerLoad) -> Vec<String> {
    let per_worker: Vec<String> = r
        .publishes_per_s_by_worker
        .iter()
        .map(|&v| fmt_rate(v))
        .collect();
    vec![
        r.workers.to_string(),
        fmt_rate(r.offered as f64),
        fmt_rate(r.score_adds_per_s),
        fmt_rate(r.changes_per_s),
        fmt_rate(r.publishes_per_s),
        per_worker.join(" + "),
        format!("{:.0} of {}", r.backlog_mean, r.boards),
        format!("{:.0}", r.backlog_max),
        format!("{:.0} ms", r.lag_mean_ms),
        format!("{:.2} cores", r.worker_cpu_cores),
        format!("{:.0} µs", r.worker_cpu_us_per_publish),
        r.database_cpu_cores
            .map_or("-".to_owned(), |c| format!("{c:.2} cores")),
        format!("{:.0}", r.feed_reconnects),
        format!("{:.0}", r.publish_failures),
    ]
}

/// One worker under growing loads.
pub async fn ceiling(
    bench: &mut Bench,
    config: &Config,
    report: &mut Report,
) -> anyhow::Result<()> {
    let boards = load_boards(bench, config, "ceil", config.boards).await?;
    bench.scale_workers(1).await?;
    let mut table = Table::new(
        &format!(
            "One worker's ceiling: {} boards of {PLAYERS_PER_BOARD} players, score-adds offered straight to the database, {} per query",
            config.boards, config.write_batch
        ),
        &HEADER,
    );
    let mut results = Vec::new();
    let mut rates = config.rates.clone();
    rates.sort_unstable();
    for rate in rates {
        let r = measure(bench, config, &boards, rate).await?;
        table.row(row(&r));
        results.push(r);
    }
    report.table(table);
    report.section("worker_ceiling", &results);
    Ok(())
}

/// 1, 2, 4... workers at `--workers-rate`.
pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let boards = load_boards(bench, config, "wk", config.boards).await?;
    let rate = config.workers_rate;
    // In the order given: 1,2,4,2,1 shows how far the machine drifted.
    let counts = config.workers.clone();
    let mut table = Table::new(
        &format!(
            "Workers sharing the shards: {} boards, {rate} score-adds/s offered, {} per query",
            config.boards, config.write_batch
        ),
        &[HEADER.as_slice(), &["vs the first run"]].concat(),
    );
    let mut results: Vec<WorkerLoad> = Vec::new();
    for n in counts {
        bench.scale_workers(n).await?;
        let r = measure(bench, config, &boards, rate).await?;
        let mut cells = row(&r);
        cells.push(match results.first() {
            Some(first) => format!("{:.2}", r.publishes_per_s / first.publishes_per_s),
            None => "1.00".to_owned(),
        });
        table.row(cells);
        results.push(r);
    }
    report.table(table);
    report.section("workers", &results);
    Ok(())
}
