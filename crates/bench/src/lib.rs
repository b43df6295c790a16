//! The leaderboard's benchmark: it starts the real stack on loopback
//! (Pushpin, the database, the origin and the worker, through `testkit`),
//! measures one scenario or all of them, prints tables and writes every
//! figure, the machine, the versions and the targets to a JSON file.
//!
//! `cargo run --release -p bench -- <scenario>`; `--help` lists the
//! scenarios and options ([`cli::Cli`]). `all` runs the single-stack
//! scenarios, `scale` the scale-out ones (several workers, two Pushpins, a
//! RethinkDB cluster), `smoke` both at tiny sizes.
//! Targets are reported, never enforced: the exit status says only whether
//! every scenario ran and produced numbers.

#![warn(missing_docs)]

pub mod cli;
pub mod db;
pub mod harness;
pub mod http;
pub mod load;
pub mod machine;
pub mod report;
pub mod scenarios;
pub mod stats;

use std::time::Instant;

use serde_json::json;
use testkit::{PushpinOptions, StackOptions, TempDir};

use crate::cli::{Config, Scenario};
use crate::harness::Bench;
use crate::report::Report;

/// Runs `config`; `args` (the command line without the program name) go
/// into the JSON document to say how the figures were made.
pub async fn run(config: &Config, args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    // Other work on the machine skews every figure; say how busy it was.
    let load_before = machine::load_average();
    let cpu_before = machine::cpu_times();
    let mut report = Report::default();
    let outcome = run_scenarios(config, &mut report).await;

    if !report.targets.is_empty() {
        let targets = report.targets_table();
        report.table(targets);
    }
    let database = if testkit::Database::external_url().is_some() {
        "RethinkDB (RETHINKDB_URL)"
    } else {
        "reql-dev-server"
    };
    let steal = machine::steal_percent(cpu_before, machine::cpu_times());
    let head = json!({
        "scenario": config.scenario.name(),
        "args": args,
        "completed": outcome.is_ok(),
        "error": outcome.as_ref().err().map(|e| format!("{e:#}")),
        "seconds": started.elapsed().as_secs_f64(),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "machine": machine::describe(database),
        "load_average": {"before": load_before, "after": machine::load_average()},
        "cpu_steal_percent": steal,
    });
    report.write_json(&config.json, head)?;
    let steal = steal.map_or_else(String::new, |p| {
        format!("; {p:.1}% of the CPU time taken by the host (steal)")
    });
    println!(
        "\n{} in {:.1} s (load average {load_before} before, {} after{steal}); results in {}",
        config.scenario.name(),
        started.elapsed().as_secs_f64(),
        machine::load_average(),
        config.json.display()
    );
    outcome
}

async fn run_scenarios(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let scenarios: Vec<Scenario> = match config.scenario {
        Scenario::All => Scenario::SINGLE.to_vec(),
        Scenario::Scale => Scenario::SCALE.to_vec(),
        Scenario::Smoke => Scenario::SINGLE
            .into_iter()
            .chain(Scenario::SCALE)
            .collect(),
        one => vec![one],
    };
    // The smoke run shares one stack to stay within seconds (and one more
    // for the scale-out scenarios); the others get a fresh stack each, so
    // that no scenario's figures depend on what ran before it (the top-5
    // scenario leaves a million players behind).
    let mut shared: Option<Bench> = None;
    let mut shared_scale: Option<Bench> = None;
    let mut seconds = serde_json::Map::new();
    for scenario in scenarios {
        println!("\n== {}", scenario.name());
        let started = Instant::now();
        run_one(config, report, scenario, &mut shared, &mut shared_scale).await?;
        let took = started.elapsed().as_secs_f64();
        println!("({} took {took:.1} s)", scenario.name());
        seconds.insert(scenario.name().to_owned(), json!(took));
        report.section("scenario_seconds", &seconds);
    }
    Ok(())
}

/// Runs one scenario, on the shared stacks in the smoke run.
async fn run_one(
    config: &Config,
    report: &mut Report,
    scenario: Scenario,
    shared: &mut Option<Bench>,
    shared_scale: &mut Option<Bench>,
) -> anyhow::Result<()> {
    let smoke = config.scenario == Scenario::Smoke;
    match scenario {
        Scenario::DevServer => scenarios::devserver::run(config, report).await,
        Scenario::Cluster => scenarios::cluster::run(config, report).await,
        Scenario::Chaos => {
            let chaos = config.chaos.unwrap_or(cli::Chaos {
                seconds: 600,
                seed: 0,
                clients: 32,
            });
            scenarios::chaos::run(chaos, report).await
        }
        Scenario::WorkerCeiling | Scenario::Workers | Scenario::TwoPushpins => {
            // Done with the single-Pushpin stack: free what it holds.
            *shared = None;
            let two = smoke || scenario == Scenario::TwoPushpins;
            let mut fresh = None;
            let bench = match (smoke, shared_scale) {
                (true, Some(bench)) => bench,
                (true, slot) => slot.insert(scale_bench(config, two).await?),
                (false, _) => fresh.insert(scale_bench(config, two).await?),
            };
            match scenario {
                Scenario::WorkerCeiling => scenarios::workers::ceiling(bench, config, report).await,
                Scenario::Workers => scenarios::workers::run(bench, config, report).await,
                _ => scenarios::two_pushpins::run(bench, config, report).await,
            }
        }
        _ => {
            let mut fresh = None;
            let bench = match (smoke, shared) {
                (true, Some(bench)) => bench,
                (true, slot) => slot.insert(Bench::start(config, PushpinOptions::default()).await?),
                (false, _) => fresh.insert(Bench::start(config, PushpinOptions::default()).await?),
            };
            match scenario {
                Scenario::ScoreAdd => scenarios::score_add::run(bench, config, report).await,
                Scenario::Read => scenarios::read::run(bench, config, report).await,
                Scenario::E2e => scenarios::e2e::run(bench, config, report).await,
                Scenario::Top5 => scenarios::top5::run(bench, config, report).await,
                Scenario::Burst => scenarios::burst::run(bench, config, report).await,
                Scenario::Memory => scenarios::memory::run(bench, config, report).await,
                _ => Ok(()),
            }
        }
    }
}

/// A stack for the scale-out scenarios, on a dev server of its own (or the
/// server at `RETHINKDB_URL`) that every process reaches directly, with no
/// worker yet (they add named ones, whose counters they read). With `two`,
/// two Pushpins in front of two origins, and room for the streams of
/// `--wide-subscribers`.
async fn scale_bench(config: &Config, two: bool) -> anyhow::Result<Bench> {
    if two {
        // One socket per stream here, half as many in each Pushpin's
        // condure (which inherits the limit), plus the rest of the stack.
        let streams = config.wide_subscribers.iter().copied().max().unwrap_or(0);
        machine::ensure_open_files(streams as u64 + 1024)?;
    }
    let mut options = StackOptions {
        worker: false,
        pushpins: if two { 2 } else { 1 },
        extra_webs: usize::from(two),
        ..StackOptions::default()
    };
    let shards = config.worker_shards.to_string();
    options.worker_env = vec![("WORKER_SHARDS".to_owned(), shards)];
    if config.strict() {
        // The shortest lease allowed: the smoke run's added worker takes
        // its shards within a quarter of a second instead of a second or two.
        options
            .worker_env
            .push(("LEASE_TTL_MS".to_owned(), "1000".to_owned()));
    }
    Bench::start_on(config, options, None, TempDir::new("bench")?).await
}
