//! Origins and the worker starting at the same instant on a fresh database,
//! as on the first `foreman start`, `docker compose up` or Heroku release.
//!
//! RethinkDB lets two overlapping `tableCreate`s of one name both succeed,
//! leaving two tables on which every query fails as ambiguous; the dev
//! server reproduces that window. The schema set-up must end, every time,
//! with each table present once and the whole stack serving.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{binary, Binary, Stack, StackOptions};
use unreql::{r, rjson};

const ROUNDS: usize = 10;

/// How many tables of each name the stack's database holds, read from
/// `rethinkdb.table_config` (`tableList` shows a doubled name once).
async fn table_counts(stack: &Stack) -> BTreeMap<String, usize> {
    let session = stack.db_session().await;
    let rows: Vec<Value> = r
        .db("rethinkdb")
        .table("table_config")
        .filter(rjson!({ "db": stack.db_name.clone() }))
        .exec_to_vec(&session)
        .await
        .expect("read table_config");
    let mut counts = BTreeMap::new();
    for row in rows {
        let name = row["name"].as_str().expect("table name").to_owned();
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn two_origins_and_a_worker_starting_together_share_one_schema() {
    // Built (if need be) before the clock starts.
    for which in [Binary::Web, Binary::Worker, Binary::DevServer] {
        binary(which);
    }
    for round in 1..=ROUNDS {
        let started = Instant::now();
        let stack = Stack::start_with(StackOptions {
            extra_webs: 1,
            start_together: true,
            ..StackOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: the stack did not start: {e:#}"));
        let ready_after = started.elapsed();
        assert!(
            ready_after < Duration::from_secs(10),
            "round {round}: serving only after {ready_after:?}"
        );

        let counts = table_counts(&stack).await;
        assert_eq!(
            counts,
            BTreeMap::from([
                ("boards".to_owned(), 1),
                ("leases".to_owned(), 1),
                ("periods".to_owned(), 1),
                ("players".to_owned(), 1),
                ("ranks".to_owned(), 1)
            ]),
            "round {round}: each table once"
        );

        // Both origins serve the same data.
        stack.create_board("race", &[("ann", "Ann")]).await;
        for port in stack.extra_web_ports() {
            let body: Value = stack
                .client
                .get(format!("http://127.0.0.1:{port}/boards/race/"))
                .send()
                .await
                .expect("GET from the second origin")
                .json()
                .await
                .expect("board JSON");
            assert_eq!(body["players"][0]["id"], "ann", "round {round}");
        }

        // And the worker publishes: a score-add reaches a subscriber.
        let mut sub = stack.subscribe("race").await;
        let first = sub.next(Duration::from_secs(5)).await.expect("snapshot");
        assert_eq!(first.json()["players"][0]["score"], 0, "round {round}");
        stack.score_add("race", "ann", 7).await;
        sub.wait_for(Duration::from_secs(5), |e| {
            (e.json()["players"][0] == json!({"id": "ann", "name": "Ann", "score": 7, "rank": 1}))
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: no update reached the subscriber: {e:#}"));
        eprintln!("round {round}: serving after {ready_after:?}");
    }
}
