//! Loads N players into an in-process server and times the queries the project
//! sends most: the top five of a board, a score update, and a changefeed
//! delivery. `cargo run --release -p reql-dev-server --example load -- 1000000`

use std::time::{Duration, Instant};

use futures::StreamExt;
use reql_dev_server::{Config, Server};
use serde_json::{json, Value};
use unreql::cmd::connect::Options;
use unreql::cmd::options::{BetweenOptions, ChangesOptions};
use unreql::{func, r, rjson};

fn top(board: &str) -> unreql::Command {
    r.table("players")
        .between(
            rjson!([board.to_owned(), r.minval()]),
            rjson!([board.to_owned(), r.maxval()]),
            r.with_opt((), BetweenOptions::new().index("board_score".to_owned())),
        )
        .order_by(r.index(r.desc("board_score")))
        .limit(5)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::args().nth(2).map(std::path::PathBuf::from);
    let server = Server::bind(Config {
        port: 0,
        directory: dir,
        ..Config::default()
    })
    .await?;
    let port = server.local_addr().port();
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    let conn = r
        .connect(Options::new().host("127.0.0.1").port(port))
        .await?;
    let _: Value = r.table_create("players").exec(&conn).await?;
    let _: Value = r
        .table("players")
        .index_create(r.args((
            "board_score",
            func!(|d| [d.clone().g("board"), d.g("score")]),
        )))
        .exec(&conn)
        .await?;
    let _: Value = r.table("players").index_create("board").exec(&conn).await?;

    let started = Instant::now();
    let boards = 100;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("p{i:08}"), "board": format!("b{}", i % boards), "name": format!("player {i}"), "score": (i * 7919) % 100_000}))
            .collect();
        let res: Value = r.table("players").insert(docs).exec(&conn).await?;
        anyhow::ensure!(res["errors"] == 0, "{res}");
    }
    let load = started.elapsed();
    println!(
        "loaded {n} players in {load:?} ({:.0} docs/s)",
        n as f64 / load.as_secs_f64()
    );

    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let t = Instant::now();
    for i in 0..rounds {
        let top5: Vec<Value> = top(&format!("b{}", i as usize % boards))
            .exec_to_vec(&conn)
            .await?;
        anyhow::ensure!(top5.len() == 5.min(n / boards));
    }
    println!("top-5 query: {:?} each", t.elapsed() / rounds);

    let t = Instant::now();
    for i in 0..rounds {
        let res: Value = r
            .table("players")
            .get(format!("p{:08}", i as usize % n))
            .update(func!(|p| rjson!({"score": p.g("score").add(1)})))
            .exec(&conn)
            .await?;
        anyhow::ensure!(res["replaced"] == 1, "{res}");
    }
    println!("score update: {:?} each", t.elapsed() / rounds);

    let feed_conn = r
        .connect(Options::new().host("127.0.0.1").port(port))
        .await?;
    let mut feed = r
        .table("players")
        .changes(r.with_opt((), ChangesOptions::new().include_states(true)))
        .run::<_, Value>(feed_conn.connection()?);
    let _ready = feed.next().await;
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        let _: Value = r
            .table("players")
            .get("p00000000")
            .update(json!({"score": i}))
            .exec(&conn)
            .await?;
        let _change = tokio::time::timeout(Duration::from_secs(5), feed.next()).await?;
        let d = t.elapsed();
        worst = worst.max(d);
        total += d;
    }
    println!(
        "update + feed delivery: {:?} mean, {worst:?} worst",
        total / 200
    );
    let t = Instant::now();
    let count: u64 = r.table("players").count(()).exec(&conn).await?;
    println!("count() = {count} in {:?}", t.elapsed());

    // Single-document writes from many connections at once: with a data
    // directory, this is where group commit shows.
    let writers = 32;
    let each = 100;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        tasks.push(tokio::spawn(async move {
            let conn = r
                .connect(Options::new().host("127.0.0.1").port(port))
                .await?;
            for i in 0..each {
                let doc =
                    json!({"id": format!("w{w}-{i}"), "board": "bw", "name": "w", "score": i});
                let res: Value = r.table("players").insert(doc).exec(&conn).await?;
                anyhow::ensure!(res["inserted"] == 1, "{res}");
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let n = writers * each;
    let d = t.elapsed();
    println!(
        "{n} single inserts from {writers} connections: {d:?} ({:.0} writes/s)",
        n as f64 / d.as_secs_f64()
    );
    Ok(())
}
