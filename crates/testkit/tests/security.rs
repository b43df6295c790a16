//! Security: Grip-Sig, write authorization, CORS, time limits, and secrets
//! kept out of logs and error bodies.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::{PushpinOptions, Stack, StackOptions};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sig(key: &str, iss: &str, exp_offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    encode(
        &Header::default(),
        &json!({"iss": iss, "exp": now + exp_offset}),
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_are_held_only_for_requests_pushpin_signed() {
    let stack = Stack::start_with(StackOptions {
        pushpin: PushpinOptions {
            sig_key: "pushpin-signing-key-0123".into(),
            ..PushpinOptions::default()
        },
        web_env: env(&[
            ("GRIP_SIG_KEY", "pushpin-signing-key-0123"),
            ("GRIP_SIG_ISS", "pushpin"),
        ]),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.create_board("s", &[("a", "Ann")]).await;

    // Through Pushpin: signed, so held.
    let mut sub = stack.subscribe("s").await;
    assert_eq!(
        sub.next(Duration::from_secs(2)).await.unwrap().event,
        "update"
    );

    // Straight to the origin: absent, forged, expired, wrong issuer.
    let cases = [
        None,
        Some(sig("another-key", "pushpin", 600)),
        Some(sig("pushpin-signing-key-0123", "pushpin", -600)),
        Some(sig("pushpin-signing-key-0123", "mallory", 600)),
        Some("not.a.jwt".to_owned()),
    ];
    for token in cases {
        let mut req = stack
            .client
            .get(stack.origin_url("/boards/s/"))
            .header("Accept", "text/event-stream");
        if let Some(t) = &token {
            req = req.header("Grip-Sig", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{token:?}");
        assert!(resp.headers().get("grip-hold").is_none());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "stream_requires_proxy");
        assert!(body["message"].as_str().unwrap().contains("proxy"));
    }
    // A valid signature made with the same key works directly too.
    let resp = stack
        .client
        .get(stack.origin_url("/boards/s/"))
        .header("Accept", "text/event-stream")
        .header("Grip-Sig", sig("pushpin-signing-key-0123", "pushpin", 600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("grip-hold").unwrap(), "stream");
    // JSON reads need no signature.
    let resp = stack
        .client
        .get(stack.origin_url("/boards/s/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_need_a_key_or_a_write_token_and_reads_do_not() {
    let stack = Stack::start_with(StackOptions {
        web_env: env(&[
            ("WRITE_API_KEYS", "game-key-0123456789abcdef"),
            ("WRITE_JWT_KEY", "jwt-signing-secret-0123456789"),
        ]),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let key = "Bearer game-key-0123456789abcdef";

    // Without credentials: 401 with a challenge, and nothing written.
    let resp = stack.post_json("/boards/", json!({"id": "a"})).await;
    assert_eq!(resp.status(), 401);
    assert!(resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "unauthorized");
    let wrong = stack
        .client
        .post(stack.url("/boards/"))
        .header("Authorization", "Bearer wrong")
        .json(&json!({"id": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_credential"
    );
    assert_eq!(stack.get("/boards/a/").await.status(), 404);

    // With the API key.
    let ok = stack
        .client
        .post(stack.url("/boards/"))
        .header("Authorization", key)
        .json(&json!({"id": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let ok = stack
        .client
        .post(stack.url("/boards/a/players/"))
        .header("Authorization", key)
        .json(&json!({"id": "p", "name": "Pat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);

    // With a token from `leaderboard-web token`.
    let out = std::process::Command::new(testkit::binary(testkit::Binary::Web))
        .args(["token", "game-server-7", "60"])
        .env("WRITE_JWT_KEY", "jwt-signing-secret-0123456789")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let add = stack.url("/boards/a/players/p/score-add/");
    let resp = stack
        .client
        .post(&add)
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["score"], 1);
    // A token signed with another key, and one without the write scope.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = encode(
        &Header::default(),
        &json!({"sub": "x", "exp": now + 60, "scope": "write"}),
        &EncodingKey::from_secret(b"guessed-secret-0123"),
    )
    .unwrap();
    let unscoped = encode(
        &Header::default(),
        &json!({"sub": "x", "exp": now + 60}),
        &EncodingKey::from_secret(b"jwt-signing-secret-0123456789"),
    )
    .unwrap();
    for t in [forged, unscoped] {
        let resp = stack
            .client
            .post(&add)
            .header("Authorization", format!("Bearer {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // Deletes need it too.
    assert_eq!(stack.delete("/boards/a/players/p/").await.status(), 401);
    assert_eq!(stack.delete("/boards/a/").await.status(), 401);

    // Reads stay public.
    let board: Value = stack.get("/boards/a/").await.json().await.unwrap();
    assert_eq!(board["players"][0]["score"], 1);
    let mut sub = stack.subscribe("a").await;
    sub.next(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_lets_configured_origins_in() {
    let stack = Stack::start_with(StackOptions {
        web_env: env(&[("CORS_ALLOWED_ORIGINS", "https://game.example")]),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.create_board("c", &[("p", "Pat")]).await;
    let preflight = stack
        .client
        .request(
            reqwest::Method::OPTIONS,
            stack.url("/boards/c/players/p/score-add/"),
        )
        .header("Origin", "https://game.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "https://game.example"
    );
    let methods = preflight
        .headers()
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");

    let resp = stack
        .client
        .get(stack.url("/boards/c/"))
        .header("Origin", "https://game.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "https://game.example"
    );
    // Streams carry it too, through Pushpin.
    let resp = stack
        .stream_client
        .get(stack.url("/boards/c/"))
        .header("Origin", "https://game.example")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "https://game.example"
    );
    drop(resp);

    let other = stack
        .client
        .get(stack.url("/boards/c/"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off() {
    let stack = Stack::start().await.unwrap();
    // Headers that never finish: the origin closes the connection.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", stack.web_port())).unwrap();
    conn.write_all(b"GET /boards/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "held for {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_logs_and_error_bodies() {
    let db_secret = "dbpass-SECRET-d41d8c";
    let grip_secret = "gripkey-SECRET-8f00b2";
    let write_secret = "writekey-SECRET-0123456789";
    let jwt_secret = "jwtkey-SECRET-0123456789";
    let grip_url_env = |url: &str| format!("{url}?iss=realm&key={grip_secret}");
    let mut stack = Stack::start_with(StackOptions {
        db_password: Some(db_secret.into()),
        web_env: env(&[
            ("WRITE_API_KEYS", write_secret),
            ("WRITE_JWT_KEY", jwt_secret),
            ("RUST_LOG", "debug"),
        ]),
        worker_env: env(&[("RUST_LOG", "debug")]),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // The worker publishes with a JWT signed by the GRIP key (Pushpin
    // ignores publish auth, so this still delivers).
    stack.kill_worker();
    let grip = grip_url_env(&stack.pushpin.grip_url());
    stack.set_worker_env("GRIP_URL", &grip);
    stack.start_worker().await.unwrap();

    let auth = format!("Bearer {write_secret}");
    let resp = stack
        .client
        .post(stack.url("/boards/"))
        .header("Authorization", &auth)
        .json(&json!({"id": "z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let mut bodies = Vec::new();
    // Failures of every kind, including a database outage.
    bodies.push(
        stack
            .client
            .post(stack.url("/boards/"))
            .header("Authorization", "Bearer nope")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    stack.cut_database();
    bodies.push(stack.get("/boards/z/").await.text().await.unwrap());
    bodies.push(
        stack
            .client
            .post(stack.url("/boards/z/players/"))
            .header("Authorization", &auth)
            .json(&json!({"name": "n"}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    stack.restore_database();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A bad start-up configuration echoes nothing secret either.
    let out = std::process::Command::new(testkit::binary(testkit::Binary::Web))
        .env(
            "DATABASE_URL",
            format!("rethinkdb://admin:{db_secret}@host/bad-name"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    bodies.push(String::from_utf8_lossy(&out.stderr).into_owned());
    let out = std::process::Command::new(testkit::binary(testkit::Binary::Worker))
        .env("GRIP_URL", format!("ftp://x?key={grip_secret}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    bodies.push(String::from_utf8_lossy(&out.stderr).into_owned());

    let mut logs = String::new();
    for entry in std::fs::read_dir(stack.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(
        logs.contains("starting with"),
        "the processes logged their configuration"
    );
    for secret in [db_secret, grip_secret, write_secret, jwt_secret] {
        assert!(!logs.contains(secret), "{secret} leaked into a log");
        for body in &bodies {
            assert!(!body.contains(secret), "{secret} leaked into {body}");
        }
    }
}
