//! Reliable streams: event ids, resume with Last-Event-ID, GRIP recovery of
//! lost publishes, keep-alives, and coalescing, all through real Pushpin.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use testkit::{Stack, StackOptions};

fn top_score(e: &testkit::Event) -> Option<i64> {
    e.json()["players"][0]["score"].as_i64()
}

#[tokio::test(flavor = "multi_thread")]
async fn resuming_with_the_current_id_sends_nothing_until_a_change() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("r", &[("a", "Ann")]).await;
    let mut first = stack.subscribe("r").await;
    let snapshot = first.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(snapshot.id.len(), 16);

    // Same board, same id: a second reader computes the same version.
    let mut again = stack.subscribe("r").await;
    assert_eq!(
        again.next(Duration::from_secs(2)).await.unwrap().id,
        snapshot.id
    );

    // Resuming with the current id: nothing to send.
    let mut resumed = stack.subscribe_from("r", Some(&snapshot.id)).await;
    assert!(resumed.drain(Duration::from_millis(500)).await.is_empty());
    // The query-parameter form, for EventSource polyfills.
    let mut polyfill = testkit::Subscriber::connect(
        &stack.stream_client,
        &stack.url(&format!("/boards/r/?lastEventId={}", snapshot.id)),
        None,
    )
    .await
    .unwrap();
    assert!(polyfill.drain(Duration::from_millis(200)).await.is_empty());

    // A change reaches the resumed streams, with a new id.
    stack.score_add("r", "a", 3).await;
    for sub in [&mut resumed, &mut polyfill] {
        let (event, _) = sub
            .wait_for(Duration::from_secs(2), |e| {
                (top_score(e) == Some(3)).then(|| e.clone())
            })
            .await
            .unwrap();
        assert_ne!(event.id, snapshot.id);
    }

    // Resuming with an old id gets the current board at once.
    let mut stale = stack.subscribe_from("r", Some(&snapshot.id)).await;
    let now = stale.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(top_score(&now), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_and_recovery_answers_follow_grip_reliable_mode() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("h", &[("a", "Ann")]).await;
    let resp = stack
        .client
        .get(stack.origin_url("/boards/h/"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    let id = body
        .lines()
        .next()
        .unwrap()
        .strip_prefix("id: ")
        .unwrap()
        .to_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("grip-hold"), "stream");
    assert_eq!(
        header("grip-channel"),
        format!("leaderboard-h; prev-id={id}")
    );
    assert!(
        header("grip-link").starts_with("</boards/h/?recover=1>; rel=next; timeout="),
        "{}",
        header("grip-link")
    );
    assert!(
        header("grip-keep-alive").contains("timeout=20"),
        "{}",
        header("grip-keep-alive")
    );

    // Pushpin's recovery request with the current id: held again, no body.
    // Asked twice in a row, the answer is the same.
    for _ in 0..2 {
        let resp = stack
            .client
            .get(stack.origin_url("/boards/h/?recover=1"))
            .header("Grip-Last", format!("leaderboard-h; last-id={id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get("grip-hold").unwrap(), "stream");
        assert_eq!(resp.text().await.unwrap(), "");
    }
    // With a stale id: the current snapshot.
    let resp = stack
        .client
        .get(stack.origin_url("/boards/h/?recover=1"))
        .header("Grip-Last", "leaderboard-h; last-id=0000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), body);

    // For a deleted board: the deleted event, and no hold, so the stream ends.
    assert_eq!(stack.delete("/boards/h/").await.status(), 204);
    let resp = stack
        .client
        .get(stack.origin_url("/boards/h/?recover=1"))
        .header("Grip-Last", format!("leaderboard-h; last-id={id}"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("grip-hold").is_none());
    assert_eq!(
        resp.text().await.unwrap(),
        "event: deleted\ndata: {\"id\":\"h\"}\n\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_publish_is_repaired_without_the_client_reconnecting() {
    let mut stack = Stack::start().await.unwrap();
    stack.create_board("lost", &[("a", "Ann")]).await;
    let mut sub = stack.subscribe("lost").await;
    let first = sub.next(Duration::from_secs(2)).await.unwrap();

    // The worker dies; a change happens that nobody publishes.
    stack.kill_worker();
    stack.score_add("lost", "a", 7).await;
    assert!(sub.drain(Duration::from_millis(300)).await.is_empty());

    // Any later publish whose prev-id does not follow what the stream has
    // makes Pushpin ask the origin, which answers with the current board.
    let publish = json!({"items": [{
        "channel": "leaderboard-lost", "id": "ffffffffffffffff", "prev-id": "eeeeeeeeeeeeeeee",
        "formats": {"http-stream": {"content": "event: update\ndata: {\"bogus\":true}\n\n"}}
    }]});
    let resp = stack
        .client
        .post(format!("{}/publish/", stack.pushpin.grip_url()))
        .json(&publish)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (event, seen) = sub
        .wait_for(Duration::from_secs(3), |e| {
            (top_score(e) == Some(7)).then(|| e.clone())
        })
        .await
        .unwrap();
    assert_ne!(event.id, first.id);
    assert!(seen.iter().all(|e| !e.data.contains("bogus")), "{seen:?}");
    assert!(!sub.is_closed());

    // A restarted worker republishes everything: still the right board.
    stack.start_worker().await.unwrap();
    stack.score_add("lost", "a", 1).await;
    sub.wait_for(Duration::from_secs(3), |e| {
        (top_score(e) == Some(8)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_streams_get_keep_alive_comments() {
    let stack = Stack::start_with(StackOptions {
        web_env: vec![("KEEP_ALIVE_SECS".into(), "1".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.create_board("k", &[]).await;
    let resp = stack
        .stream_client
        .get(stack.url("/boards/k/"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut bytes = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // After the snapshot event, the stream is idle; comments must follow.
    while text.matches(":\n\n").count() < 2 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let chunk = tokio::time::timeout(left, bytes.next())
            .await
            .unwrap_or_else(|_| panic!("no keep-alive in time; got {text:?}"))
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("id: "), "{text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_is_coalesced_and_ends_on_the_final_board() {
    let stack = Stack::start_with(StackOptions {
        publish_interval_ms: 200,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack
        .create_board("burst", &[("a", "Ann"), ("b", "Ben")])
        .await;
    let mut sub = stack.subscribe("burst").await;
    sub.next(Duration::from_secs(2)).await.unwrap();

    let started = tokio::time::Instant::now();
    let url_a = stack.url("/boards/burst/players/a/score-add/");
    let url_b = stack.url("/boards/burst/players/b/score-add/");
    let adds = (0..300).map(|i| {
        let client = stack.client.clone();
        let url = if i % 3 == 0 {
            url_b.clone()
        } else {
            url_a.clone()
        };
        async move { assert_eq!(client.post(url).send().await.unwrap().status(), 200) }
    });
    futures::stream::iter(adds)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let burst = started.elapsed();

    let final_board: Value = stack.get("/boards/burst/").await.json().await.unwrap();
    assert_eq!(final_board["players"][0]["score"], 200);
    assert_eq!(final_board["players"][1]["score"], 100);
    let (_, events) = sub
        .wait_for(Duration::from_secs(3), |e| {
            (e.json() == final_board).then_some(())
        })
        .await
        .unwrap();
    // At most one publish per 200 ms interval during the burst, plus the
    // leading and trailing ones.
    let allowed = (burst.as_millis() / 200) as usize + 3;
    assert!(
        events.len() <= allowed,
        "{} events for a {burst:?} burst (allowed {allowed})",
        events.len()
    );
    // Nothing after the final board.
    assert!(sub.drain(Duration::from_millis(500)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_below_the_top_five_publishes_nothing() {
    let stack = Stack::start().await.unwrap();
    let players: Vec<(String, String)> =
        (0..7).map(|i| (format!("p{i}"), format!("P{i}"))).collect();
    let refs: Vec<(&str, &str)> = players
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    stack.create_board("deep", &refs).await;
    for i in 0..5 {
        stack.score_add("deep", &format!("p{i}"), 100 + i).await;
    }
    let mut sub = stack.subscribe("deep").await;
    sub.next(Duration::from_secs(2)).await.unwrap();
    // p6 stays below the top five.
    stack.score_add("deep", "p6", 1).await;
    assert!(sub.drain(Duration::from_millis(600)).await.is_empty());
    // A change inside it is published.
    stack.score_add("deep", "p0", 1).await;
    sub.wait_for(Duration::from_secs(2), |e| {
        e.json()["players"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "p0" && p["score"] == 101)
            .then_some(())
    })
    .await
    .unwrap();
}
