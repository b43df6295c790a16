//! Board rules (order, operator, top), `score/`, ranks, around-me and cursor
//! pagination, through real Pushpin, on whichever server the suite runs on.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::Stack;

async fn add_players(stack: &Stack, board: &str, ids: &[&str]) {
    for id in ids {
        let resp = stack
            .post_json(
                &format!("/boards/{board}/players/"),
                json!({ "id": id, "name": id.to_uppercase() }),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
}

async fn submit(stack: &Stack, board: &str, player: &str, value: i64) -> (u16, Value) {
    let resp = stack
        .post_json(
            &format!("/boards/{board}/players/{player}/score/"),
            json!({ "value": value }),
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `(id, score, rank)` of each player of a board or page JSON.
fn standings(v: &Value) -> Vec<(String, i64, u64)> {
    v["players"]
        .as_array()
        .expect("players")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["score"].as_i64().unwrap(),
                p["rank"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_are_set_at_creation_shown_and_never_changed() {
    let stack = Stack::start().await.unwrap();
    let (status, body) = stack
        .post_json_answer(
            "/boards/",
            json!({"id": "laps", "name": "Laps", "order": "asc", "operator": "best", "top": 3}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"id": "laps", "name": "Laps", "rules": {"order": "asc", "operator": "best", "top": 3}, "players": []})
    );
    let (_, board) = stack.get_json("/boards/laps/").await;
    assert_eq!(
        board["rules"],
        json!({"order": "asc", "operator": "best", "top": 3})
    );

    // Another create of the same id, with other rules or the same: 409, and
    // the rules stay.
    for again in [
        json!({"id": "laps", "order": "desc"}),
        json!({"id": "laps", "order": "asc", "operator": "best", "top": 3}),
    ] {
        let (status, body) = stack.post_json_answer("/boards/", again).await;
        assert_eq!(status, 409, "{body}");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("rules are fixed"));
    }
    let (_, board) = stack.get_json("/boards/laps/").await;
    assert_eq!(board["rules"]["order"], "asc");

    // Defaults, and what is refused.
    let (status, body) = stack
        .post_json_answer("/boards/", json!({"id": "plain"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        body["rules"],
        json!({"order": "desc", "operator": "incr", "top": 5})
    );
    for bad in [
        json!({"order": "up"}),
        json!({"operator": "max"}),
        json!({"top": 0}),
        json!({"top": 101}),
        json!({"top": "5"}),
        json!({"top": -1}),
    ] {
        let (status, body) = stack.post_json_answer("/boards/", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_submit_as_the_board_says_and_score_add_still_adds() {
    let stack = Stack::start().await.unwrap();
    stack
        .post_json_answer(
            "/boards/",
            json!({"id": "laps", "order": "asc", "operator": "best"}),
        )
        .await;
    stack
        .post_json_answer("/boards/", json!({"id": "hi", "operator": "best"}))
        .await;
    stack
        .post_json_answer("/boards/", json!({"id": "set", "operator": "set"}))
        .await;
    stack
        .post_json_answer("/boards/", json!({"id": "sum"}))
        .await;
    for b in ["laps", "hi", "set", "sum"] {
        add_players(&stack, b, &["ann"]).await;
    }

    // best, lower is better: a slower lap changes nothing.
    let (s, a) = submit(&stack, "laps", "ann", 60).await;
    assert_eq!(
        (s, &a["score"], &a["changed"]),
        (200, &json!(60), &json!(true))
    );
    let (_, a) = submit(&stack, "laps", "ann", 55).await;
    assert_eq!((&a["score"], &a["changed"]), (&json!(55), &json!(true)));
    let (_, a) = submit(&stack, "laps", "ann", 58).await;
    assert_eq!((&a["score"], &a["changed"]), (&json!(55), &json!(false)));
    let (_, p) = stack.get_json("/boards/laps/players/ann/").await;
    assert_eq!((&p["score"], &p["rank"]), (&json!(55), &json!(1)));

    // On a best or set board a player has no score, and no rank, until its
    // first submission (a lap time of 0 would top the board).
    add_players(&stack, "laps", &["bob"]).await;
    let (_, p) = stack.get_json("/boards/laps/players/bob/").await;
    assert_eq!(p, json!({"id": "bob", "name": "BOB", "score": null}));
    let (_, board) = stack.get_json("/boards/laps/").await;
    assert_eq!(standings(&board), [("ann".to_owned(), 55, 1)]);
    let (_, around) = stack.get_json("/boards/laps/players/bob/around/").await;
    assert_eq!(around["players"].as_array().map(Vec::len), Some(1));

    // best, higher is better.
    let (_, a) = submit(&stack, "hi", "ann", 10).await;
    assert_eq!((&a["score"], &a["changed"]), (&json!(10), &json!(true)));
    let (_, a) = submit(&stack, "hi", "ann", 7).await;
    assert_eq!((&a["score"], &a["changed"]), (&json!(10), &json!(false)));

    // set replaces; the same value again changes nothing.
    let (_, a) = submit(&stack, "set", "ann", 42).await;
    assert_eq!((&a["score"], &a["changed"]), (&json!(42), &json!(true)));
    let (_, a) = submit(&stack, "set", "ann", -3).await;
    assert_eq!((&a["score"], &a["changed"]), (&json!(-3), &json!(true)));
    let (_, a) = submit(&stack, "set", "ann", -3).await;
    assert_eq!(a["changed"], false);

    // incr adds; score-add adds on every board, whatever its operator.
    let (_, a) = submit(&stack, "sum", "ann", 4).await;
    assert_eq!(a["score"], 4);
    assert_eq!(stack.score_add("laps", "ann", 5).await["score"], 60);
    assert_eq!(stack.score_add("set", "ann", 5).await["score"], 2);

    // What is refused.
    for (body, want) in [
        (json!({}), 400),
        (json!({"value": "1"}), 400),
        (json!({"value": 1.5}), 400),
        (json!({"value": 9007199254740992_i64}), 400),
    ] {
        let resp = stack
            .post_json("/boards/sum/players/ann/score/", body.clone())
            .await;
        assert_eq!(resp.status().as_u16(), want, "{body}");
    }
    let (s, _) = submit(&stack, "sum", "nobody", 1).await;
    assert_eq!(s, 404);
    let (s, _) = submit(&stack, "nope", "ann", 1).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyed_submission_counts_once_and_answers_the_first_result() {
    let stack = Stack::start().await.unwrap();
    stack
        .post_json_answer("/boards/", json!({"id": "b", "operator": "best"}))
        .await;
    add_players(&stack, "b", &["ann"]).await;
    let keyed = |key: &'static str, value: i64| {
        stack
            .client
            .post(stack.url("/boards/b/players/ann/score/"))
            .header("Idempotency-Key", key)
            .json(&json!({ "value": value }))
            .send()
    };
    let first: Value = keyed("k1", 10).await.unwrap().json().await.unwrap();
    assert_eq!(
        (&first["score"], &first["changed"]),
        (&json!(10), &json!(true))
    );
    submit(&stack, "b", "ann", 20).await;
    let again: Value = keyed("k1", 10).await.unwrap().json().await.unwrap();
    assert_eq!(again, first);
    let worse: Value = keyed("k2", 5).await.unwrap().json().await.unwrap();
    assert_eq!(
        (&worse["score"], &worse["changed"]),
        (&json!(20), &json!(false))
    );
    let worse_again: Value = keyed("k2", 5).await.unwrap().json().await.unwrap();
    assert_eq!(worse_again, worse);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_follows_order_and_top_and_a_no_change_publishes_nothing() {
    let stack = Stack::start().await.unwrap();
    stack
        .post_json_answer(
            "/boards/",
            json!({"id": "laps", "order": "asc", "operator": "best", "top": 2}),
        )
        .await;
    add_players(&stack, "laps", &["ann", "bob", "cat"]).await;
    submit(&stack, "laps", "ann", 70).await;
    submit(&stack, "laps", "bob", 65).await;
    submit(&stack, "laps", "cat", 80).await;
    let mut sub = stack.subscribe("laps").await;
    let first = sub
        .wait_for(Duration::from_secs(10), |e| {
            (e.event == "update"
                && standings(&e.json()).iter().map(|p| p.1).collect::<Vec<_>>() == [65, 70])
            .then_some(e.json())
        })
        .await
        .expect("the board, best two laps first")
        .0;
    assert_eq!(
        standings(&first),
        [("bob".to_owned(), 65, 1), ("ann".to_owned(), 70, 2)]
    );
    assert_eq!(first["rules"]["top"], 2);

    // A slower lap changes nothing and publishes nothing.
    let (_, a) = submit(&stack, "laps", "bob", 66).await;
    assert_eq!(a["changed"], false);
    let quiet = sub.drain(Duration::from_millis(800)).await;
    assert!(
        quiet.iter().all(|e| e.event != "update"),
        "published {quiet:?}"
    );
    // A faster one reorders the board live.
    submit(&stack, "laps", "cat", 60).await;
    let next = sub
        .wait_for(Duration::from_secs(10), |e| {
            (e.event == "update").then_some(e.json())
        })
        .await
        .expect("an update")
        .0;
    assert_eq!(
        standings(&next),
        [("cat".to_owned(), 60, 1), ("bob".to_owned(), 65, 2)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rank_and_around_me_follow_the_order_and_the_tie_break() {
    let stack = Stack::start().await.unwrap();
    stack
        .post_json_answer("/boards/", json!({"id": "b", "top": 10}))
        .await;
    let ids = ["a", "b", "c", "d", "e", "f", "g"];
    add_players(&stack, "b", &ids).await;
    // Scores 30, 20, 20, 20, 10, 10, 0: ties broken the same way everywhere.
    for (id, score) in [
        ("a", 30),
        ("b", 20),
        ("c", 20),
        ("d", 20),
        ("e", 10),
        ("f", 10),
    ] {
        submit(&stack, "b", id, score).await;
    }
    let (_, board) = stack.get_json("/boards/b/").await;
    let order = standings(&board);
    assert_eq!(order.len(), 7);
    for (i, (id, score, rank)) in order.iter().enumerate() {
        assert_eq!(*rank, i as u64 + 1);
        let (_, p) = stack.get_json(&format!("/boards/b/players/{id}/")).await;
        assert_eq!(
            (&p["score"], &p["rank"]),
            (&json!(score), &json!(rank)),
            "{id}"
        );
    }
    let scores: Vec<i64> = order.iter().map(|p| p.1).collect();
    assert_eq!(scores, [30, 20, 20, 20, 10, 10, 0]);

    // Around the middle one of the three 20s.
    let middle = &order[2].0;
    let (status, around) = stack
        .get_json(&format!("/boards/b/players/{middle}/around/?n=2"))
        .await;
    assert_eq!(status, 200, "{around}");
    assert_eq!(standings(&around), order[0..5].to_vec());
    assert_eq!(around["player"]["rank"], 3);
    // At the edges, and with n=0.
    let (_, top) = stack
        .get_json(&format!("/boards/b/players/{}/around/?n=3", order[0].0))
        .await;
    assert_eq!(standings(&top), order[0..4].to_vec());
    let (_, last) = stack
        .get_json(&format!("/boards/b/players/{}/around/", order[6].0))
        .await;
    assert_eq!(standings(&last), order[4..7].to_vec());
    let (_, alone) = stack
        .get_json(&format!("/boards/b/players/{middle}/around/?n=0"))
        .await;
    assert_eq!(standings(&alone), order[2..3].to_vec());

    // An ascending board ranks the other way round.
    stack
        .post_json_answer(
            "/boards/",
            json!({"id": "asc", "order": "asc", "operator": "set"}),
        )
        .await;
    add_players(&stack, "asc", &["x", "y", "z"]).await;
    for (id, score) in [("x", 3), ("y", 1), ("z", 2)] {
        submit(&stack, "asc", id, score).await;
    }
    let (_, around) = stack.get_json("/boards/asc/players/z/around/?n=1").await;
    assert_eq!(
        standings(&around),
        [
            ("y".to_owned(), 1, 1),
            ("z".to_owned(), 2, 2),
            ("x".to_owned(), 3, 3)
        ]
    );

    for bad in ["?n=51", "?n=-1", "?n=x"] {
        let (status, body) = stack
            .get_json(&format!("/boards/b/players/a/around/{bad}"))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(
        stack.get_json("/boards/b/players/nobody/around/").await.0,
        404
    );
    assert_eq!(
        stack.get_json("/boards/none/players/a/around/").await.0,
        404
    );
    assert_eq!(stack.get_json("/boards/none/players/a/").await.0, 404);
}

/// Walks a board a page at a time; returns every player seen, in order.
async fn walk(stack: &Stack, board: &str, limit: usize) -> Vec<(String, i64, u64)> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/boards/{board}/players/?limit={limit}"),
            Some(c) => format!("/boards/{board}/players/?limit={limit}&cursor={c}"),
        };
        let (status, page) = stack.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(standings(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_walk_the_board_in_rank_order() {
    let stack = Stack::start().await.unwrap();
    stack
        .post_json_answer(
            "/boards/",
            json!({"id": "b", "operator": "set", "top": 100}),
        )
        .await;
    let ids: Vec<String> = (0..23).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    add_players(&stack, "b", &refs).await;
    for (i, id) in ids.iter().enumerate() {
        // Many ties: scores 0..=4.
        submit(&stack, "b", id, (i % 5) as i64).await;
    }
    let (_, board) = stack.get_json("/boards/b/").await;
    let whole = standings(&board);
    assert_eq!(whole.len(), 23);
    for limit in [1, 4, 5, 23, 100] {
        assert_eq!(walk(&stack, "b", limit).await, whole, "limit {limit}");
    }
    for bad in ["?cursor=nope", "?cursor=", "?limit=0", "?limit=1001"] {
        let (status, body) = stack.get_json(&format!("/boards/b/players/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(stack.get_json("/boards/none/players/").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_while_others_write_misses_and_repeats_only_the_players_who_moved() {
    let stack = Stack::start().await.unwrap();
    stack
        .post_json_answer("/boards/", json!({"id": "b", "operator": "set"}))
        .await;
    let ids: Vec<String> = (0..60).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    add_players(&stack, "b", &refs).await;
    for (i, id) in ids.iter().enumerate() {
        submit(&stack, "b", id, (i * 7 % 50) as i64).await;
    }
    // A writer moves the players p00..p19 up and down the board while the
    // walk goes on; p20..p59 keep their scores.
    let writer = {
        let client = stack.client.clone();
        let base = stack.url("/boards/b/players");
        tokio::spawn(async move {
            for round in 0..200i64 {
                let id = format!("p{:02}", round % 20);
                let _ = client
                    .post(format!("{base}/{id}/score/"))
                    .json(&json!({ "value": (round * 13) % 60 }))
                    .send()
                    .await;
            }
        })
    };
    let mut walks = 0;
    while !writer.is_finished() || walks == 0 {
        let seen = walk(&stack, "b", 4).await;
        let steady: Vec<&String> = seen
            .iter()
            .map(|p| &p.0)
            .filter(|id| id.as_str() >= "p20")
            .collect();
        let unique: BTreeSet<&String> = steady.iter().copied().collect();
        assert_eq!(
            steady.len(),
            unique.len(),
            "a steady player twice: {seen:?}"
        );
        assert_eq!(unique.len(), 40, "a steady player missed: {seen:?}");
        walks += 1;
    }
    writer.await.unwrap();
    assert!(walks >= 1);
}
