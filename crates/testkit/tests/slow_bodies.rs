//! A request body sent too slowly: docs/security.md promises 408 once
//! BODY_TIMEOUT_SECS has passed without the whole body. A client of the
//! origin that stalls half-way gets 408 and a closed connection, and the
//! origin, held to one worker thread here, goes on serving others during and
//! after.
//!
//! Through Pushpin the origin never sees a half-sent body: Pushpin 1.36
//! reads a request's whole body (chunked or not) before it forwards the
//! request, so a slow client costs the origin nothing, and one that stalls
//! is held by Pushpin itself (until its client timeout, 30 minutes). The
//! second test shows what such a client observes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::{Stack, StackOptions};

/// The limit the tests set, and the margin they allow beyond it.
const LIMIT: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_secs(8);

async fn stack() -> Stack {
    let stack = Stack::start_with(StackOptions {
        worker: false,
        web_env: vec![
            ("BODY_TIMEOUT_SECS".into(), LIMIT.as_secs().to_string()),
            ("WEB_CONCURRENCY".into(), "1".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.create_board("b", &[("p", "Pat")]).await;
    stack
}

/// Sends the head of a score-add and half of its body, then nothing more,
/// and reads what comes back until the connection closes (or the margin
/// runs out). Returns the answer and how long it took.
fn stall_half_way(port: u16) -> (String, Duration) {
    let body = r#"{"value": 5}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /boards/b/players/p/score-add/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    conn.set_read_timeout(Some(LIMIT + MARGIN)).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let closed = conn.read_to_end(&mut answer);
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        closed.is_ok(),
        "the connection stayed open after {took:?} ({closed:?}); got so far: {answer:?}"
    );
    (answer, took)
}

fn assert_timed_out(answer: &str, took: Duration) {
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
    assert!(took < LIMIT + MARGIN, "took {took:?}");
}

async fn score(stack: &Stack, url: String) -> serde_json::Value {
    let resp = stack.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<serde_json::Value>().await.unwrap()["score"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_body_gets_408_from_the_origin_and_the_worker_stays_free() {
    let stack = stack().await;
    let port = stack.web_port();
    let stalled = tokio::task::spawn_blocking(move || stall_half_way(port));

    // While that client stalls, the origin's one worker serves others.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = stack
        .client
        .post(stack.origin_url("/boards/b/players/p/score-add/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let (answer, took) = stalled.await.unwrap();
    assert_timed_out(&answer, took);
    // The stalled increment never happened; the next request is served.
    assert_eq!(
        score(&stack, stack.origin_url("/boards/b/players/p/")).await,
        1
    );
    let resp = stack
        .client
        .post(stack.origin_url("/boards/b/players/p/score-add/"))
        .json(&serde_json::json!({"value": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        score(&stack, stack.origin_url("/boards/b/players/p/")).await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn through_pushpin_a_slow_body_is_buffered_and_others_are_served() {
    let stack = stack().await;
    let port: u16 = stack
        .pushpin
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("Pushpin's port");
    let body = r#"{"value": 5}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /boards/b/players/p/score-add/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();

    // Past the origin's limit, other clients are served...
    tokio::time::sleep(LIMIT + Duration::from_secs(1)).await;
    stack.score_add("b", "p", 2).await;
    assert_eq!(score(&stack, stack.url("/boards/b/players/p/")).await, 2);

    // ...and the slow body, once complete, reaches the origin whole.
    conn.write_all(&body.as_bytes()[body.len() / 2..]).unwrap();
    conn.set_read_timeout(Some(MARGIN)).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(score(&stack, stack.url("/boards/b/players/p/")).await, 7);
}
