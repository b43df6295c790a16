//! `Idempotency-Key` on score-add, through real Pushpin: a retry with the
//! same key on the same player returns the first answer and counts once,
//! whatever server runs underneath.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::Stack;
use unreql::r;

const KEY: &str = "Idempotency-Key";

async fn keyed_add(
    stack: &Stack,
    board: &str,
    player: &str,
    key: &str,
    value: i64,
) -> (u16, Value) {
    let resp = stack
        .client
        .post(stack.url(&format!("/boards/{board}/players/{player}/score-add/")))
        .header(KEY, key)
        .json(&json!({ "value": value }))
        .send()
        .await
        .expect("POST through Pushpin");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

async fn score_of(stack: &Stack, board: &str, player: &str) -> i64 {
    let resp = stack
        .get(&format!("/boards/{board}/players/{player}/"))
        .await;
    assert_eq!(resp.status(), 200);
    let player: Value = resp.json().await.unwrap();
    player["score"].as_i64().expect("a score")
}

/// The player's document as stored, read straight from the database.
async fn stored(stack: &Stack, board: &str, player: &str) -> Value {
    let session = stack.db_session().await;
    let doc: Value = r
        .table(store::PLAYERS)
        .get(format!("{board}:{player}"))
        .exec(&session)
        .await
        .expect("read the player");
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_with_the_same_key_returns_the_first_answer_and_counts_once() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("ann", "Ann")]).await;
    stack.score_add("b", "ann", 3).await;

    let (status, first) = keyed_add(&stack, "b", "ann", "retry-1", 5).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first, json!({"id": "ann", "name": "Ann", "score": 8}));

    // Another increment in between: the retry still answers what the first
    // attempt produced.
    stack.score_add("b", "ann", 1).await;
    let (status, again) = keyed_add(&stack, "b", "ann", "retry-1", 5).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);

    assert_eq!(score_of(&stack, "b", "ann").await, 9);
    assert_eq!(stored(&stack, "b", "ann").await["score"], 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn different_keys_and_other_players_each_count() {
    let stack = Stack::start().await.unwrap();
    stack
        .create_board("b", &[("ann", "Ann"), ("bob", "Bob")])
        .await;

    let (_, a) = keyed_add(&stack, "b", "ann", "k1", 2).await;
    let (_, b) = keyed_add(&stack, "b", "ann", "k2", 2).await;
    assert_eq!(
        (a["score"].as_i64(), b["score"].as_i64()),
        (Some(2), Some(4))
    );
    // The same key on another player is another request.
    let (status, c) = keyed_add(&stack, "b", "bob", "k1", 7).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["score"], 7);

    assert_eq!(score_of(&stack, "b", "ann").await, 4);
    assert_eq!(score_of(&stack, "b", "bob").await, 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_every_request_counts_and_answers_as_before() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("ann", "Ann")]).await;
    stack.score_add("b", "ann", 1).await;
    let answer = stack.score_add("b", "ann", 1).await;
    assert_eq!(answer, json!({"id": "ann", "name": "Ann", "score": 2}));
    assert!(stored(&stack, "b", "ann").await.get("idem").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_key_is_refused_with_400() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("ann", "Ann")]).await;
    let too_long = "k".repeat(129);
    for bad in ["has space", "tab\tkey", "caf\u{e9}", too_long.as_str()] {
        let (status, body) = keyed_add(&stack, "b", "ann", bad, 1).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"], "bad_request", "{body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains(KEY)));
    }
    // Pushpin drops an empty header on the way; the origin refuses it.
    let resp = stack
        .client
        .post(stack.origin_url("/boards/b/players/ann/score-add/"))
        .header(KEY, "")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (status, _) = keyed_add(&stack, "b", "ann", &"k".repeat(128), 1).await;
    assert_eq!(status, 200);
    let (status, _) = keyed_add(&stack, "b", "ann", "!~azAZ09-_.:", 1).await;
    assert_eq!(status, 200);
    assert_eq!(score_of(&stack, "b", "ann").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_with_one_key_count_once() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("ann", "Ann")]).await;
    let answers =
        futures::future::join_all((0..20).map(|_| keyed_add(&stack, "b", "ann", "storm", 10)))
            .await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["score"], 10, "{body}");
    }
    assert_eq!(score_of(&stack, "b", "ann").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_publishes_nothing() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("ann", "Ann")]).await;
    let mut sub = stack.subscribe("b").await;
    sub.next(Duration::from_secs(2)).await.unwrap();

    keyed_add(&stack, "b", "ann", "once", 4).await;
    sub.wait_for(Duration::from_secs(3), |e| {
        (e.json()["players"][0]["score"] == 4).then_some(())
    })
    .await
    .unwrap();
    let (status, _) = keyed_add(&stack, "b", "ann", "once", 4).await;
    assert_eq!(status, 200);
    let events = sub.drain(Duration::from_secs(1)).await;
    let updates: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "update")
        .map(|e| e.json())
        .collect();
    assert!(updates.is_empty(), "a replay published {updates:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_player_keeps_a_bounded_list_of_keys() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("ann", "Ann")]).await;
    let kept = store::reql::IDEMPOTENCY_KEYS_KEPT;
    let total = kept + 6;
    for i in 0..total {
        let (status, body) = keyed_add(&stack, "b", "ann", &format!("key-{i}"), 1).await;
        assert_eq!(status, 200, "{body}");
    }
    let doc = stored(&stack, "b", "ann").await;
    let keys: Vec<&str> = doc["idem"]
        .as_array()
        .expect("the recent keys")
        .iter()
        .map(|e| e["k"].as_str().unwrap())
        .collect();
    let newest: Vec<String> = (total - kept..total).map(|i| format!("key-{i}")).collect();
    assert_eq!(keys, newest, "the newest {kept} keys, oldest first");

    // The newest still replay; the oldest, forgotten, counts again.
    let (_, replay) = keyed_add(&stack, "b", "ann", &format!("key-{}", total - 1), 1).await;
    assert_eq!(replay["score"], total as i64);
    let (_, forgotten) = keyed_add(&stack, "b", "ann", "key-0", 1).await;
    assert_eq!(forgotten["score"], total as i64 + 1);
}
