//! The origin's throughput with a small `DB_POOL_SIZE` against a large
//! one: the origin is restarted with each size in turn (small, large,
//! small, large, so that drift on the machine falls on both), and 32
//! closed-loop clients send score-adds straight to it. The target:
//! 2 shared connections give at least 0.85× the throughput of 16.

use std::sync::Arc;

use serde::Serialize;

use super::super::{check, labelled_row, rounds_header};
use super::summed_throughput;
use crate::cli::Config;
use crate::harness::{score_add_requests, Bench, HttpClient};
use crate::load::{self, LoadResult};
use crate::report::{Report, Table, Target};

/// `DB_POOL_SIZE` of the small pool and of the large one, as the target
/// names them.
const SMALL: usize = 2;
const LARGE: usize = 16;
/// Clients sending score-adds, as the target names them.
const CLIENTS: usize = 32;
/// The target: small-pool throughput ≥ this × large-pool throughput.
const AT_LEAST: f64 = 0.85;

/// One run of the origin with one pool size.
#[derive(Debug, Clone, Serialize)]
struct PoolRun {
    db_pool_size: usize,
    round: usize,
    #[serde(flatten)]
    result: LoadResult,
}

/// Throughput summed over runs: operations over measured seconds.
fn throughput(runs: &[PoolRun], size: usize) -> f64 {
    summed_throughput(
        runs.iter()
            .filter(|r| r.db_pool_size == size)
            .map(|r| &r.result),
    )
}

/// Restarts the origin with `DB_POOL_SIZE` set to `size`, or unset when
/// `None`.
async fn restart_origin(bench: &mut Bench, size: Option<&str>) -> anyhow::Result<()> {
    let stack = &mut bench.stack;
    // The stop waits for the process to exit: a blocking wait, kept off
    // the runtime's other tasks.
    tokio::task::block_in_place(|| stack.stop_web());
    match size {
        Some(size) => stack.set_web_env("DB_POOL_SIZE", size),
        None => stack.unset_web_env("DB_POOL_SIZE"),
    }
    stack.start_web().await
}

pub async fn run(
    bench: &mut Bench,
    config: &Config,
    report: &mut Report,
    board: &str,
    players: &[String],
) -> anyhow::Result<()> {
    let original = bench.stack.web_env("DB_POOL_SIZE").map(str::to_owned);
    let outcome = measure(bench, config, report, board, players).await;
    // The scenarios after this one (in the smoke run, on the same stack)
    // measure the origin as it was configured.
    restart_origin(bench, original.as_deref()).await?;
    outcome
}

async fn measure(
    bench: &mut Bench,
    config: &Config,
    report: &mut Report,
    board: &str,
    players: &[String],
) -> anyhow::Result<()> {
    let requests = score_add_requests(bench.origin_port(), board, players);
    // Two rounds of each size; one in the smoke run, which only shows that
    // the path works.
    let rounds = if config.strict() { 1 } else { 2 };
    let mut table = Table::new(
        &format!("Origin score-add by DB_POOL_SIZE ({CLIENTS} clients, runs alternating)"),
        &rounds_header("DB_POOL_SIZE"),
    );
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for size in [SMALL, LARGE] {
            restart_origin(bench, Some(&size.to_string())).await?;
            let clients =
                HttpClient::many(CLIENTS, bench.origin_port(), Arc::clone(&requests), 200).await?;
            let r = load::run(clients, config.timed()).await;
            check(config, &format!("score-add, DB_POOL_SIZE={size}"), &r)?;
            table.row(labelled_row(&[&size.to_string(), &round.to_string()], &r));
            runs.push(PoolRun {
                db_pool_size: size,
                round,
                result: r,
            });
        }
    }
    let small = throughput(&runs, SMALL);
    let large = throughput(&runs, LARGE);
    report.table(table);
    report.section(
        "score_add_origin_pool",
        serde_json::json!({
            "clients": CLIENTS,
            "runs": runs,
            "throughput": { SMALL.to_string(): small, LARGE.to_string(): large },
        }),
    );
    // Stated as large / small ≤ 1/0.85, as every target is a ratio that
    // must not exceed its limit.
    report.target(Target::ratio(
        &format!(
            "origin with DB_POOL_SIZE={SMALL} ≥ {AT_LEAST}× DB_POOL_SIZE={LARGE} ({CLIENTS} clients)"
        ),
        format!("pool of {LARGE} {large:.0}/s / pool of {SMALL} {small:.0}/s"),
        large / small,
        1.0 / AT_LEAST,
    ));
    Ok(())
}
