//! `differential`: sends one seeded random ReQL workload to the dev server
//! and to a real RethinkDB 2.4.4, and prints every answer on which they
//! differ. The last line is `N ops, M divergences (seed S)`; the exit
//! status is 1 when any seed diverged.
//!
//! ```text
//! differential --seeds 1-20 --ops 2000                  # starts both servers
//! differential --seeds 3 --real-port 28015 --dev-port 28016
//! ```

mod compare;
mod run;
mod servers;
mod terms;
mod wire;
mod workload;

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

use compare::{canonical_feed, canonical_order, differences, fold_top_n, normalize};
use run::Side;
use workload::{Op, Query, Workload};

#[derive(Debug, Parser)]
#[command(
    name = "differential",
    version,
    about = "Compares the dev server with a real RethinkDB 2.4.4 on a seeded random workload"
)]
struct Args {
    /// Seeds to run, one after the other: `3` or `1-20`
    #[arg(long, default_value = "1", value_parser = parse_seeds)]
    seeds: RangeInclusive<u64>,
    /// Operations per seed (a query sent, a feed opened)
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// A real RethinkDB already listening on this driver port; without it one
    /// is started from --rethinkdb
    #[arg(long)]
    real_port: Option<u16>,
    /// The RethinkDB binary to start [default: $RETHINKDB_BIN, else
    /// `rethinkdb` on PATH]
    #[arg(long)]
    rethinkdb: Option<PathBuf>,
    /// A dev server already listening on this driver port; without it one is
    /// started in this process
    #[arg(long)]
    dev_port: Option<u16>,
    /// Print every query as it is sent
    #[arg(long)]
    verbose: bool,
    /// Leave each seed's database on both servers, to look into a divergence
    #[arg(long)]
    keep: bool,
}

fn parse_seeds(s: &str) -> Result<RangeInclusive<u64>, String> {
    let parse = |x: &str| x.trim().parse::<u64>().map_err(|e| format!("{x}: {e}"));
    match s.split_once('-') {
        Some((a, b)) => Ok(parse(a)?..=parse(b)?),
        None => {
            let n = parse(s)?;
            Ok(n..=n)
        }
    }
}

/// One query's answers from both servers, compared; prints the divergence.
fn report(index: usize, query: &Query, mut dev: Value, mut real: Value) -> bool {
    dev = normalize(dev);
    real = normalize(real);
    canonical_order(&mut dev, query.order);
    canonical_order(&mut real, query.order);
    finish_report(index, &query.term.js, &dev, &real)
}

fn finish_report(index: usize, js: &str, dev: &Value, real: &Value) -> bool {
    let diffs = differences(dev, real);
    if diffs.is_empty() {
        return false;
    }
    println!("#{index} {js}");
    for d in diffs.iter().take(4) {
        println!("  at {}: dev {}, real {}", d.path, d.dev, d.real);
    }
    if diffs.len() > 4 {
        println!("  ... and {} more places", diffs.len() - 4);
    }
    true
}

struct Tally {
    ops: usize,
    divergences: usize,
}

async fn one(dev: &Side, real: &Side, query: &Query, tally: &mut Tally, verbose: bool) {
    if verbose {
        println!("> #{} {}", tally.ops, query.term.js);
    }
    let (d, r) = tokio::join!(dev.run(&query.term.json), real.run(&query.term.json));
    if report(tally.ops, query, d, r) {
        tally.divergences += 1;
    }
    tally.ops += 1;
}

async fn apply(
    dev: &Side,
    real: &Side,
    op: &Op,
    tally: &mut Tally,
    verbose: bool,
) -> anyhow::Result<()> {
    match op {
        Op::One(query) => one(dev, real, query, tally, verbose).await,
        Op::Parallel(queries) => {
            // Every query goes out before any answer is read.
            let mut pending = Vec::new();
            for query in queries {
                if verbose {
                    println!(
                        "> #{} (in flight) {}",
                        tally.ops + pending.len(),
                        query.term.js
                    );
                }
                let d = dev.start(&query.term.json).await?;
                let r = real.start(&query.term.json).await?;
                pending.push((d, r));
            }
            let answers = futures::future::join_all(
                pending
                    .into_iter()
                    .map(|(d, r)| async { tokio::join!(dev.finish(d), real.finish(r)) }),
            )
            .await;
            for (query, (d, r)) in queries.iter().zip(answers) {
                if report(tally.ops, query, d, r) {
                    tally.divergences += 1;
                }
                tally.ops += 1;
            }
        }
        Op::Feed { feed, writes, pk } => {
            if verbose {
                println!("> #{} (feed) {}", tally.ops, feed.term.js);
            }
            let index = tally.ops;
            tally.ops += 1;
            let ((dev_feed, mut d), (real_feed, mut r)) = tokio::join!(
                dev.open_feed(&feed.term.json),
                real.open_feed(&feed.term.json)
            );
            for w in writes {
                one(dev, real, w, tally, verbose).await;
            }
            tokio::join!(drain(dev, dev_feed, &mut d), drain(real, real_feed, &mut r));
            let (mut d, mut r) = (normalize(d), normalize(r));
            for answer in [&mut d, &mut r] {
                fold_top_n(answer, pk);
                if let Some(Value::Array(items)) = answer.get_mut("items") {
                    canonical_feed(items, pk);
                }
            }
            if finish_report(index, &feed.term.js, &d, &r) {
                tally.divergences += 1;
            }
        }
    }
    Ok(())
}

async fn drain(side: &Side, answers: Option<wire::Answers>, first: &mut Value) {
    if let Some(answers) = answers {
        side.drain_feed(answers, first).await;
    }
}

async fn run_seed(
    dev_port: u16,
    real_port: u16,
    seed: u64,
    ops: usize,
    (verbose, keep): (bool, bool),
) -> anyhow::Result<Tally> {
    let dev = Side::connect(dev_port).await.context("dev server")?;
    let real = Side::connect(real_port).await.context("real server")?;
    let mut workload = Workload::new(seed);
    let mut tally = Tally {
        ops: 0,
        divergences: 0,
    };
    // A database left by an earlier run of this seed.
    let drop_db = terms::top(
        terms::id::DB_DROP,
        "dbDrop",
        vec![terms::datum(workload.db_name().into())],
    );
    let _ = tokio::join!(dev.run(&drop_db.json), real.run(&drop_db.json));
    for op in workload.setup() {
        apply(&dev, &real, &op, &mut tally, verbose).await?;
    }
    while tally.ops < ops {
        let op = workload.next();
        apply(&dev, &real, &op, &mut tally, verbose).await?;
    }
    if !keep {
        apply(&dev, &real, &workload.teardown(), &mut tally, verbose).await?;
    }
    Ok(tally)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let _dev_server;
    let dev_port = match args.dev_port {
        Some(p) => p,
        None => {
            let (server, port) = servers::start_dev().await?;
            _dev_server = server;
            port
        }
    };
    let _real_server;
    let real_port = match args.real_port {
        Some(p) => p,
        None => {
            let server = servers::RealServer::start(args.rethinkdb.clone()).await?;
            let port = server.port;
            _real_server = server;
            port
        }
    };
    let mut failed = false;
    for seed in args.seeds.clone() {
        let tally = run_seed(
            dev_port,
            real_port,
            seed,
            args.ops,
            (args.verbose, args.keep),
        )
        .await?;
        println!(
            "{} ops, {} divergences (seed {seed})",
            tally.ops, tally.divergences
        );
        failed |= tally.divergences > 0;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
