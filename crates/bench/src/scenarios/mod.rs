//! One module per scenario. Each measures on a [`Bench`](crate::harness::Bench) it is given, adds
//! its tables, figures and targets to the [`Report`], and fails only when it
//! could not measure (in a strict run, also when any request failed).

pub mod burst;
pub mod chaos;
pub mod cluster;
pub mod devserver;
pub mod e2e;
pub mod memory;
pub mod read;
pub mod score_add;
pub mod top5;
pub mod two_pushpins;
pub mod workers;

use serde::Serialize;

use crate::cli::Config;
use crate::load::{Limit, LoadResult};
use crate::report::Report;
use crate::stats::{fmt_rate, fmt_us};

/// The header of a throughput table.
pub const LOAD_HEADER: [&str; 8] = [
    "path",
    "concurrency",
    "throughput",
    "mean",
    "p50",
    "p99",
    "ops",
    "errors",
];

/// One row of a throughput table.
pub fn load_row(path: &str, r: &LoadResult) -> Vec<String> {
    labelled_row(&[path, &r.concurrency.to_string()], r)
}

/// The header of a table of runs that alternate (what varies, the round,
/// then the figures of [`LOAD_HEADER`]).
pub fn rounds_header(varies: &'static str) -> [&'static str; 8] {
    let mut header = LOAD_HEADER;
    header[0] = varies;
    header[1] = "round";
    header
}

/// A row of `labels` followed by a run's throughput, latencies, operations
/// and errors.
pub fn labelled_row(labels: &[&str], r: &LoadResult) -> Vec<String> {
    let mut row: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    row.extend([
        fmt_rate(r.throughput),
        fmt_us(r.latency.mean_us),
        fmt_us(r.latency.p50_us),
        fmt_us(r.latency.p99_us),
        r.ops.to_string(),
        r.errors.to_string(),
    ]);
    row
}

/// A load result with the path it measured, for the JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    /// The path measured, as its table row says (`origin`, `pushpin → origin`, ...).
    pub path: String,
    /// What the run measured.
    #[serde(flatten)]
    pub result: LoadResult,
}

impl Config {
    /// The time limit of one throughput point.
    pub fn timed(&self) -> Limit {
        Limit::Time {
            warmup: self.warmup,
            measure: self.duration,
        }
    }

    /// Whether a failed request fails the run: in the smoke run, whose job is
    /// to say that everything works.
    pub fn strict(&self) -> bool {
        self.scenario == crate::cli::Scenario::Smoke
    }
}

/// Checks a load result: it must have measured something, and in a strict
/// run nothing may have failed.
pub fn check(config: &Config, what: &str, r: &LoadResult) -> anyhow::Result<()> {
    anyhow::ensure!(
        r.ops > 0,
        "{what}: nothing succeeded ({} errors; first: {})",
        r.errors,
        r.first_error.as_deref().unwrap_or("none")
    );
    if r.errors > 0 {
        let first = r.first_error.as_deref().unwrap_or("");
        anyhow::ensure!(
            !config.strict(),
            "{what}: {} requests failed; first: {first}",
            r.errors
        );
        eprintln!(
            "warning: {what}: {} requests failed; first: {first}",
            r.errors
        );
    }
    Ok(())
}

/// Adds a section to the report.
pub fn record(report: &mut Report, name: &str, value: impl Serialize) {
    report.section(name, value);
}
