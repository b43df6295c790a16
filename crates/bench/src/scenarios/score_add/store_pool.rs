//! The store's pool against the database's own throughput: the store's
//! `add_score` through a pool of 2 and of 4 shared connections, in this
//! process, against the same term sent by as many driver connections as
//! there are clients, and by 4 driver connections shared by the clients
//! (what the number of connections costs without the store's own work). At each concurrency the three run in turn, then in
//! the reverse order (database, shared, 2, 4, then back), twelve times: RethinkDB's
//! CPU per update drifts by a fifth from one 3 s run to the next (its
//! background writes), and the alternation puts that drift on all three
//! alike. The target: at 16 and 64 clients, a pool of 4 or less
//! (`DB_POOL_SIZE`) keeps at least 0.95× the database's own throughput;
//! it is checked on the pool of 4, and the pool of 2 is reported beside it.

use std::sync::Arc;

use domain::{BoardId, PlayerId};
use serde::Serialize;
use store::{PoolOptions, Store};

use super::super::{check, labelled_row, rounds_header};
use super::{store_term, summed_throughput, StoreClient};
use crate::cli::Config;
use crate::db::{self, UpdateClient};
use crate::harness::Bench;
use crate::load::{self, LoadResult};
use crate::report::{Report, Table, Target};

/// Connections of the in-process store pools measured.
const POOL_SIZES: [usize; 2] = [2, 4];
/// The target: a store pool of this many connections keeps at least this
/// × the database's own throughput, from this concurrency up.
const TARGET_POOL: usize = 4;
const AT_LEAST: f64 = 0.95;
const TARGET_FROM: usize = 16;
/// Rounds at each concurrency, forwards and backwards in turn: a 3 s run's
/// throughput moves by up to a tenth from one run to the next here, and a
/// 5% difference needs this many runs of each kind to show.
const ROUNDS: usize = 12;

/// What a run sent its queries through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Through {
    /// One driver connection per client.
    Database,
    /// This many driver connections, shared by the clients: what the number
    /// of connections alone costs, without the store's own work.
    Shared(usize),
    /// The store, with this many connections.
    Pool(usize),
}

impl Through {
    fn label(self) -> String {
        match self {
            Through::Database => "database".to_owned(),
            Through::Shared(n) => format!("{n} shared driver connections"),
            Through::Pool(n) => format!("store pool of {n}"),
        }
    }
}

/// One run.
#[derive(Debug, Clone, Serialize)]
struct PoolRun {
    through: Through,
    concurrency: usize,
    round: usize,
    #[serde(flatten)]
    result: LoadResult,
}

/// Throughput summed over runs: operations over measured seconds.
fn throughput(runs: &[PoolRun], c: usize, through: Through) -> f64 {
    summed_throughput(
        runs.iter()
            .filter(|r| r.concurrency == c && r.through == through)
            .map(|r| &r.result),
    )
}

/// The order of the runs in `round`: forwards, then backwards.
fn order(round: usize) -> Vec<Through> {
    let mut order: Vec<Through> = [Through::Database, Through::Shared(TARGET_POOL)]
        .into_iter()
        .chain(POOL_SIZES.iter().map(|&n| Through::Pool(n)))
        .collect();
    if round % 2 == 0 {
        order.reverse();
    }
    order
}

pub async fn run(
    bench: &Bench,
    config: &Config,
    report: &mut Report,
    board: &BoardId,
    players: &Arc<Vec<PlayerId>>,
) -> anyhow::Result<()> {
    // One round in the smoke run, which only shows that the path works.
    let rounds = if config.strict() { 1 } else { ROUNDS };
    let mut table = Table::new(
        "Store pool against the database's own (the store's term; the database with one connection per client; runs alternating)",
        &rounds_header("concurrency, through"),
    );
    // The concurrencies the target names (the smoke run's largest when it
    // has none): the main table has every level once.
    let mut levels: Vec<usize> = config
        .concurrency
        .iter()
        .copied()
        .filter(|&c| c >= TARGET_FROM)
        .collect();
    if levels.is_empty() {
        levels.extend(config.concurrency.iter().max());
    }
    let mut runs = Vec::new();
    for &c in &levels {
        for round in 1..=rounds {
            for through in order(round) {
                let r = match through {
                    Through::Database => {
                        store_term(bench, config, board, players, c, &[], false)
                            .await?
                            .0
                    }
                    Through::Shared(n) => {
                        let mut sessions = Vec::with_capacity(n);
                        for _ in 0..n {
                            sessions.push(Arc::new(db::connect(&bench.db_url).await?));
                        }
                        let clients = (0..c)
                            .map(|i| UpdateClient {
                                session: Arc::clone(&sessions[i % n]),
                                board: board.clone(),
                                players: Arc::clone(players),
                                read_board: false,
                            })
                            .collect();
                        load::run(clients, config.timed()).await
                    }
                    Through::Pool(size) => {
                        // A pool of its own for each run, as the shared
                        // driver connections and the database's are opened
                        // for each: RethinkDB gives each connection to one
                        // of its threads in turn, so connections opened
                        // together are spread over its threads, and a pool
                        // kept from run to run would carry one placement's
                        // luck into every figure. Its handshakes fall in
                        // the warm-up.
                        let store = Store::new(
                            bench.db_url.clone(),
                            PoolOptions {
                                max_connections: size,
                                ..PoolOptions::default()
                            },
                        );
                        let clients = (0..c)
                            .map(|_| StoreClient {
                                store: store.clone(),
                                board: board.clone(),
                                players: Arc::clone(players),
                            })
                            .collect();
                        load::run(clients, config.timed()).await
                    }
                };
                check(config, &format!("{} (c={c})", through.label()), &r)?;
                table.row(labelled_row(
                    &[&format!("{c}, {}", through.label()), &round.to_string()],
                    &r,
                ));
                runs.push(PoolRun {
                    through,
                    concurrency: c,
                    round,
                    result: r,
                });
            }
        }
    }
    report.table(table);
    let mut ratios = Table::new(
        "Store pool / the database's own throughput (sums over the alternating runs)",
        &[
            "concurrency",
            "pool connections",
            "store ops/s",
            "database ops/s",
            "store / database",
        ],
    );
    for &c in &levels {
        let database = throughput(&runs, c, Through::Database);
        let shared = throughput(&runs, c, Through::Shared(TARGET_POOL));
        ratios.row(vec![
            c.to_string(),
            format!("{TARGET_POOL}, driver only"),
            format!("{shared:.0}"),
            format!("{database:.0}"),
            format!("{:.2}", shared / database),
        ]);
        for size in POOL_SIZES {
            let store = throughput(&runs, c, Through::Pool(size));
            ratios.row(vec![
                c.to_string(),
                size.to_string(),
                format!("{store:.0}"),
                format!("{database:.0}"),
                format!("{:.2}", store / database),
            ]);
            if c >= TARGET_FROM && size == TARGET_POOL {
                // Stated as database / store ≤ 1/0.95, as every target is a
                // ratio that must not exceed its limit.
                report.target(Target::ratio(
                    &format!(
                        "store pool of {size} ≥ {AT_LEAST}× the database's own throughput (c={c})"
                    ),
                    format!("database {database:.0}/s / store {store:.0}/s"),
                    database / store,
                    1.0 / AT_LEAST,
                ));
            }
        }
    }
    report.table(ratios);
    report.section("score_add_store_pool", &runs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rounds_run_forwards_then_backwards() {
        assert_eq!(
            order(1),
            [
                Through::Database,
                Through::Shared(4),
                Through::Pool(2),
                Through::Pool(4)
            ]
        );
        assert_eq!(
            order(2),
            [
                Through::Pool(4),
                Through::Pool(2),
                Through::Shared(4),
                Through::Database
            ]
        );
    }
}
