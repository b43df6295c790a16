//! The leaderboard's benchmark: it starts the real stack on loopback
//! (Pushpin, the database, the origin and the worker, through `testkit`),
//! measures one scenario or all of them, prints tables and writes every
//! figure, the machine, the versions and the targets to a JSON file.
//!
//! `cargo run --release -p bench -- <scenario>`; `--help` lists the
//! scenarios and options ([`cli::Cli`]).
//! Targets are reported, never enforced: the exit status says only whether
//! every scenario ran and produced numbers.

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
use testkit::PushpinOptions;

use crate::cli::{Config, Scenario};
use crate::harness::Bench;
use crate::report::Report;

/// Runs `config`; `args` (the command line without the program name) go
/// into the JSON document to say how the figures were made.
pub async fn run(config: &Config, args: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    // Other work on the machine skews every figure; say how busy it was.
    let load_before = machine::load_average();
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
    });
    report.write_json(&config.json, head)?;
    println!(
        "\n{} in {:.1} s (load average {load_before} before, {} after); results in {}",
        config.scenario.name(),
        started.elapsed().as_secs_f64(),
        machine::load_average(),
        config.json.display()
    );
    outcome
}

async fn run_scenarios(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let scenarios: Vec<Scenario> = match config.scenario {
        Scenario::All | Scenario::Smoke => Scenario::SINGLE.to_vec(),
        one => vec![one],
    };
    // The smoke run shares one stack to stay within seconds; the others get
    // a fresh stack each, so that no scenario's figures depend on what ran
    // before it (the top-5 scenario leaves a million players behind).
    let mut shared: Option<Bench> = None;
    for scenario in scenarios {
        println!("\n== {}", scenario.name());
        if scenario == Scenario::DevServer {
            scenarios::devserver::run(config, report).await?;
            continue;
        }
        let mut fresh = None;
        let bench = if config.scenario == Scenario::Smoke {
            if shared.is_none() {
                shared = Some(Bench::start(config, PushpinOptions::default()).await?);
            }
            shared.as_mut().expect("just started")
        } else {
            fresh.insert(Bench::start(config, PushpinOptions::default()).await?)
        };
        match scenario {
            Scenario::ScoreAdd => scenarios::score_add::run(bench, config, report).await?,
            Scenario::Read => scenarios::read::run(bench, config, report).await?,
            Scenario::E2e => scenarios::e2e::run(bench, config, report).await?,
            Scenario::Top5 => scenarios::top5::run(bench, config, report).await?,
            Scenario::Burst => scenarios::burst::run(bench, config, report).await?,
            Scenario::Memory => scenarios::memory::run(bench, config, report).await?,
            Scenario::DevServer | Scenario::All | Scenario::Smoke => {}
        }
    }
    Ok(())
}
