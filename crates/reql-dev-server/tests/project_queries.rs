//! The queries the project's store sends, through the `unreql` driver, with the
//! answers the store relies on.

mod common;

use std::time::Duration;

use common::{connect, InProcess};
use futures::StreamExt;
use reql_dev_server::Config;
use serde_json::{json, Value};
use unreql::cmd::options::{BetweenOptions, ChangesOptions, InsertOptions, UpdateOptions};
use unreql::{func, r, rjson, Command};

fn top(board: &str, n: usize) -> Command {
    r.table("players")
        .between(
            rjson!([board.to_owned(), r.minval()]),
            rjson!([board.to_owned(), r.maxval()]),
            r.with_opt((), BetweenOptions::new().index("board_score".to_owned())),
        )
        .order_by(r.index(r.desc("board_score")))
        .limit(n)
}

async fn project_db(port: u16) -> anyhow::Result<unreql::Session> {
    Ok(r.connect(
        unreql::cmd::connect::Options::new()
            .host("127.0.0.1")
            .port(port)
            .db("leaderboard"),
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_queries_work_as_on_rethinkdb() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let admin = connect(server.port).await?;
    let dbs: Vec<String> = r.db_list().exec_to_vec(&admin).await?;
    assert!(dbs.contains(&"rethinkdb".to_string()) && dbs.contains(&"test".to_string()));
    let _: Value = r.db_create("leaderboard").exec(&admin).await?;
    let again = r.db_create("leaderboard").exec::<_, Value>(&admin).await;
    let err = again.expect_err("second dbCreate must fail").to_string();
    assert!(
        err.contains("Database `leaderboard` already exists."),
        "{err}"
    );

    let conn = project_db(server.port).await?;
    for t in ["boards", "players"] {
        let _: Value = r.db("leaderboard").table_create(t).exec(&conn).await?;
        let ready: Value = r.db("leaderboard").table(t).wait(()).exec(&conn).await?;
        assert_eq!(ready, json!({"ready": 1}));
    }
    let _: Value = r
        .table("players")
        .index_create(r.args((
            "board_score",
            func!(|doc| [doc.clone().g("board"), doc.g("score")]),
        )))
        .exec(&conn)
        .await?;
    let _: Value = r.table("players").index_create("board").exec(&conn).await?;
    let status: Vec<Value> = r.table("players").index_wait(()).exec_to_vec(&conn).await?;
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|s| s["ready"] == true));
    let indexes: Vec<String> = r.table("players").index_list().exec_to_vec(&conn).await?;
    assert_eq!(indexes, ["board", "board_score"]);

    // Boards, with the inserted row back through returnChanges.
    let created: Value = r
        .table("boards")
        .insert(r.with_opt(
            json!({"id": "b1", "name": "One"}),
            InsertOptions::new().return_changes(true.into()),
        ))
        .exec(&conn)
        .await?;
    assert_eq!(
        created["changes"][0]["new_val"],
        json!({"id": "b1", "name": "One"})
    );
    assert_eq!(created["changes"][0]["old_val"], Value::Null);
    let dup: Value = r
        .table("boards")
        .insert(r.with_opt(
            json!({"id": "b1", "name": "Again"}),
            InsertOptions::new().return_changes(true.into()),
        ))
        .exec(&conn)
        .await?;
    assert_eq!(dup["errors"], 1);
    assert!(dup["first_error"]
        .as_str()
        .unwrap_or("")
        .starts_with("Duplicate primary key `id`:"));
    let generated: Value = r
        .table("boards")
        .insert(json!({"name": "Anon"}))
        .exec(&conn)
        .await?;
    assert_eq!(
        generated["generated_keys"].as_array().map(Vec::len),
        Some(1)
    );

    // Players with tied scores: the index order breaks ties by id, reversed
    // when descending.
    let players = vec![
        json!({"id": "a", "board": "b1", "name": "A", "score": 10}),
        json!({"id": "b", "board": "b1", "name": "B", "score": 30}),
        json!({"id": "c", "board": "b1", "name": "C", "score": 10}),
        json!({"id": "d", "board": "b1", "name": "D", "score": 20}),
        json!({"id": "e", "board": "b1", "name": "E", "score": 10}),
        json!({"id": "f", "board": "b1", "name": "F", "score": -5}),
        json!({"id": "g", "board": "b2", "name": "G", "score": 99}),
    ];
    let res: Value = r.table("players").insert(players).exec(&conn).await?;
    assert_eq!(res["inserted"], 7);
    let top5: Vec<Value> = top("b1", 5).exec_to_vec(&conn).await?;
    let ids: Vec<&str> = top5.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, ["b", "d", "e", "c", "a"]);
    let scores: Vec<i64> = top5.iter().filter_map(|p| p["score"].as_i64()).collect();
    assert_eq!(scores, [30, 20, 10, 10, 10]);

    // One-round-trip snapshot: a board and its top players in one object.
    let snap: Value = rjson!({
        "board": r.table("boards").get("b1"),
        "players": top("b1", 5).coerce_to("array"),
    })
    .exec(&conn)
    .await?;
    assert_eq!(snap["board"]["name"], "One");
    assert_eq!(snap["players"].as_array().map(Vec::len), Some(5));
    let missing: Value = rjson!({
        "board": r.table("boards").get("nope"),
        "players": top("nope", 5).coerce_to("array"),
    })
    .exec(&conn)
    .await?;
    assert_eq!(missing, json!({"board": null, "players": []}));

    // The score update the store sends: checks inside the function, errors into
    // the write result.
    let add = |board: &str, delta: i64| {
        let board = board.to_owned();
        func!(|p| {
            r.branch(
                p.clone().g("board").ne(board.clone()),
                r.error("wrong board"),
                r.branch(
                    p.clone().g("score").add(delta).gt(1000),
                    r.error("out of range"),
                    rjson!({ "score": p.g("score").add(delta) }),
                ),
            )
        })
    };
    let ok: Value = r
        .table("players")
        .get("a")
        .update(r.with_opt(
            add("b1", 5),
            UpdateOptions::new().return_changes(true.into()),
        ))
        .exec(&conn)
        .await?;
    assert_eq!(ok["replaced"], 1);
    assert_eq!(ok["changes"][0]["new_val"]["score"], 15);
    let wrong: Value = r
        .table("players")
        .get("a")
        .update(r.with_opt(
            add("b2", 5),
            UpdateOptions::new().return_changes(true.into()),
        ))
        .exec(&conn)
        .await?;
    assert_eq!(wrong["errors"], 1);
    assert_eq!(wrong["first_error"], "wrong board");
    assert_eq!(wrong["changes"], json!([]));
    let range: Value = r
        .table("players")
        .get("a")
        .update(add("b1", 5000))
        .exec(&conn)
        .await?;
    assert_eq!(range["first_error"], "out of range");
    let skipped: Value = r
        .table("players")
        .get("zz")
        .update(add("b1", 1))
        .exec(&conn)
        .await?;
    assert_eq!(skipped["skipped"], 1);

    // Boards in id order, then deletes.
    let boards: Vec<Value> = r
        .table("boards")
        .order_by(r.index("id"))
        .limit(10)
        .exec_to_vec(&conn)
        .await?;
    let ids: Vec<&str> = boards.iter().filter_map(|b| b["id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids, sorted);
    let del: Value = r
        .table("players")
        .get_all("g")
        .filter(json!({"board": "b1"}))
        .delete(())
        .exec(&conn)
        .await?;
    assert_eq!(del["deleted"], 0);
    let del: Value = r
        .table("players")
        .get_all(r.with_opt("b1", r.index("board")))
        .delete(())
        .exec(&conn)
        .await?;
    assert_eq!(del["deleted"], 6);
    let count: u64 = r.table("players").count(()).exec(&conn).await?;
    assert_eq!(count, 1);
    drop((admin, conn));
    server.stop().await;
    Ok(())
}

async fn next_item<S>(feed: &mut S) -> anyhow::Result<Value>
where
    S: futures::Stream<Item = unreql::Result<Value>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(5), feed.next()).await? {
        Some(item) => Ok(item?),
        None => anyhow::bail!("the feed ended"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changefeed_with_states_on_a_dedicated_connection() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let writer = connect(server.port).await?;
    let _: Value = r.table_create("players").exec(&writer).await?;

    let feed_session = connect(server.port).await?;
    let conn = feed_session.connection()?;
    let mut feed = r
        .table("players")
        .changes(r.with_opt((), ChangesOptions::new().include_states(true)))
        .run::<_, Value>(conn);
    let first = next_item(&mut feed).await?;
    assert_eq!(first, json!({"state": "ready"}));

    let _: Value = r
        .table("players")
        .insert(json!({"id": "p", "score": 1}))
        .exec(&writer)
        .await?;
    let change = next_item(&mut feed).await?;
    assert_eq!(
        change,
        json!({"new_val": {"id": "p", "score": 1}, "old_val": null})
    );
    for i in 2..=5 {
        let _: Value = r
            .table("players")
            .get("p")
            .update(json!({"score": i}))
            .exec(&writer)
            .await?;
    }
    for i in 2..=5 {
        let change = next_item(&mut feed).await?;
        assert_eq!(change["new_val"]["score"], i);
        assert_eq!(change["old_val"]["score"], i - 1);
    }
    let _: Value = r.table("players").get("p").delete(()).exec(&writer).await?;
    let change = next_item(&mut feed).await?;
    assert_eq!(
        change,
        json!({"new_val": null, "old_val": {"id": "p", "score": 5}})
    );
    drop(feed);
    drop((writer, feed_session));
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_password_is_checked() -> anyhow::Result<()> {
    let server = InProcess::start(Config {
        initial_password: Some("s3cret, =x".into()),
        ..Config::default()
    })
    .await?;
    let opts = |pw: &'static str| {
        unreql::cmd::connect::Options::new()
            .host("127.0.0.1")
            .port(server.port)
            .password(pw)
    };
    let conn = r.connect(opts("s3cret, =x")).await?;
    let three: u64 = r.expr(1).add(2).exec(&conn).await?;
    assert_eq!(three, 3);
    let wrong = r.connect(opts("nope")).await;
    let err = wrong.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("Wrong password"), "{err}");
    drop(conn);
    server.stop().await;
    Ok(())
}
