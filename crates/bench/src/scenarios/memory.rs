//! Resident memory of the origin and the worker: idle after start-up, and
//! the highest value sampled while score-adds (which the worker turns into
//! publishes to subscribers) and board reads run together.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::check;
use crate::cli::Config;
use crate::harness::{score_add_requests, Bench, HttpClient};
use crate::http::Request;
use crate::load;
use crate::machine::{rss, Rss, RssSampler};
use crate::report::{Report, Table, Target};

const BOARD: &str = "mem";

/// One process's memory over the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    /// After start-up, before any load.
    pub idle: Rss,
    /// Highest VmRSS sampled under load, MB.
    pub load_peak_mb: f64,
    /// Once the load has stopped and the subscribers left.
    pub after: Rss,
}

/// Runs the memory scenario for the origin and the worker.
pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let (web_pid, worker_pid) = bench.pids()?;
    let players = bench.board(BOARD, config.players).await?;
    let subscribers = config
        .subscribers
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .min(100);
    let mut subs = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        subs.push(bench.subscribe(BOARD).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = (rss(web_pid)?, rss(worker_pid)?);

    let concurrency = config.concurrency.iter().copied().max().unwrap_or(1);
    let web_sampler = RssSampler::start(web_pid);
    let worker_sampler = RssSampler::start(worker_pid);
    let writers = HttpClient::many(
        concurrency,
        bench.origin_port(),
        score_add_requests(bench.origin_port(), BOARD, &players),
        200,
    )
    .await?;
    let readers = HttpClient::many(
        concurrency.div_ceil(4),
        bench.pushpin_port(),
        Arc::new(vec![Request::get_json(
            bench.pushpin_port(),
            &format!("/boards/{BOARD}/"),
        )]),
        200,
    )
    .await?;
    let (writes, reads) = tokio::join!(
        load::run(writers, config.timed()),
        load::run(readers, config.timed())
    );
    let web_peak = web_sampler.finish().await;
    let worker_peak = worker_sampler.finish().await;
    check(config, "score-adds under the memory sampler", &writes)?;
    check(config, "reads under the memory sampler", &reads)?;
    drop(subs);
    let after = (rss(web_pid)?, rss(worker_pid)?);

    let web = ProcessMemory {
        idle: idle.0,
        load_peak_mb: web_peak,
        after: after.0,
    };
    let worker = ProcessMemory {
        idle: idle.1,
        load_peak_mb: worker_peak,
        after: after.1,
    };
    let mut table = Table::new(
        &format!(
            "Memory (VmRSS, MB): idle, and under {concurrency} score-add and {} read clients with {subscribers} subscribers",
            concurrency.div_ceil(4)
        ),
        &["process", "idle", "under load (peak)", "VmHWM", "after"],
    );
    for (name, m) in [("origin", &web), ("worker", &worker)] {
        table.row(vec![
            name.to_owned(),
            format!("{:.1}", m.idle.rss_mb),
            format!("{:.1}", m.load_peak_mb),
            format!("{:.1}", m.after.peak_mb),
            format!("{:.1}", m.after.rss_mb),
        ]);
    }
    report.table(table);
    report.target(Target::ratio(
        "origin RSS under load < 50 MB",
        format!(
            "peak {:.1} MB (VmHWM {:.1} MB) / 50 MB; {:.0} score-adds/s and {:.0} reads/s",
            web.load_peak_mb, web.after.peak_mb, writes.throughput, reads.throughput
        ),
        web.load_peak_mb.max(web.after.peak_mb) / 50.0,
        1.0,
    ));
    report.section(
        "memory",
        serde_json::json!({
            "origin": web,
            "worker": worker,
            "score_adds": writes,
            "reads": reads,
            "subscribers": subscribers,
        }),
    );
    Ok(())
}
