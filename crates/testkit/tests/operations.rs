//! Operations: health, readiness and Prometheus metrics of both processes,
//! and graceful shutdown on SIGTERM (Heroku sends SIGTERM, then SIGKILL
//! after 30 s).

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{free_port, Stack, StackOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn text(stack: &Stack, url: String) -> (u16, String) {
    let resp = stack.client.get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value of the first sample line starting with `prefix`.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_of_the_origin() {
    let stack = Stack::start().await.unwrap();
    stack.create_board("m", &[("a", "Ann")]).await;
    stack.score_add("m", "a", 1).await;
    assert_eq!(stack.get("/boards/nope/").await.status(), 404);

    assert_eq!(
        text(&stack, stack.url("/healthz")).await,
        (200, json!({"status": "ok"}).to_string())
    );
    assert_eq!(text(&stack, stack.url("/readyz")).await.0, 200);
    let (status, metrics) = text(&stack, stack.origin_url("/metrics")).await;
    assert_eq!(status, 200);
    let ok = r#"leaderboard_web_http_requests_total{method="POST",route="/boards/{board}/players/{player}/score-add/",status="200"}"#;
    assert_eq!(sample(&metrics, ok), 1.0);
    let missing = r#"leaderboard_web_http_requests_total{method="GET",route="/boards/{board}/",status="404"}"#;
    assert_eq!(sample(&metrics, missing), 1.0);
    assert!(metrics.contains("leaderboard_web_http_request_duration_seconds_bucket"));

    stack.cut_database();
    assert_eq!(text(&stack, stack.url("/readyz")).await.0, 503);
    assert_eq!(
        text(&stack, stack.url("/healthz")).await.0,
        200,
        "liveness does not depend on the database"
    );
    assert_eq!(stack.get("/boards/m/").await.status(), 503);
    let (_, metrics) = text(&stack, stack.origin_url("/metrics")).await;
    assert!(
        sample(
            &metrics,
            r#"leaderboard_web_database_errors_total{kind="unavailable"}"#
        ) >= 2.0
    );
    stack.restore_database();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_of_the_worker() {
    let port = free_port();
    let stack = Stack::start_with(StackOptions {
        worker_env: vec![("STATUS_PORT".into(), port.to_string())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let status_url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert_eq!(text(&stack, status_url("/healthz")).await.0, 200);

    stack.create_board("w", &[("a", "Ann")]).await;
    let mut sub = stack.subscribe("w").await;
    sub.next(Duration::from_secs(2)).await.unwrap();
    stack.score_add("w", "a", 2).await;
    sub.wait_for(Duration::from_secs(2), |e| {
        (e.json()["players"][0]["score"] == 2).then_some(())
    })
    .await
    .unwrap();
    let (_, metrics) = text(&stack, status_url("/metrics")).await;
    assert!(sample(&metrics, "dblistener_changes_consumed_total") >= 3.0);
    assert!(sample(&metrics, "dblistener_publishes_total") >= 1.0);
    assert!(sample(&metrics, "dblistener_publish_lag_seconds_count") >= 1.0);
    assert_eq!(sample(&metrics, "dblistener_feed_ready"), 1.0);

    stack.cut_database();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while text(&stack, status_url("/healthz")).await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker kept reporting healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.restore_database();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while text(&stack, status_url("/healthz")).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = text(&stack, status_url("/metrics")).await;
    assert!(sample(&metrics, "dblistener_feed_reconnects_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_origin_finish_in_flight_requests() {
    let mut stack = Stack::start().await.unwrap();
    stack.create_board("g", &[("a", "Ann")]).await;
    // A request whose body is still arriving when SIGTERM lands.
    let body = json!({"value": 5}).to_string();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", stack.web_port())).unwrap();
    let head = format!(
        "POST /boards/g/players/a/score-add/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body.as_bytes()[..3]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stack.web().unwrap().signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    conn.write_all(&body.as_bytes()[3..]).unwrap();
    let mut response = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""score":5"#), "{response}");
    // It then exits on its own, cleanly, well within Heroku's 30 s.
    let started = std::time::Instant::now();
    let status = stack.stop_web().expect("exited by itself");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // New connections are refused meanwhile; the data is there.
    let session = stack.db_session().await;
    let doc: Value = unreql::r
        .table("players")
        .get("g:a")
        .exec(&session)
        .await
        .unwrap();
    assert_eq!(doc["score"], 5);
}

/// A GRIP endpoint that answers each publish after `delay` and records the
/// bodies it received.
async fn slow_publish_endpoint(
    delay: Duration,
) -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, String)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            tokio::time::sleep(delay).await;
                            let _ = conn
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nPublished\n",
                                )
                                .await;
                            let _ = tx.send((std::time::Instant::now(), body.to_owned()));
                            buf.clear();
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_worker_finish_its_current_publish() {
    let mut stack = Stack::start().await.unwrap();
    stack.create_board("t", &[("a", "Ann")]).await;
    let (port, mut published) = slow_publish_endpoint(Duration::from_millis(1500)).await;
    stack.kill_worker();
    stack.set_worker_env("GRIP_URL", &format!("http://127.0.0.1:{port}"));
    stack.start_worker().await.unwrap();
    // The restart republishes every board (once its predecessor's leases
    // have expired); then a change starts a publish that is in flight when
    // the signal comes.
    let (_, body) = published.recv().await.expect("the republish");
    assert!(body.contains("leaderboard-t"), "{body}");
    stack.score_add("t", "a", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worker = stack.worker().unwrap();
    worker.signal("TERM");
    let signalled = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| worker.stop(Duration::from_secs(10)))
        .expect("exited by itself");
    let exited = std::time::Instant::now();
    assert!(status.success(), "{status}");
    let (answered, body) = published.recv().await.expect("the publish completed");
    assert!(body.contains("leaderboard-t"), "{body}");
    // It waited for the publish's answer before exiting.
    assert!(answered <= exited, "exited before the publish was answered");
    assert!(exited.duration_since(signalled) >= Duration::from_millis(900));
}
