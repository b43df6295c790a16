//! The database alone, through the driver: bulk and single inserts, the
//! store's point update, the top-5 index read, and changefeed delivery.
//!
//! It runs on a database server of its own: the dev server, or the real
//! RethinkDB at `RETHINKDB_URL` (in a database of its own, dropped after).

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::BoardId;
use reql_terms::r as reql;
use serde_json::json;
use store::{DatabaseUrl, PoolOptions, Store};
use testkit::{Database, TempDir};

use super::{check, load_row, PathResult, LOAD_HEADER};
use crate::cli::Config;
use crate::db::{self, InsertClient, TopClient, UpdateClient};
use crate::load::{self, LoadResult};
use crate::report::{Report, Table};
use crate::stats::{fmt_rate, fmt_us, Samples};

const BOARD: &str = "dev";

/// Documents the bulk insert loads (and the top-5 reads read among).
fn bulk_docs(config: &Config) -> usize {
    if config.strict() {
        1000
    } else {
        100_000
    }
}

/// Runs the database-alone scenario on a server of its own.
pub async fn run(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let dir = TempDir::new("bench")?;
    let path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || Database::start(&path)).await??;
    let db_name = format!("bench_{:08x}", rand::random::<u32>());
    let result = measure(&server, &db_name, config, report).await;
    // Only an external server keeps the database; drop it there.
    tokio::task::spawn_blocking(move || server.drop_database(&db_name)).await?;
    drop(dir);
    result
}

async fn measure(
    server: &Database,
    db_name: &str,
    config: &Config,
    report: &mut Report,
) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(&server.url(db_name))?;
    Store::new(url.clone(), PoolOptions::default())
        .ensure_schema()
        .await?;
    let mut table = Table::new(
        "The database alone, through the driver (reql-client)",
        &LOAD_HEADER,
    );
    let mut results: Vec<PathResult> = Vec::new();
    let mut push = |table: &mut Table, path: &str, r: LoadResult| {
        table.row(load_row(path, &r));
        results.push(PathResult {
            path: path.to_owned(),
            result: r,
        });
    };

    // Bulk: documents per second, one batch per operation.
    let n = bulk_docs(config);
    let board = BoardId::parse(BOARD)?;
    let session = db::connect(&url).await?;
    db::insert(&session, store::BOARDS, vec![db::board_doc(&board)]).await?;
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + config.batch).min(n);
        let docs = (i..end)
            .map(|k| db::player_doc(&board, &format!("b{k}"), (k as i64 * 7919) % 1_000_003))
            .collect::<anyhow::Result<_>>()?;
        db::insert(&session, store::PLAYERS, docs).await?;
        i = end;
    }
    let bulk_seconds = started.elapsed().as_secs_f64();
    let bulk_rate = n as f64 / bulk_seconds;

    // One client, and as many as the store's pool has connections.
    let most = config
        .concurrency
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .min(16);
    let levels: Vec<usize> = if most > 1 { vec![1, most] } else { vec![1] };
    for &c in &levels {
        let mut clients = Vec::new();
        for k in 0..c {
            clients.push(InsertClient {
                session: db::connect(&url).await?,
                board: board.clone(),
                prefix: format!("i{c}-{k}-"),
            });
        }
        let r = load::run(clients, config.timed()).await;
        check(config, "single insert", &r)?;
        push(&mut table, "insert one document", r);
    }

    let players = Arc::new(db::player_ids("b", n.min(1000))?);
    for &c in &levels {
        let mut clients = Vec::new();
        for _ in 0..c {
            clients.push(UpdateClient {
                session: Arc::new(db::connect(&url).await?),
                board: board.clone(),
                players: Arc::clone(&players),
                read_board: false,
            });
        }
        let r = load::run(clients, config.timed()).await;
        check(config, "point update", &r)?;
        push(&mut table, "point update (score-add query)", r);
    }
    for &c in &levels {
        let mut clients = Vec::new();
        for _ in 0..c {
            clients.push(TopClient {
                session: db::connect(&url).await?,
                board: board.clone(),
                expect: 5,
            });
        }
        let r = load::run(clients, config.timed()).await;
        check(config, "top-5 read", &r)?;
        push(&mut table, &format!("top-5 index read ({n} players)"), r);
    }
    table.row(vec![
        format!("bulk insert, {} per query", config.batch),
        "1".to_owned(),
        format!("{} docs", fmt_rate(bulk_rate)),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        n.to_string(),
        "0".to_owned(),
    ]);

    let key = store::player_key(&board, &players[0]);
    let feed = changefeed_latency(&url, &key, config.feed_rounds).await?;
    table.row(vec![
        "update → changefeed delivery".to_owned(),
        "1".to_owned(),
        "-".to_owned(),
        fmt_us(feed.mean_us),
        fmt_us(feed.p50_us),
        fmt_us(feed.p99_us),
        feed.count.to_string(),
        "0".to_owned(),
    ]);
    report.table(table);
    report.section(
        "devserver",
        json!({
            "server": if server.is_external() { "RETHINKDB_URL" } else { "reql-dev-server" },
            "bulk_insert": {"docs": n, "batch": config.batch, "seconds": bulk_seconds, "docs_per_second": bulk_rate},
            "operations": results,
            "changefeed_delivery": feed,
        }),
    );
    Ok(())
}

/// Time from sending an update to its change arriving on a players
/// changefeed, on a connection of its own, as the worker's feed gets it.
async fn changefeed_latency(
    url: &DatabaseUrl,
    key: &str,
    rounds: usize,
) -> anyhow::Result<crate::stats::Summary> {
    let writer = db::connect(url).await?;
    let listener = db::connect(url).await?;
    let feed = reql
        .table(store::PLAYERS)
        .changes()
        .opt("include_states", true);
    let mut feed = listener.feed(&feed)?;
    // The first item says the feed is ready.
    let ready = tokio::time::timeout(Duration::from_secs(10), feed.next()).await?;
    anyhow::ensure!(
        matches!(&ready, Some(Ok(v)) if v["state"] == "ready"),
        "changefeed did not become ready: {ready:?}"
    );
    let mut samples = Samples::with_capacity(rounds);
    for round in 0..rounds {
        let sent = Instant::now();
        writer
            .one(
                &reql
                    .table(store::PLAYERS)
                    .get(key)
                    .update(json!({"score": round as i64 + 1_000_000_000})),
            )
            .await?;
        loop {
            let change = tokio::time::timeout(Duration::from_secs(10), feed.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("changefeed ended"))??;
            if change["new_val"]["score"].as_i64() == Some(round as i64 + 1_000_000_000) {
                samples.record(sent.elapsed());
                break;
            }
        }
    }
    Ok(samples.summary())
}
