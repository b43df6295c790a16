//! One connection, many queries, on the dev server in-process.

use std::time::Duration;

use reql_client::{ConnectOptions, Connection, Error};
use serde_json::{json, Value};

async fn dev_server() -> (u16, tokio::sync::oneshot::Sender<()>) {
    let server = reql_dev_server::Server::bind(reql_dev_server::Config {
        port: 0,
        ..Default::default()
    })
    .await
    .expect("bind the dev server");
    let port = server.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (port, stop)
}

fn no_optargs() -> Value {
    json!({})
}

// Terms as unreql serialises them: r.expr(a).add(b) = [24, [a, b]];
// r.db("test").table_create("t") = [60, [[14, ["test"]], "t"]];
// r.db("test").table("t") = [15, [[14, ["test"]], "t"]]; .changes() = [152, [table]];
// .insert(doc) = [56, [table, doc]]; .count() = [43, [table]].
fn table() -> Value {
    json!([15, [[14, ["test"]], "t"]])
}

#[tokio::test]
async fn many_queries_in_flight_on_one_connection() {
    let (port, _stop) = dev_server().await;
    let conn = Connection::connect(&ConnectOptions::new("127.0.0.1", port))
        .await
        .expect("connect");
    let cursors: Vec<_> = (0..200)
        .map(|i| {
            conn.query(&json!([24, [i, 1]]), &no_optargs())
                .expect("send")
        })
        .collect();
    assert!(conn.in_flight() > 0);
    for (i, cursor) in cursors.into_iter().enumerate() {
        assert_eq!(cursor.all().await.expect("answer"), [json!(i + 1)]);
    }
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn a_dropped_changefeed_is_stopped_and_the_connection_goes_on() {
    let (port, _stop) = dev_server().await;
    let conn = Connection::connect(&ConnectOptions::new("127.0.0.1", port))
        .await
        .expect("connect");
    conn.run(&json!([60, [[14, ["test"]], "t"]]), &no_optargs())
        .await
        .expect("create the table");

    // Dropped after its first batch, and dropped before any answer.
    let mut feed = conn
        .query(&json!([152, [table()]]), &no_optargs())
        .expect("feed");
    conn.run(&json!([56, [table(), {"id": 1}]]), &no_optargs())
        .await
        .expect("insert");
    let first = feed.next_batch().await.expect("a batch");
    assert!(first.is_some());
    drop(feed);
    drop(
        conn.query(&json!([152, [table()]]), &no_optargs())
            .expect("feed"),
    );

    let count = conn.run(&json!([43, [table()]]), &no_optargs()).await;
    assert_eq!(count.expect("count"), [json!(1)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while conn.in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never ended the stopped feeds: {conn:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn errors_are_sorted_by_kind() {
    let (port, stop) = dev_server().await;
    let conn = Connection::connect(&ConnectOptions::new("127.0.0.1", port))
        .await
        .expect("connect");
    // r.db("test").table("missing")
    let err = conn
        .run(&json!([15, [[14, ["test"]], "missing"]]), &no_optargs())
        .await
        .expect_err("no such table");
    assert!(matches!(err, Error::Runtime { .. }), "{err:?}");
    assert!(!err.is_connection_error());
    assert!(!conn.is_broken());

    let _ = stop.send(());
    let err = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(e) = conn.run(&json!([24, [1, 1]]), &no_optargs()).await {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed connection is noticed");
    assert!(err.is_connection_error(), "{err:?}");
    assert!(conn.is_broken());

    let refused = Connection::connect(&ConnectOptions {
        password: "wrong".into(),
        ..ConnectOptions::new("127.0.0.1", dev_server().await.0)
    })
    .await
    .expect_err("wrong password");
    assert!(refused.to_string().contains("Wrong password"), "{refused}");
}
