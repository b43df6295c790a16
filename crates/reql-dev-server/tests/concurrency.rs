//! Function updates are atomic per document: concurrent increments from many
//! connections lose nothing.

mod common;

use common::{connect, InProcess, Raw};
use reql_dev_server::Config;
use serde_json::{json, Value};
use unreql::{func, r, rjson};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_increments_lose_nothing() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let conn = connect(server.port).await?;
    let _: Value = r.table_create("counters").exec(&conn).await?;
    let _: Value = r
        .table("counters")
        .insert(json!({"id": "c", "score": 0, "n": 0}))
        .exec(&conn)
        .await?;

    let mut tasks = Vec::new();
    for c in 0..25 {
        let port = server.port;
        tasks.push(tokio::spawn(async move {
            let conn = connect(port).await?;
            for i in 0..40 {
                // Half through a function, half through `r.row`, as clients write both.
                let res: Value = if (c + i) % 2 == 0 {
                    r.table("counters")
                        .get("c")
                        .update(func!(|p| rjson!({"score": p.g("score").add(1)})))
                        .exec(&conn)
                        .await?
                } else {
                    r.table("counters")
                        .get("c")
                        .update(rjson!({"score": r.row().g("score").add(1)}))
                        .exec(&conn)
                        .await?
                };
                anyhow::ensure!(res["replaced"] == 1, "{res}");
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let doc: Value = r.table("counters").get("c").exec(&conn).await?;
    assert_eq!(doc["score"], 1000);
    drop(conn);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_queries_on_one_connection_all_get_answers() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut raw = Raw::connect(server.port).await?;
    raw.query(1, &json!([1, [60, ["t"]], {}])).await?;
    // 200 increments sent back to back on one connection; each runs as its own
    // task and is answered by token, in whatever order they finish.
    raw.query(2, &json!([1, [56, [[15, ["t"]], {"id": 1, "n": 0}]], {}]))
        .await?;
    for token in 100..300u64 {
        let update = json!([1, [53, [[16, [[15, ["t"]], 1]], [69, [[2, [1]], {"n": [24, [[31, [[10, [1]], "n"]], 1]]}]]]], {}]);
        raw.send(token, &update).await?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 100..300 {
        let (token, v) = raw.recv().await?;
        assert_eq!(v["t"], 1, "{v}");
        assert_eq!(v["r"][0]["replaced"], 1, "{v}");
        seen.insert(token);
    }
    assert_eq!(seen.len(), 200);
    let v = raw
        .query(3, &json!([1, [170, [[16, [[15, ["t"]], 1]], "n"]], {}]))
        .await?;
    assert_eq!(v, json!({"t": 1, "r": [200]}));
    server.stop().await;
    Ok(())
}
