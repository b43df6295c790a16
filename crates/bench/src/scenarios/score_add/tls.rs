//! What TLS to the database costs the store: two fresh servers of the kind
//! the bench runs on, one plain and one with driver TLS (a server
//! certificate and, as docker-compose.cluster.yml deploys it, client
//! certificates checked against the CA), each with the same board, and
//! the store's `add_score` through a pool of 4 at concurrency 16 on each,
//! runs alternating plain and TLS. The pools stay open across runs, so the
//! handshakes fall in the first warm-up and the runs measure the cost per
//! query. The target: TLS keeps at least 0.90× the plain
//! throughput.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use domain::{BoardId, Name, PlayerId, Rules};
use serde::Serialize;
use store::{DatabaseUrl, NewBoard, NewPlayer, PoolOptions, Store};
use testkit::{rethinkdb_binary, CertFiles, Database, ServerKind, TempDir, TestCa};

use super::super::{check, labelled_row, rounds_header};
use super::{summed_throughput, StoreClient};
use crate::cli::Config;
use crate::load::{self, LoadResult};
use crate::report::{Report, Table, Target};

/// Concurrency and pool size, as the target names them.
const CONCURRENCY: usize = 16;
const POOL: usize = 4;
/// The target: TLS throughput ≥ this × plain throughput.
const AT_LEAST: f64 = 0.90;
const DB: &str = "bench_tls";
/// Alternating rounds (plain, TLS): four, as a 3 s run's throughput on
/// RethinkDB moves by a fifth from one run to the next.
const ROUNDS: usize = 4;

/// One run on one server.
#[derive(Debug, Clone, Serialize)]
struct TlsRun {
    tls: bool,
    round: usize,
    #[serde(flatten)]
    result: LoadResult,
}

/// The server kind the rest of the bench runs on: a real RethinkDB when it
/// was asked for (`RETHINKDB_BIN`, `TEST_DATABASE=rethinkdb`, or a server at
/// `RETHINKDB_URL`) and a binary is there to start, else the dev server.
/// Plain and TLS servers are started here rather than reusing the bench's
/// own, which has no certificates and may be someone else's.
fn server_kind() -> ServerKind {
    let asked = match ServerKind::from_env() {
        ServerKind::RethinkDbBinary(bin) => return ServerKind::RethinkDbBinary(bin),
        ServerKind::External(_) => true,
        ServerKind::DevServer => std::env::var_os("RETHINKDB_BIN").is_some_and(|b| !b.is_empty()),
    };
    match rethinkdb_binary() {
        Some(bin) if asked => ServerKind::RethinkDbBinary(bin),
        _ => ServerKind::DevServer,
    }
}

fn tls_args(server: &CertFiles, ca: &Path) -> Vec<OsString> {
    vec![
        "--driver-tls-key".into(),
        server.key.clone().into(),
        "--driver-tls-cert".into(),
        server.cert.clone().into(),
        "--driver-tls-ca".into(),
        ca.into(),
    ]
}

/// A server of `kind` in a directory of its own under `dir` (a real
/// server's data and log are named after the program, not the instance).
async fn start(
    kind: &ServerKind,
    dir: &Path,
    name: &str,
    args: Vec<OsString>,
) -> anyhow::Result<Database> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let kind = kind.clone();
    tokio::task::spawn_blocking(move || Database::start_on(kind, &dir, &args)).await?
}

/// A store on `url` with a pool of [`POOL`], its schema, one board and its
/// players.
async fn store_with_board(
    url: &str,
    board: &BoardId,
    players: &[PlayerId],
) -> anyhow::Result<Store> {
    let url = DatabaseUrl::parse(url)?;
    let store = Store::new(
        url,
        PoolOptions {
            max_connections: POOL,
            ..PoolOptions::default()
        },
    );
    store.ensure_schema().await?;
    store
        .create_board(NewBoard {
            id: Some(board.clone()),
            name: None,
            rules: Rules::default(),
        })
        .await?;
    for player in players {
        store
            .create_player(
                board,
                NewPlayer {
                    id: Some(player.clone()),
                    name: Name::parse(player.as_str())?,
                },
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("board {board} vanished"))?;
    }
    Ok(store)
}

/// Operations over measured seconds of the runs with or without TLS.
fn throughput(runs: &[TlsRun], tls: bool) -> f64 {
    summed_throughput(runs.iter().filter(|r| r.tls == tls).map(|r| &r.result))
}

pub async fn run(
    config: &Config,
    report: &mut Report,
    board: &BoardId,
    players: &Arc<Vec<PlayerId>>,
) -> anyhow::Result<()> {
    let kind = server_kind();
    let server_name = match &kind {
        ServerKind::RethinkDbBinary(bin) => format!("rethinkdb at {}", bin.display()),
        _ => "reql-dev-server".to_owned(),
    };
    let dir = TempDir::new("bench-tls")?;
    let ca = TestCa::new(dir.path(), "bench")?;
    let server_cert = ca.server("server", &["127.0.0.1"], false)?;
    let client = ca.client("client")?;
    let plain_db = start(&kind, dir.path(), "plain", Vec::new()).await?;
    let tls_db = start(
        &kind,
        dir.path(),
        "tls",
        tls_args(&server_cert, &ca.ca_path()),
    )
    .await?;
    // Both reached at the same address, so that only TLS differs.
    let plain_url = format!("rethinkdb://admin@127.0.0.1:{}/{DB}", plain_db.port());
    let tls_url = format!(
        "rethinkdbs://admin@127.0.0.1:{}/{DB}?ca={}&cert={}&key={}",
        tls_db.port(),
        ca.ca_path().display(),
        client.cert.display(),
        client.key.display(),
    );
    let plain = store_with_board(&plain_url, board, players).await?;
    let tls = store_with_board(&tls_url, board, players).await?;

    let rounds = if config.strict() { 1 } else { ROUNDS };
    let mut table = Table::new(
        &format!(
            "Store add_score, plain and TLS ({server_name}; pool of {POOL}, concurrency {CONCURRENCY}, runs alternating)"
        ),
        &rounds_header("database"),
    );
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for (with_tls, store) in [(false, &plain), (true, &tls)] {
            let clients = (0..CONCURRENCY)
                .map(|_| StoreClient {
                    store: store.clone(),
                    board: board.clone(),
                    players: Arc::clone(players),
                })
                .collect();
            let r = load::run(clients, config.timed()).await;
            let what = if with_tls { "TLS" } else { "plain" };
            check(config, &format!("store add_score, {what}"), &r)?;
            table.row(labelled_row(&[what, &round.to_string()], &r));
            runs.push(TlsRun {
                tls: with_tls,
                round,
                result: r,
            });
        }
    }
    let plain_rate = throughput(&runs, false);
    let tls_rate = throughput(&runs, true);
    report.table(table);
    report.section(
        "score_add_tls",
        serde_json::json!({
            "server": server_name,
            "concurrency": CONCURRENCY,
            "pool": POOL,
            "runs": runs,
            "throughput": { "plain": plain_rate, "tls": tls_rate },
        }),
    );
    // Stated as plain / TLS ≤ 1/0.90, as every target is a ratio that must
    // not exceed its limit.
    report.target(Target::ratio(
        &format!("store over TLS ≥ {AT_LEAST}× plain throughput (c={CONCURRENCY}, pool of {POOL})"),
        format!("plain {plain_rate:.0}/s / TLS {tls_rate:.0}/s"),
        plain_rate / tls_rate,
        1.0 / AT_LEAST,
    ));
    Ok(())
}
