//! Server-Sent Events through real Pushpin: the snapshot at once, then the
//! worker's updates.

use std::time::Duration;

use serde_json::json;
use testkit::{scores, Stack};

#[tokio::test(flavor = "multi_thread")]
async fn subscriber_gets_the_snapshot_at_once_then_updates() {
    let stack = Stack::start().await.unwrap();
    stack
        .create_board("live", &[("a", "Ann"), ("b", "Ben")])
        .await;
    stack.score_add("live", "a", 2).await;

    let mut sub = stack.subscribe("live").await;
    assert_eq!(
        sub.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    let first = sub.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.event, "update");
    assert!(!first.id.is_empty());
    let board = first.json();
    assert_eq!(board["id"], "live");
    assert_eq!(scores(&board), vec![("a".into(), 2), ("b".into(), 0)]);

    let started = tokio::time::Instant::now();
    stack.score_add("live", "b", 5).await;
    let (board, _) = sub
        .wait_for(Duration::from_secs(2), |e| {
            let b = e.json();
            (scores(&b) == vec![("b".to_owned(), 5), ("a".to_owned(), 2)]).then_some(b)
        })
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(board["players"][0]["name"], "Ben");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_subscriber_of_a_board_converges_and_others_hear_nothing() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("one", &[("a", "Ann")]).await;
    stack.create_board("two", &[("z", "Zed")]).await;
    let mut subs = Vec::new();
    for _ in 0..5 {
        let mut s = stack.subscribe("one").await;
        s.next(Duration::from_secs(2)).await.unwrap();
        subs.push(s);
    }
    let mut other = stack.subscribe("two").await;
    other.next(Duration::from_secs(2)).await.unwrap();

    for _ in 0..10 {
        stack.score_add("one", "a", 1).await;
    }
    for sub in &mut subs {
        sub.wait_for(Duration::from_secs(3), |e| {
            (e.json()["players"][0]["score"] == 10).then_some(())
        })
        .await
        .unwrap();
    }
    assert!(other.drain(Duration::from_millis(300)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn players_joining_leaving_and_deleted_boards_reach_subscribers() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("b", &[("a", "Ann")]).await;
    let mut sub = stack.subscribe("b").await;
    sub.next(Duration::from_secs(2)).await.unwrap();

    let resp = stack
        .post_json("/boards/b/players/", json!({"id": "n", "name": "New"}))
        .await;
    assert_eq!(resp.status(), 201);
    sub.wait_for(Duration::from_secs(2), |e| {
        (e.json()["players"].as_array().unwrap().len() == 2).then_some(())
    })
    .await
    .unwrap();

    assert_eq!(stack.delete("/boards/b/players/a/").await.status(), 204);
    sub.wait_for(Duration::from_secs(2), |e| {
        (scores(&e.json()) == vec![("n".to_owned(), 0)]).then_some(())
    })
    .await
    .unwrap();

    assert_eq!(stack.delete("/boards/b/").await.status(), 204);
    let (deleted, _) = sub
        .wait_for(Duration::from_secs(2), |e| {
            (e.event == "deleted").then(|| e.json())
        })
        .await
        .unwrap();
    assert_eq!(deleted, json!({"id": "b"}));
    // Then the stream is closed.
    assert!(sub.next(Duration::from_secs(2)).await.is_err());
    assert!(sub.is_closed());
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_with_q_values_selects_the_stream() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("q", &[]).await;
    for (accept, stream) in [
        ("application/json;q=0.5, text/event-stream", true),
        ("text/event-stream;q=0.2, application/json", false),
        ("*/*", false),
        ("text/plain, text/event-stream;q=0.9, */*;q=0.1", true),
        ("text/html, text/event-stream;q=0.9, */*;q=0.1", false),
    ] {
        let resp = stack
            .stream_client
            .get(stack.url("/boards/q/"))
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{accept}");
        let ct = resp
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            ct.starts_with("text/event-stream"),
            stream,
            "{accept}: {ct}"
        );
        drop(resp);
    }
    // No Accept header at all: JSON (the original crashed here).
    let resp = stack
        .client
        .get(stack.url("/boards/q/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_origin_answers_streams_with_grip_instructions_and_holds_nothing() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("g", &[]).await;
    let resp = stack
        .client
        .get(stack.origin_url("/boards/g/"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("grip-hold").unwrap(), "stream");
    let channel = resp
        .headers()
        .get("grip-channel")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(channel.starts_with("leaderboard-g"), "{channel}");
    // The origin's own answer ends: Pushpin, not the origin, holds the stream.
    let body = tokio::time::timeout(Duration::from_secs(2), resp.text())
        .await
        .unwrap()
        .unwrap();
    assert!(
        body.starts_with("id: ") && body.contains("event: update\ndata: {"),
        "{body}"
    );
}
