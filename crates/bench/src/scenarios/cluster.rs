//! Score-adds and end-to-end latency on real RethinkDB clusters on
//! loopback: each `--cluster-nodes` count gets fresh nodes
//! ([`testkit::RethinkCluster`], every node after the first joined to it)
//! and a fresh stack whose tables have as many replicas as there are nodes
//! (`TABLE_REPLICAS`), so a write is acknowledged once a majority of the
//! replicas has it on disk. The origin and the worker list every node in
//! `DATABASE_URL`.
//!
//! Needs a real `rethinkdb` (`RETHINKDB_BIN`, or on `PATH`); without one it
//! says so in one line and measures nothing.

use reql_terms::{r as reql, term};
use serde::Serialize;
use serde_json::json;
use testkit::{rethinkdb_binary, RethinkCluster, StackOptions, TempDir};

use super::e2e::{fan_out, fan_out_header, fan_out_row, FanOut};
use super::{check, load_row, PathResult, LOAD_HEADER};
use crate::cli::Config;
use crate::harness::{score_add_requests, Bench, HttpClient, Server};
use crate::load;
use crate::report::{Report, Table};

const BOARD: &str = "cl";
const E2E_BOARD: &str = "cle2e";

/// What one cluster size measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRun {
    /// RethinkDB nodes of the cluster.
    pub nodes: usize,
    /// Replicas asked for each table (`TABLE_REPLICAS`), as many as nodes.
    pub replicas: usize,
    /// Replicas per shard of the players table, as the cluster reports
    /// them: checks that the layout asked for is the one measured.
    pub players_replicas: Vec<usize>,
    /// Score-adds to the origin, one run per concurrency level.
    pub score_add: Vec<PathResult>,
    /// End-to-end latency, one run per subscriber count.
    pub e2e: Vec<FanOut>,
}

/// Runs the cluster scenario, one fresh cluster and stack per node count.
pub async fn run(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let Some(bin) = rethinkdb_binary() else {
        let why = "no real rethinkdb (set RETHINKDB_BIN or put rethinkdb on PATH)";
        println!("cluster: skipped: {why}");
        report.section("cluster", json!({ "skipped": why }));
        return Ok(());
    };
    let mut load_table = Table::new(
        "Score-add to the origin on RethinkDB (replicas = nodes; majority write acks, hard durability)",
        &[&["nodes"], LOAD_HEADER.as_slice()].concat(),
    );
    let mut e2e_table = Table::new(
        "End-to-end on RethinkDB: score-add response → event, beside a raw publish → event",
        &fan_out_header(&["nodes"]),
    );
    let mut runs = Vec::new();
    for &nodes in &config.cluster_nodes {
        let data = TempDir::new("cluster")?;
        let cluster = RethinkCluster::start(&bin, data.path(), nodes).await?;
        let replicas = nodes.min(64);
        let env = vec![("TABLE_REPLICAS".to_owned(), replicas.to_string())];
        let options = StackOptions {
            web_env: env.clone(),
            worker_env: env,
            ..StackOptions::default()
        };
        let mut bench = Bench::start_on(config, options, Some(cluster), data).await?;
        let players_replicas = players_layout(&bench).await?;
        anyhow::ensure!(
            players_replicas.iter().all(|&n| n == replicas),
            "asked for {replicas} replicas, the players table has {players_replicas:?}"
        );

        let players = bench.board(BOARD, config.players).await?;
        let requests = score_add_requests(bench.origin_port(), BOARD, &players);
        let mut score_add = Vec::new();
        for &c in &config.concurrency {
            let clients = HttpClient::many(c, bench.origin_port(), requests.clone(), 200).await?;
            let r = load::run(clients, config.timed()).await;
            check(config, &format!("score-add on {nodes} nodes"), &r)?;
            let mut cells = vec![nodes.to_string()];
            cells.extend(load_row("origin", &r));
            load_table.row(cells);
            score_add.push(PathResult {
                path: "origin".to_owned(),
                result: r,
            });
        }
        let e2e = fan_out(&mut bench, config, E2E_BOARD, &config.cluster_subscribers).await?;
        for f in &e2e {
            let mut cells = vec![nodes.to_string()];
            cells.extend(fan_out_row(f, f.e2e.p99_us / f.raw.p99_us));
            e2e_table.row(cells);
        }
        runs.push(ClusterRun {
            nodes,
            replicas,
            players_replicas,
            score_add,
            e2e,
        });
        // The stack stops first, then the nodes.
        drop(bench);
    }
    report.table(load_table);
    report.table(e2e_table);
    if let Some(ratios) = ratios(&runs) {
        report.table(ratios);
    }
    report.section("cluster", &runs);
    Ok(())
}

/// Replicas per shard of the stack's players table.
async fn players_layout(bench: &Bench) -> anyhow::Result<Vec<usize>> {
    let Some(Server::Cluster(cluster)) = bench.server() else {
        anyhow::bail!("the stack is not on a cluster");
    };
    let rows = cluster
        .query(
            0,
            reql.db("rethinkdb").table("table_config").filter(term!({
                "db": bench.db_url.db.clone(),
                "name": store::PLAYERS,
            })),
        )
        .await?;
    let shards = rows
        .first()
        .and_then(|row| row["shards"].as_array().cloned())
        .unwrap_or_default();
    Ok(shards
        .iter()
        .map(|s| s["replicas"].as_array().map_or(0, Vec::len))
        .collect())
}

/// Each run on more nodes against the last run on the fewest nodes before
/// it (with `--cluster-nodes 1,3,1,3`, each 3-node run against the 1-node
/// run just before it), figure by figure.
fn ratios(runs: &[ClusterRun]) -> Option<Table> {
    let fewest = runs.iter().map(|r| r.nodes).min()?;
    let mut t = Table::new(
        "Against the run on the fewest nodes just before, same process",
        &["nodes", "against", "figure", "ratio"],
    );
    let mut baseline: Option<(usize, &ClusterRun)> = None;
    for (i, run) in runs.iter().enumerate() {
        if run.nodes == fewest {
            baseline = Some((i, run));
            continue;
        }
        let Some((at, base)) = baseline else {
            continue;
        };
        let mut row = |figure: String, ratio: f64| {
            t.row(vec![
                format!("{} (run {})", run.nodes, i + 1),
                format!("{} (run {})", base.nodes, at + 1),
                figure,
                format!("{ratio:.2}"),
            ]);
        };
        for (a, b) in run.score_add.iter().zip(&base.score_add) {
            let c = a.result.concurrency;
            row(
                format!("score-add throughput, c={c}"),
                a.result.throughput / b.result.throughput,
            );
            row(
                format!("score-add p99, c={c}"),
                a.result.latency.p99_us / b.result.latency.p99_us,
            );
        }
        for (a, b) in run.e2e.iter().zip(&base.e2e) {
            let subs = match a.subscribers {
                1 => "1 subscriber".to_owned(),
                n => format!("{n} subscribers"),
            };
            row(
                format!("e2e p99 from the answer, {subs}"),
                a.e2e.p99_us / b.e2e.p99_us,
            );
            row(
                format!("e2e p99 from sending, {subs}"),
                a.from_send.p99_us / b.from_send.p99_us,
            );
        }
    }
    (!t.is_empty()).then_some(t)
}
