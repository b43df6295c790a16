//! With `--directory`, acknowledged writes survive a crash (SIGKILL) and a
//! restart, and a compacted data directory loads back the same data.

mod common;

use common::{connect, Binary, InProcess, TempDir};
use reql_dev_server::Config;
use serde_json::{json, Value};
use unreql::cmd::options::BetweenOptions;
use unreql::{func, r, rjson};

fn players() -> unreql::Command {
    r.db("lb").table("players")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() -> anyhow::Result<()> {
    let dir = TempDir::new("kill9");
    let path = dir.path().to_string_lossy().to_string();
    let server = Binary::start(&["--directory", &path])?;
    let conn = connect(server.port).await?;
    let _: Value = r.db_create("lb").exec(&conn).await?;
    let _: Value = r.db("lb").table_create("players").exec(&conn).await?;
    let _: Value = players()
        .index_create(r.args((
            "board_score",
            func!(|doc| [doc.clone().g("board"), doc.g("score")]),
        )))
        .exec(&conn)
        .await?;

    // Eight writers on their own connections; every write is acknowledged
    // before the process is killed.
    let mut writers = Vec::new();
    for w in 0..8 {
        let port = server.port;
        writers.push(tokio::spawn(async move {
            let conn = connect(port).await?;
            for i in 0..50 {
                let doc =
                    json!({"id": format!("p{w}-{i}"), "board": format!("b{}", w % 2), "score": i});
                let res: Value = players().insert(doc).exec(&conn).await?;
                anyhow::ensure!(res["inserted"] == 1, "insert p{w}-{i}: {res}");
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    for _ in 0..20 {
        let res: Value = players()
            .get("p0-0")
            .update(func!(|p| rjson!({"score": p.g("score").add(1)})))
            .exec(&conn)
            .await?;
        assert_eq!(res["replaced"], 1, "{res}");
    }
    let res: Value = players().get("p7-49").delete(()).exec(&conn).await?;
    assert_eq!(res["deleted"], 1);
    drop(conn);
    server.kill9()?;

    let server = Binary::start(&["--directory", &path])?;
    let conn = connect(server.port).await?;
    let count: u64 = players().count(()).exec(&conn).await?;
    assert_eq!(count, 399);
    let p: Value = players().get("p0-0").exec(&conn).await?;
    assert_eq!(p, json!({"id": "p0-0", "board": "b0", "score": 20}));
    let gone: Value = players().get("p7-49").exec(&conn).await?;
    assert_eq!(gone, Value::Null);
    for w in 0..7 {
        for i in 0..50 {
            let doc: Value = players().get(format!("p{w}-{i}")).exec(&conn).await?;
            assert_eq!(doc["board"], format!("b{}", w % 2), "p{w}-{i}");
        }
    }
    // The index was rebuilt from the log too.
    let top: Vec<Value> = players()
        .between(
            rjson!(["b1", r.minval()]),
            rjson!(["b1", r.maxval()]),
            r.with_opt((), BetweenOptions::new().index("board_score".to_owned())),
        )
        .order_by(r.index(r.desc("board_score")))
        .limit(3)
        .exec_to_vec(&conn)
        .await?;
    let ids: Vec<&str> = top.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids, ["p5-49", "p3-49", "p1-49"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_directory_loads_back() -> anyhow::Result<()> {
    let dir = TempDir::new("compact");
    let config = Config {
        directory: Some(dir.path().to_path_buf()),
        compact_log_bytes: 64 * 1024,
        ..Config::default()
    };
    let server = InProcess::start(config.clone()).await?;
    let conn = connect(server.port).await?;
    let _: Value = r.db_create("lb").exec(&conn).await?;
    let _: Value = r.db("lb").table_create("players").exec(&conn).await?;
    let _: Value = players().index_create("board").exec(&conn).await?;
    for round in 0..10 {
        let docs: Vec<Value> = (0..100)
            .map(|i| json!({"id": i, "board": format!("b{}", i % 3), "round": round, "pad": "x".repeat(200)}))
            .collect();
        let res: Value = players()
            .insert(
                r.with_opt(
                    docs,
                    unreql::cmd::options::InsertOptions::new()
                        .conflict(unreql::cmd::options::Conflict::Replace),
                ),
            )
            .exec(&conn)
            .await?;
        assert_eq!(res["errors"], 0, "{res}");
    }
    drop(conn);
    server.stop().await;

    let names: Vec<String> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("snapshot-")),
        "no snapshot in {names:?}"
    );

    let server = InProcess::start(config).await?;
    let conn = connect(server.port).await?;
    let count: u64 = players().count(()).exec(&conn).await?;
    assert_eq!(count, 100);
    let rounds: Vec<Value> = players().g("round").distinct(()).exec_to_vec(&conn).await?;
    assert_eq!(rounds, [json!(9)]);
    let b1: u64 = players()
        .get_all(r.with_opt("b1", r.index("board")))
        .count(())
        .exec(&conn)
        .await?;
    assert_eq!(b1, 33);
    drop(conn);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_do_not_pile_up_log_files() -> anyhow::Result<()> {
    let dir = TempDir::new("restarts");
    let config = Config {
        directory: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    for i in 0..20 {
        let server = InProcess::start(config.clone()).await?;
        let conn = connect(server.port).await?;
        if i == 0 {
            let _: Value = r.table_create("t").exec(&conn).await?;
        }
        let res: Value = r.table("t").insert(json!({"id": i})).exec(&conn).await?;
        assert_eq!(res["inserted"], 1, "{res}");
        drop(conn);
        server.stop().await;
    }
    let logs = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .count();
    assert!(logs <= 10, "{logs} log files after 20 restarts");
    let server = InProcess::start(config).await?;
    let conn = connect(server.port).await?;
    let count: u64 = r.table("t").count(()).exec(&conn).await?;
    assert_eq!(count, 20);
    drop(conn);
    server.stop().await;
    Ok(())
}
