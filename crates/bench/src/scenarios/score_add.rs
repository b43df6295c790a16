//! Score-add throughput and latency: straight to the origin and through
//! Pushpin, beside the same atomic update sent straight to the database
//! through the driver (the floor the origin's cost is measured against) and
//! through the store's pool in this process (which splits the origin's
//! overhead into the pool's and HTTP's). A bare increment of the player
//! ([`db::bare_increment`], the term before boards had rules) and the
//! store's term that reads the board (sent on boards that reset), also sent
//! through the driver, say in the same run what the rules and the board
//! read cost.
//!
//! Three parts of their own measure what the deployment's connection costs:
//! the store's pool against the database's own throughput (module
//! `store_pool`), the origin's throughput by `DB_POOL_SIZE` (module
//! `origin_pool`) and the store's with TLS to the database against without
//! (module `tls`).

mod origin_pool;
mod store_pool;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use domain::{BoardId, PlayerId, ScoreDelta};
use serde::Serialize;
use store::Store;

use super::{check, load_row, PathResult, LOAD_HEADER};
use crate::cli::Config;
use crate::db::{self, BareUpdateClient, UpdateClient};
use crate::harness::{score_add_requests, Bench, HttpClient};
use crate::load::{self, Client, LoadResult};
use crate::machine::{child_named, cpu_time};
use crate::report::{Report, Table, Target};
use crate::stats::fmt_us;

const BOARD: &str = "sa";

/// The origin's database layer, run in this process. It cycles through
/// `players` by the run's operation number, as [`UpdateClient`] does, so
/// that both send the same players in the same order: two updates of one
/// player at once wait for each other in the database, and a client-skewed
/// order made such collisions, which the database's own figure did not have.
struct StoreClient {
    store: Store,
    board: BoardId,
    players: Arc<Vec<PlayerId>>,
}

impl Client for StoreClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let player = &self.players[seq as usize % self.players.len()];
        let found = self
            .store
            .add_score(&self.board, player, ScoreDelta::ONE, None)
            .await?;
        anyhow::ensure!(found.is_some(), "player {player} not found");
        Ok(())
    }
}

/// CPU time the server processes spend during one load run, so that a
/// cost can be compared without the noise other work on the machine puts
/// into latencies.
struct CpuMeter {
    processes: Vec<(&'static str, u32, Duration)>,
}

impl CpuMeter {
    fn start(pids: &[(&'static str, u32)]) -> Self {
        Self {
            processes: pids
                .iter()
                .filter_map(|&(name, pid)| Some((name, pid, cpu_time(pid)?)))
                .collect(),
        }
    }

    /// Microseconds of CPU per operation, by process.
    fn per_op(&self, ops: usize) -> BTreeMap<&'static str, f64> {
        self.processes
            .iter()
            .filter_map(|&(name, pid, before)| {
                let used = cpu_time(pid)?.saturating_sub(before);
                Some((name, used.as_secs_f64() * 1e6 / ops.max(1) as f64))
            })
            .collect()
    }
}

/// The path of the bare increment, in the tables and the JSON.
pub const BARE_PATH: &str = "database, bare increment (reql-client)";
/// The path of the store's term that reads the board.
pub const READ_PATH: &str = "database, board read (reql-client)";

/// What the rules, the board read and the origin cost, as ratios of figures
/// taken at one concurrency in the same run: the store's term (on a board
/// that does not reset, `score_update_unread`) and the term with the board
/// read (`score_update`) against the bare increment, and the origin against
/// the store's term and the bare increment.
#[derive(Debug, Clone, Serialize)]
struct Ratios {
    concurrency: usize,
    /// Mean latency, `score_update` / bare increment.
    term_over_bare_mean: f64,
    /// p50 latency, `score_update` / bare increment.
    term_over_bare_p50: f64,
    /// Throughput, bare increment / `score_update`.
    bare_over_term_throughput: f64,
    /// The database's CPU per operation, `score_update` / bare increment
    /// (only when the database is this run's child process).
    term_over_bare_db_cpu: Option<f64>,
    /// Mean latency, `score_update` (reading the board) / bare increment.
    read_over_bare_mean: f64,
    /// Mean latency, origin / `score_update`.
    origin_over_term_mean: f64,
    /// Mean latency, origin / bare increment.
    origin_over_bare_mean: f64,
}

impl Ratios {
    fn new(
        bare: &LoadResult,
        term: &LoadResult,
        read: &LoadResult,
        origin: &LoadResult,
        db_cpu: Option<(f64, f64)>,
    ) -> Self {
        Self {
            concurrency: term.concurrency,
            term_over_bare_mean: term.latency.mean_us / bare.latency.mean_us,
            term_over_bare_p50: term.latency.p50_us / bare.latency.p50_us,
            bare_over_term_throughput: bare.throughput / term.throughput,
            term_over_bare_db_cpu: db_cpu
                .filter(|&(bare, _)| bare > 0.0)
                .map(|(bare, term)| term / bare),
            read_over_bare_mean: read.latency.mean_us / bare.latency.mean_us,
            origin_over_term_mean: origin.latency.mean_us / term.latency.mean_us,
            origin_over_bare_mean: origin.latency.mean_us / bare.latency.mean_us,
        }
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.concurrency.to_string(),
            format!("{:.2}", self.term_over_bare_mean),
            format!("{:.2}", self.bare_over_term_throughput),
            self.term_over_bare_db_cpu
                .map_or("-".to_owned(), |v| format!("{v:.2}")),
            format!("{:.2}", self.read_over_bare_mean),
            format!("{:.2}", self.origin_over_term_mean),
            format!("{:.2}", self.origin_over_bare_mean),
        ]
    }
}

/// Throughput over several runs: their operations over their measured
/// seconds, so that a longer run weighs more than a shorter one.
fn summed_throughput<'a>(runs: impl IntoIterator<Item = &'a LoadResult>) -> f64 {
    let (ops, secs) = runs.into_iter().fold((0.0, 0.0), |(ops, secs), r| {
        (ops + r.ops as f64, secs + r.seconds)
    });
    ops / secs
}

/// The store's score-add term sent straight to the database by `c`
/// clients (see [`UpdateClient`]), with the CPU it cost per operation.
async fn store_term(
    bench: &Bench,
    config: &Config,
    board: &BoardId,
    players: &Arc<Vec<PlayerId>>,
    c: usize,
    pids: &[(&'static str, u32)],
    read_board: bool,
) -> anyhow::Result<(LoadResult, BTreeMap<&'static str, f64>)> {
    let mut clients = Vec::with_capacity(c);
    for _ in 0..c {
        clients.push(UpdateClient {
            session: Arc::new(db::connect(&bench.db_url).await?),
            board: board.clone(),
            players: Arc::clone(players),
            read_board,
        });
    }
    let meter = CpuMeter::start(pids);
    let r = load::run(clients, config.timed()).await;
    let cpu = meter.per_op(r.ops);
    Ok((r, cpu))
}

/// Runs the score-add scenario and its pool and connection parts.
pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let (web_pid, worker_pid) = bench.pids()?;
    let mut pids = vec![("origin", web_pid), ("worker", worker_pid)];
    // A real RethinkDB elsewhere has no pid here; its CPU goes unmeasured.
    if let Some(db_pid) = child_named("reql-dev-server") {
        pids.push(("database", db_pid));
    }
    let players = bench.board(BOARD, config.players).await?;
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
    let mut cpu_table = Table::new(
        "Server CPU per score-add (µs of CPU time per operation, from /proc/<pid>/stat)",
        &[
            "path",
            "concurrency",
            "origin",
            "database",
            "worker",
            "origin + database",
        ],
    );
    let mut results = Vec::new();
    let mut cpu_results = Vec::new();
    let mut push = |table: &mut Table, path: &str, r: LoadResult, cpu: BTreeMap<&str, f64>| {
        table.row(load_row(path, &r));
        let cell = |name: &str| cpu.get(name).map_or("-".to_owned(), |v| format!("{v:.0}"));
        let serving = cpu.get("origin").unwrap_or(&0.0) + cpu.get("database").unwrap_or(&0.0);
        cpu_table.row(vec![
            path.to_owned(),
            r.concurrency.to_string(),
            cell("origin"),
            cell("database"),
            cell("worker"),
            format!("{serving:.0}"),
        ]);
        cpu_results.push(serde_json::json!({
            "path": path, "concurrency": r.concurrency, "cpu_us_per_op": cpu,
        }));
        results.push(PathResult {
            path: path.to_owned(),
            result: r,
        });
        serving
    };
    let mut db_c1 = None;
    let mut origin_c1 = None;
    let mut ratios = Table::new(
        "Score-add ratios, same run (mean latency; throughput; database CPU per op)",
        &[
            "concurrency",
            "score_update / bare: mean",
            "bare / score_update: throughput",
            "database CPU",
            "board read / bare: mean",
            "origin / score_update: mean",
            "origin / bare: mean",
        ],
    );
    let mut ratio_results = Vec::new();
    for &c in &config.concurrency {
        // The database alone (the bare increment, then the store's term),
        // then the pool and the origin, back to back at each level so that
        // the ratios compare figures taken under the same conditions.
        let mut clients = Vec::with_capacity(c);
        for _ in 0..c {
            clients.push(BareUpdateClient {
                session: db::connect(&bench.db_url).await?,
                board: board.clone(),
                players: Arc::clone(&player_ids),
            });
        }
        let meter = CpuMeter::start(&pids);
        let r = load::run(clients, config.timed()).await;
        let cpu = meter.per_op(r.ops);
        check(config, "bare increment", &r)?;
        let bare_db_cpu = cpu.get("database").copied();
        push(&mut table, BARE_PATH, r.clone(), cpu);
        let bare = r;

        let (r, cpu) = store_term(bench, config, &board, &player_ids, c, &pids, false).await?;
        check(config, "database update", &r)?;
        let term_db_cpu = cpu.get("database").copied();
        let serving = push(&mut table, "database (reql-client)", r.clone(), cpu);
        let term = r.clone();
        if c == 1 {
            db_c1 = Some((r, serving));
        }

        let (r, cpu) = store_term(bench, config, &board, &player_ids, c, &pids, true).await?;
        check(config, "database update reading the board", &r)?;
        push(&mut table, READ_PATH, r.clone(), cpu);
        let read = r;

        let clients = HttpClient::many(c, bench.origin_port(), Arc::clone(&direct), 200).await?;
        let meter = CpuMeter::start(&pids);
        let r = load::run(clients, config.timed()).await;
        let cpu = meter.per_op(r.ops);
        check(config, "score-add to the origin", &r)?;
        let serving = push(&mut table, "origin", r.clone(), cpu);
        let ratio = Ratios::new(&bare, &term, &read, &r, bare_db_cpu.zip(term_db_cpu));
        ratios.row(ratio.row());
        ratio_results.push(ratio);
        if c == 1 {
            origin_c1 = Some((r, serving));
        }

        let clients = HttpClient::many(c, bench.pushpin_port(), Arc::clone(&proxied), 200).await?;
        let meter = CpuMeter::start(&pids);
        let r = load::run(clients, config.timed()).await;
        let cpu = meter.per_op(r.ops);
        check(config, "score-add through Pushpin", &r)?;
        push(&mut table, "pushpin → origin", r, cpu);
    }
    report.table(table);
    report.table(cpu_table);
    report.table(ratios);
    report.section("score_add", &results);
    report.section("score_add_cpu", &cpu_results);
    report.section("score_add_ratios", &ratio_results);

    store_pool::run(bench, config, report, &board, &player_ids).await?;
    origin_pool::run(bench, config, report, BOARD, &players).await?;
    tls::run(config, report, &board, &player_ids).await?;

    if let (Some((db, db_cpu)), Some((origin, origin_cpu))) = (db_c1, origin_c1) {
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
        if db_cpu > 0.0 && pids.len() > 2 {
            report.target(Target::ratio(
                "origin score-add ≤ 1.3× database update (c=1, server CPU per op)",
                format!(
                    "origin + database {} / database {} of CPU",
                    fmt_us(origin_cpu),
                    fmt_us(db_cpu)
                ),
                origin_cpu / db_cpu,
                1.3,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn run(ops: usize, seconds: f64) -> LoadResult {
        LoadResult {
            concurrency: 1,
            ops,
            errors: 0,
            first_error: None,
            seconds,
            throughput: ops as f64 / seconds,
            latency: Summary::default(),
        }
    }

    #[test]
    fn throughput_over_runs_weighs_each_by_its_length() {
        let runs = [run(300, 1.0), run(100, 3.0)];
        assert_eq!(summed_throughput(&runs), 100.0);
    }
}
