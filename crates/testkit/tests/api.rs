//! The HTTP API through real Pushpin, on the dev server or on a real
//! RethinkDB (`RETHINKDB_URL`): reads, writes, and every error case.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::Stack;

async fn body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}, body is not JSON: {text:?}"));
    (status, value)
}

/// An error answer: the status, JSON with `error` and a `message`.
async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (got, value) = body(resp).await;
    assert_eq!(got, status, "{value}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(value["error"], code, "{value}");
    assert!(
        value["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{value}"
    );
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn board_json_lists_the_top_five_highest_first_with_stable_ties() {
    let stack = Stack::start().await.unwrap();
    stack
        .create_board(
            "b1",
            &[
                ("p1", "Ann"),
                ("p2", "Ben"),
                ("p3", "Cat"),
                ("p4", "Dan"),
                ("p5", "Eve"),
                ("p6", "Fay"),
                ("p7", "Gus"),
            ],
        )
        .await;
    for (player, value) in [
        ("p1", 5),
        ("p2", 9),
        ("p3", 9),
        ("p4", 1),
        ("p5", 7),
        ("p6", 3),
        ("p7", 0),
    ] {
        if value != 0 {
            stack.score_add("b1", player, value).await;
        }
    }
    let (status, board) = body(stack.get("/boards/b1/").await).await;
    assert_eq!(status, 200);
    assert_eq!(board["id"], "b1");
    let players = testkit::scores(&board);
    // Ties (p2, p3 at 9) come out in one fixed order: descending id.
    assert_eq!(
        players,
        vec![
            ("p3".into(), 9),
            ("p2".into(), 9),
            ("p5".into(), 7),
            ("p1".into(), 5),
            ("p6".into(), 3)
        ]
    );
    assert_eq!(board["players"][0]["name"], "Cat");

    // The same path without the trailing slash.
    let (status, again) = body(stack.get("/boards/b1").await).await;
    assert_eq!((status, &again), (200, &board));

    // Every reader sees the same order.
    for _ in 0..3 {
        assert_eq!(body(stack.get("/boards/b1/").await).await.1, board);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn players_and_board_lists() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("alpha", &[("a1", "Ann")]).await;
    stack.create_board("beta", &[]).await;

    let (status, player) = body(stack.get("/boards/alpha/players/a1/").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        player,
        json!({"id": "a1", "name": "Ann", "score": 0, "rank": 1, "out_of": 1, "percentile": 100.0})
    );
    let (_, player) = body(stack.get("/boards/alpha/players/a1").await).await;
    assert_eq!(player["id"], "a1");

    let (status, list) = body(stack.get("/boards/").await).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["boards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["alpha", "beta"]);
    let (_, list) = body(stack.get("/boards").await).await;
    assert_eq!(list["boards"].as_array().unwrap().len(), 2);

    let (status, players) = body(stack.get("/boards/alpha/players/").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        players["players"],
        json!([{"id": "a1", "name": "Ann", "score": 0, "rank": 1, "percentile": 100.0}])
    );
    assert_eq!(players["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn score_add_takes_one_a_json_value_or_a_form_value() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("p", "Pat")]).await;
    let path = "/boards/b/players/p/score-add/";

    let (status, p) = body(stack.post_empty(path).await).await;
    assert_eq!((status, p["score"].as_i64()), (200, Some(1)));
    let (_, p) = body(stack.post_json(path, json!({"value": 10})).await).await;
    assert_eq!(p["score"], 11);
    let form = stack
        .client
        .post(stack.url(path))
        .form(&[("value", "-4")])
        .send()
        .await
        .unwrap();
    let (_, p) = body(form).await;
    assert_eq!(p, json!({"id": "p", "name": "Pat", "score": 7}));
    // Without the trailing slash too.
    let (status, p) = body(stack.post_empty("/boards/b/players/p/score-add").await).await;
    assert_eq!((status, p["score"].as_i64()), (200, Some(8)));

    // What the database holds afterwards.
    let session = stack.db_session().await;
    let doc: Value = unreql::r
        .table("players")
        .get("b:p")
        .exec(&session)
        .await
        .unwrap();
    assert_eq!(doc["score"], 8);
    assert_eq!(doc["board"], "b");
    assert_eq!(doc["player"], "p");
}

#[tokio::test(flavor = "multi_thread")]
async fn player_ids_belong_to_their_board() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("daily", &[("alice", "Alice")]).await;
    stack.create_board("weekly", &[("alice", "Alice W")]).await;
    stack.score_add("daily", "alice", 3).await;
    let (_, daily) = body(stack.get("/boards/daily/players/alice/").await).await;
    let (_, weekly) = body(stack.get("/boards/weekly/players/alice/").await).await;
    assert_eq!(
        (daily["score"].as_i64(), weekly["score"].as_i64()),
        (Some(3), Some(0))
    );
    assert_eq!(weekly["name"], "Alice W");
    assert_eq!(
        stack.delete("/boards/daily/players/alice/").await.status(),
        204
    );
    let (status, _) = body(stack.get("/boards/weekly/players/alice/").await).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn boards_and_players_are_created_and_deleted() {
    let stack = Stack::start().await.unwrap();

    // A board with a generated id.
    let resp = stack.post_json("/boards/", json!({"name": "Weekly"})).await;
    let location = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (status, board) = body(resp).await;
    assert_eq!(status, 201);
    let id = board["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/boards/{id}/"));
    assert_eq!(
        board,
        json!({
            "id": id,
            "name": "Weekly",
            "rules": {"order": "desc", "operator": "incr", "top": 5},
            "players": [],
        })
    );
    // A board with no body at all.
    let (status, unnamed) = body(stack.post_empty("/boards/").await).await;
    assert_eq!(status, 201);
    assert_eq!(unnamed["name"], "");

    // A player with a generated id.
    let (status, player) = body(
        stack
            .post_json(&format!("/boards/{id}/players/"), json!({"name": "  Zoe "}))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(player["name"], "Zoe");
    assert_eq!(player["score"], 0);
    let pid = player["id"].as_str().unwrap().to_owned();
    let (status, fetched) = body(stack.get(&format!("/boards/{id}/players/{pid}/")).await).await;
    let mut ranked = player.clone();
    ranked["rank"] = json!(1);
    ranked["out_of"] = json!(1);
    ranked["percentile"] = json!(100.0);
    assert_eq!((status, &fetched), (200, &ranked));

    // Duplicate ids conflict.
    stack.create_board("fixed", &[("same", "One")]).await;
    assert_error(
        stack.post_json("/boards/", json!({"id": "fixed"})).await,
        409,
        "conflict",
    )
    .await;
    assert_error(
        stack
            .post_json(
                "/boards/fixed/players/",
                json!({"id": "same", "name": "Two"}),
            )
            .await,
        409,
        "conflict",
    )
    .await;

    // Deleting a player.
    let resp = stack.delete(&format!("/boards/{id}/players/{pid}/")).await;
    assert_eq!(resp.status(), 204);
    assert_error(
        stack.get(&format!("/boards/{id}/players/{pid}/")).await,
        404,
        "player_not_found",
    )
    .await;
    assert_error(
        stack.delete(&format!("/boards/{id}/players/{pid}/")).await,
        404,
        "player_not_found",
    )
    .await;

    // Deleting a board deletes its players.
    for n in 0..3 {
        stack
            .post_json("/boards/fixed/players/", json!({"name": format!("P{n}")}))
            .await;
    }
    let resp = stack.delete("/boards/fixed/").await;
    assert_eq!(resp.status(), 204);
    assert_error(stack.get("/boards/fixed/").await, 404, "board_not_found").await;
    assert_error(
        stack.get("/boards/fixed/players/same/").await,
        404,
        "board_not_found",
    )
    .await;
    assert_error(stack.delete("/boards/fixed").await, 404, "board_not_found").await;
    let session = stack.db_session().await;
    let left: Vec<Value> = unreql::r
        .table("players")
        .filter(json!({"board": "fixed"}))
        .exec_to_vec(&session)
        .await
        .unwrap();
    assert!(left.is_empty(), "orphaned players: {left:?}");
    let boards: Vec<Value> = unreql::r
        .table("boards")
        .exec_to_vec(&session)
        .await
        .unwrap();
    assert_eq!(boards.len(), 2, "{boards:?}");

    // A player can't be added to a board that does not exist.
    assert_error(
        stack
            .post_json("/boards/fixed/players/", json!({"name": "Late"}))
            .await,
        404,
        "board_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_is_a_clear_json_4xx() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("p", "Pat")]).await;
    let add = "/boards/b/players/p/score-add/";

    // Missing things.
    assert_error(stack.get("/boards/nope/").await, 404, "board_not_found").await;
    assert_error(
        stack.get("/boards/nope/players/p/").await,
        404,
        "board_not_found",
    )
    .await;
    assert_error(
        stack.get("/boards/b/players/nope/").await,
        404,
        "player_not_found",
    )
    .await;
    assert_error(
        stack.post_empty("/boards/b/players/nope/score-add/").await,
        404,
        "player_not_found",
    )
    .await;
    assert_error(
        stack.post_empty("/boards/other/players/p/score-add/").await,
        404,
        "player_not_found",
    )
    .await;
    assert_error(stack.get("/nowhere").await, 404, "not_found").await;
    let sse = stack
        .client
        .get(stack.url("/boards/nope/"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_error(sse, 404, "board_not_found").await;

    // Wrong methods, with Allow.
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/boards/b/", "GET, DELETE"),
        (reqwest::Method::GET, add, "POST"),
        (reqwest::Method::PATCH, "/boards/", "GET, POST"),
        (reqwest::Method::POST, "/boards/b/players/p/", "GET, DELETE"),
    ] {
        let resp = stack
            .client
            .request(method.clone(), stack.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers().get("allow").unwrap(),
            allow,
            "{method} {path}"
        );
        assert_error(resp, 405, "method_not_allowed").await;
    }

    // Bad ids.
    for path in [
        "/boards/has%20space/",
        "/boards/semi;colon/",
        &format!("/boards/{}/", "x".repeat(65)),
    ] {
        assert_error(stack.get(path).await, 400, "invalid_input").await;
    }
    assert_error(
        stack
            .post_empty("/boards/b/players/bad%2Cid/score-add/")
            .await,
        400,
        "invalid_input",
    )
    .await;
    assert_error(
        stack
            .post_json("/boards/", json!({"id": "no spaces"}))
            .await,
        400,
        "invalid_input",
    )
    .await;

    // Bad values.
    for value in [
        json!(1.5),
        json!("5"),
        json!(null),
        json!(true),
        json!(9007199254740992u64),
        json!([1]),
    ] {
        let resp = stack.post_json(add, json!({"value": value})).await;
        let status = resp.status().as_u16();
        if value.is_null() {
            assert_eq!(status, 200, "null means the default, 1");
        } else {
            assert_eq!(status, 400, "{value}");
            let v: Value = resp.json().await.unwrap();
            assert!(v["message"].as_str().unwrap().contains("value"), "{v}");
        }
    }
    let form = stack
        .client
        .post(stack.url(add))
        .form(&[("value", "ten")])
        .send()
        .await
        .unwrap();
    assert_error(form, 400, "bad_request").await;
    assert_error(
        stack.post_json(add, json!({"vaule": 2})).await,
        400,
        "bad_request",
    )
    .await;
    let bad_json = stack
        .client
        .post(stack.url(add))
        .header("content-type", "application/json")
        .body("{\"value\":")
        .send()
        .await
        .unwrap();
    assert_error(bad_json, 400, "bad_request").await;
    assert_error(
        stack.post_json("/boards/b/players/", json!({})).await,
        400,
        "bad_request",
    )
    .await;
    assert_error(
        stack
            .post_json("/boards/b/players/", json!({"name": "x".repeat(101)}))
            .await,
        400,
        "invalid_input",
    )
    .await;
    assert_error(
        stack
            .post_json("/boards/b/players/", json!({"name": "   "}))
            .await,
        400,
        "invalid_input",
    )
    .await;

    // Wrong content type and oversized bodies.
    let text = stack
        .client
        .post(stack.url(add))
        .header("content-type", "text/plain")
        .body("value=3")
        .send()
        .await
        .unwrap();
    assert_error(text, 415, "unsupported_media_type").await;
    let huge = json!({"value": 1, "pad": "x".repeat(10_000)});
    assert_error(stack.post_json(add, huge).await, 413, "payload_too_large").await;

    // Nothing acceptable.
    let png = stack
        .client
        .get(stack.url("/boards/b/"))
        .header("Accept", "image/png")
        .send()
        .await
        .unwrap();
    assert_error(png, 406, "not_acceptable").await;

    // None of that changed the score beyond the one null (= 1) increment.
    let (_, p) = body(stack.get("/boards/b/players/p/").await).await;
    assert_eq!(p["score"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn score_out_of_range_is_refused_not_wrapped() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("p", "Pat")]).await;
    let add = "/boards/b/players/p/score-add/";
    let max = 9007199254740991i64;
    let (status, p) = body(stack.post_json(add, json!({"value": max})).await).await;
    assert_eq!((status, p["score"].as_i64()), (200, Some(max)));
    assert_error(
        stack.post_json(add, json!({"value": 1})).await,
        422,
        "score_out_of_range",
    )
    .await;
    let (_, p) = body(stack.get("/boards/b/players/p/").await).await;
    assert_eq!(p["score"], max);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_score_adds_lose_nothing() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("race", &[("p", "Pat")]).await;
    let url = stack.url("/boards/race/players/p/score-add/");
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let requests = (0..1000).map(|_| {
        let (client, url, refused) = (stack.client.clone(), url.clone(), &refused);
        async move {
            // Pushpin 1.36 answers 502 ("target unavailable") to part of a
            // burst of a thousand simultaneous new requests without
            // forwarding them; a client retries those, as it would.
            for _ in 0..50 {
                let resp = client.post(&url).send().await.unwrap();
                let status = resp.status();
                let text = resp.text().await.unwrap();
                if status == 502 {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                assert_eq!(status, 200, "{text}");
                return serde_json::from_str::<Value>(&text).unwrap()["score"]
                    .as_i64()
                    .unwrap();
            }
            panic!("still refused after 50 tries");
        }
    });
    let scores: Vec<i64> = futures::future::join_all(requests).await;
    // Each answer carries the score its own increment produced, so the
    // answers are exactly 1..=1000, each once: nothing lost, and no retried
    // request was applied twice.
    let distinct: BTreeSet<i64> = scores.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        1000,
        "retried after 502: {}",
        refused.into_inner()
    );
    assert_eq!(distinct.first(), Some(&1));
    assert_eq!(distinct.last(), Some(&1000));
    let (_, p) = body(stack.get("/boards/race/players/p/").await).await;
    assert_eq!(p["score"], 1000);
    let session = stack.db_session().await;
    let doc: Value = unreql::r
        .table("players")
        .get("race:p")
        .exec(&session)
        .await
        .unwrap();
    assert_eq!(doc["score"], 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_gives_503_and_recovers_on_its_own() {
    let mut stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("p", "Pat")]).await;
    stack.cut_database();
    for path in ["/boards/b/", "/boards/", "/boards/b/players/p/"] {
        let resp = stack.get(path).await;
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("1")
        );
        assert_error(resp, 503, "database_unavailable").await;
    }
    assert_error(
        stack.post_empty("/boards/b/players/p/score-add/").await,
        503,
        "database_unavailable",
    )
    .await;
    assert_error(stack.get("/readyz").await, 503, "database_unavailable").await;

    stack.restore_database();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = stack.post_empty("/boards/b/players/p/score-add/").await;
        if resp.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery: {}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, p) = body(stack.get("/boards/b/players/p/").await).await;
    assert_eq!((status, p["score"].as_i64()), (200, Some(1)));
    assert!(stack.web().unwrap().is_running());
}
