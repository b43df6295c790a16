//! An HTTP fuzz run through Pushpin: thousands of random and malformed
//! requests mixed with valid ones. Afterwards there must be no 5xx, no
//! panic, and exactly the data the valid requests alone produce.
//!
//! `FUZZ_SEED` replays a run; `FUZZ_REQUESTS` sets its size (default 4000).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use testkit::Stack;

const BOARDS: [&str; 3] = ["b0", "b1", "b2"];
const PLAYERS: [&str; 5] = ["p0", "p1", "p2", "p3", "p4"];

/// Path segments no route accepts as an id.
const BAD_IDS: [&str; 10] = [
    "a%20b",
    "%00",
    "%C3%BC",
    "a;b",
    "a,b",
    "%2F",
    "%ZZ",
    "%FF%FE",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "a%0Ab",
];

#[derive(Debug)]
enum Expect {
    /// A valid request: exactly this status.
    Status(u16),
    /// A malformed or hostile one: some 4xx.
    ClientError,
    /// Anything but a 5xx (reads of odd but harmless shapes).
    NotServerError,
}

struct Request {
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    expect: Expect,
    /// (board, player, delta) when this is a valid score-add.
    delta: Option<(usize, usize, i64)>,
}

/// Pushpin's request header buffer: a larger header block is refused by
/// closing the connection.
const PROXY_HEADER_LIMIT: usize = 8 * 1024;

/// The size of a request's header lines as sent.
fn header_bytes(headers: &[(String, String)]) -> usize {
    headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum()
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.gen_range(0..max);
    (0..len).map(|_| rng.gen()).collect()
}

fn junk_header_value(rng: &mut StdRng) -> String {
    let pool = [
        "",
        "*/*",
        "text/event-stream;q=abc",
        ";;;",
        "text/event-stream;q=2",
        "application/json;q=0",
        "a/b, c/d;q=0.5, */*;q=0.1",
        "\"quoted\"; x=\"y,z\"",
        "x".repeat(3000).as_str(),
        "text/*;q=0.001",
    ]
    .map(str::to_owned);
    let mut v = pool[rng.gen_range(0..pool.len())].clone();
    if rng.gen_bool(0.2) {
        v.push_str(&format!("{}", rng.gen::<u64>()));
    }
    v.retain(|c| c == '\t' || !c.is_control());
    v
}

fn make(rng: &mut StdRng) -> Request {
    let b = rng.gen_range(0..BOARDS.len());
    let p = rng.gen_range(0..PLAYERS.len());
    let add = format!("/boards/{}/players/{}/score-add/", BOARDS[b], PLAYERS[p]);
    let bad = BAD_IDS[rng.gen_range(0..BAD_IDS.len())];
    let json_ct = ("Content-Type".to_owned(), "application/json".to_owned());
    let form_ct = (
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    );
    let req = |method: reqwest::Method,
               path: String,
               headers: Vec<(String, String)>,
               body: Option<Vec<u8>>,
               expect: Expect| Request {
        method,
        path,
        headers,
        body,
        expect,
        delta: None,
    };
    match rng.gen_range(0..14) {
        // Valid score-adds in all three encodings.
        0 | 1 => {
            let v: i64 = rng.gen_range(-5..=10);
            let mut r = req(
                reqwest::Method::POST,
                add,
                vec![json_ct],
                Some(json!({"value": v}).to_string().into_bytes()),
                Expect::Status(200),
            );
            r.delta = Some((b, p, v));
            r
        }
        2 => {
            let v: i64 = rng.gen_range(-5..=10);
            let mut r = req(
                reqwest::Method::POST,
                add,
                vec![form_ct],
                Some(format!("value={v}").into_bytes()),
                Expect::Status(200),
            );
            r.delta = Some((b, p, v));
            r
        }
        3 => {
            let mut r = req(
                reqwest::Method::POST,
                add,
                vec![],
                None,
                Expect::Status(200),
            );
            r.delta = Some((b, p, 1));
            r
        }
        // Valid reads.
        4 => {
            let paths = [
                format!("/boards/{}/", BOARDS[b]),
                format!("/boards/{}/players/{}/", BOARDS[b], PLAYERS[p]),
                "/boards/".into(),
                format!("/boards/{}/players/", BOARDS[b]),
            ];
            req(
                reqwest::Method::GET,
                paths[rng.gen_range(0..paths.len())].clone(),
                vec![],
                None,
                Expect::Status(200),
            )
        }
        // Invalid bodies on real players.
        5 => {
            let bodies: [&[u8]; 12] = [
                br#"{"value": 1.5}"#,
                br#"{"value": "7"}"#,
                br#"{"value": 1e300}"#,
                br#"{"value": [1]}"#,
                br#"{"value": {}}"#,
                br#"{"value": 99999999999999999999999}"#,
                br#"{"valeu": 1}"#,
                b"{",
                b"[]",
                b"null",
                br#"{"value": 9007199254740992}"#,
                br#"{"value":1,"x":2}"#,
            ];
            let body = bodies[rng.gen_range(0..bodies.len())].to_vec();
            req(
                reqwest::Method::POST,
                add,
                vec![json_ct],
                Some(body),
                Expect::ClientError,
            )
        }
        6 => {
            let bodies = [
                "value=",
                "value=abc",
                "value=1&value=2",
                "value=1.0",
                "value=%FF",
                "other=1",
                "value=99999999999999999999",
            ];
            let body = bodies[rng.gen_range(0..bodies.len())].as_bytes().to_vec();
            req(
                reqwest::Method::POST,
                add,
                vec![form_ct],
                Some(body),
                Expect::ClientError,
            )
        }
        7 => {
            // Random bytes under a random or missing content type.
            let mut body = random_bytes(rng, 200);
            body.insert(0, b'#');
            let ct = [
                "text/plain",
                "application/xml",
                "multipart/form-data",
                "",
                "application/json",
            ][rng.gen_range(0..5)];
            let headers = if ct.is_empty() {
                vec![]
            } else {
                vec![("Content-Type".into(), ct.into())]
            };
            req(
                reqwest::Method::POST,
                add,
                headers,
                Some(body),
                Expect::ClientError,
            )
        }
        8 => {
            let big = vec![b'1'; rng.gen_range(5000..200_000)];
            req(
                reqwest::Method::POST,
                add,
                vec![json_ct],
                Some(big),
                Expect::ClientError,
            )
        }
        // Bad ids anywhere, any method.
        9 => {
            let methods = [
                reqwest::Method::GET,
                reqwest::Method::POST,
                reqwest::Method::DELETE,
                reqwest::Method::PUT,
            ];
            let paths = [
                format!("/boards/{bad}/"),
                format!("/boards/{bad}/players/"),
                format!("/boards/{}/players/{bad}/", BOARDS[b]),
                format!("/boards/{bad}/players/{}/score-add/", PLAYERS[p]),
                format!("/boards/{}/players/{bad}/score-add/", BOARDS[b]),
            ];
            let method = methods[rng.gen_range(0..methods.len())].clone();
            req(
                method,
                paths[rng.gen_range(0..paths.len())].clone(),
                vec![json_ct],
                Some(b"{\"value\":1,\"name\":\"x\"}".to_vec()),
                Expect::ClientError,
            )
        }
        // Missing boards and players.
        10 => {
            let paths = [
                "/boards/nope/".to_owned(),
                format!("/boards/{}/players/nope/", BOARDS[b]),
                format!("/boards/nope/players/{}/score-add/", PLAYERS[p]),
            ];
            let i = rng.gen_range(0..paths.len());
            let method = if i == 2 {
                reqwest::Method::POST
            } else {
                reqwest::Method::GET
            };
            req(method, paths[i].clone(), vec![], None, Expect::Status(404))
        }
        // Wrong methods on real resources.
        11 => {
            let cases = [
                (reqwest::Method::PUT, format!("/boards/{}/", BOARDS[b])),
                (reqwest::Method::GET, add.clone()),
                (reqwest::Method::PATCH, "/boards/".into()),
            ];
            let (m, path) = cases[rng.gen_range(0..cases.len())].clone();
            req(m, path, vec![], None, Expect::Status(405))
        }
        // Junk headers on reads, including GRIP and SSE ones.
        12 => {
            let names = [
                "Accept",
                "Last-Event-ID",
                "Grip-Last",
                "Grip-Sig",
                "Content-Type",
                "Origin",
            ];
            let headers = (0..rng.gen_range(1..4))
                .map(|_| {
                    (
                        names[rng.gen_range(0..names.len())].to_owned(),
                        junk_header_value(rng),
                    )
                })
                .collect();
            req(
                reqwest::Method::GET,
                format!("/boards/{}/", BOARDS[b]),
                headers,
                None,
                Expect::NotServerError,
            )
        }
        // Paths of no route at all.
        _ => {
            let paths = [
                "/",
                "/x",
                "/boards/b0/players/p0/score-add/extra/",
                "/%",
                "/boards//",
                "/boards/b0//players/",
                "/.env",
                "/boards/b0/?x=%ZZ&lastEventId=%00",
                "/boards/../",
                "/boards/%2e%2e/players/",
                "/boards/b0/?recover=1",
            ];
            let path = paths[rng.gen_range(0..paths.len())];
            req(
                reqwest::Method::GET,
                path.to_owned(),
                vec![],
                None,
                Expect::NotServerError,
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzzed_traffic_yields_no_5xx_and_exactly_the_valid_writes() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let count: usize = std::env::var("FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    eprintln!("fuzz: FUZZ_SEED={seed} FUZZ_REQUESTS={count}");
    let mut stack = Stack::start().await.unwrap();
    for board in BOARDS {
        let players: Vec<(&str, &str)> = PLAYERS.iter().map(|p| (*p, *p)).collect();
        stack.create_board(board, &players).await;
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let requests: Vec<Request> = (0..count).map(|_| make(&mut rng)).collect();
    let expected_scores = Mutex::new(HashMap::<(usize, usize), i64>::new());
    let failures = Mutex::new(Vec::<String>::new());
    let client = &stack.client;
    let stream_client = &stack.stream_client;
    let base = stack.url("");
    futures::stream::iter(requests)
        .for_each_concurrent(32, |r| {
            let (expected_scores, failures, base) = (&expected_scores, &failures, &base);
            async move {
                // A request that may be held as a stream goes on a connection
                // of its own, as an EventSource's does: Pushpin 1.36 can fail
                // to hand over a stream that arrives on a reused connection
                // (docs/deploying.md, "Pushpin's limits").
                let may_stream = r
                    .headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("accept") && v.contains("event-stream"));
                let client = if may_stream { stream_client } else { client };
                let mut builder = client.request(r.method.clone(), format!("{base}{}", r.path));
                for (k, v) in &r.headers {
                    builder = builder.header(k.as_str(), v.as_str());
                }
                if let Some(body) = r.body.clone() {
                    builder = builder.body(body);
                }
                let outcome = tokio::time::timeout(Duration::from_secs(20), builder.send()).await;
                let status = match outcome {
                    Ok(Ok(resp)) => {
                        let status = resp.status().as_u16();
                        // Streams are held open; everything else is read whole.
                        if !resp
                            .headers()
                            .get("content-type")
                            .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"))
                        {
                            let _ = resp.bytes().await;
                        }
                        status
                    }
                    Ok(Err(e))
                        if r.body.as_ref().is_some_and(|b| b.len() > 4096)
                            && (e.is_request() || e.is_body()) =>
                    {
                        413
                    }
                    // Pushpin answers a header block past its buffer by
                    // closing the connection; the origin never sees it.
                    Ok(Err(e))
                        if header_bytes(&r.headers) > PROXY_HEADER_LIMIT
                            && (e.is_request() || e.is_connect()) =>
                    {
                        431
                    }
                    Ok(Err(e)) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} {}: transport error {e}", r.method, r.path));
                        return;
                    }
                    Err(_) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} {}: no answer in 20 s", r.method, r.path));
                        return;
                    }
                };
                let ok = match r.expect {
                    Expect::Status(s) => status == s,
                    Expect::ClientError => (400..500).contains(&status),
                    Expect::NotServerError => status < 500,
                };
                if !ok {
                    failures.lock().unwrap().push(format!(
                        "{} {} {:?}: got {status}, expected {:?}",
                        r.method, r.path, r.headers, r.expect
                    ));
                }
                if let (Some((b, p, v)), 200) = (r.delta, status) {
                    *expected_scores.lock().unwrap().entry((b, p)).or_default() += v;
                }
            }
        })
        .await;

    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failures, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );

    // Raw garbage on the wire, to the origin and to Pushpin.
    for port in [stack.web_port(), stack.pushpin.http_port] {
        for _ in 0..50 {
            if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let junk = random_bytes(&mut rng, 2000);
                let _ = conn.write_all(&junk);
                let _ = conn.write_all(b"\r\n\r\n");
            }
        }
    }

    // Exactly the valid writes, nothing else.
    let expected = expected_scores.into_inner().unwrap();
    for (bi, board) in BOARDS.iter().enumerate() {
        for (pi, player) in PLAYERS.iter().enumerate() {
            let resp = stack
                .get(&format!("/boards/{board}/players/{player}/"))
                .await;
            assert_eq!(resp.status(), 200);
            let got = resp.json::<Value>().await.unwrap()["score"]
                .as_i64()
                .unwrap();
            assert_eq!(
                got,
                expected.get(&(bi, pi)).copied().unwrap_or(0),
                "seed {seed}: {board}/{player}"
            );
        }
    }
    let session = stack.db_session().await;
    let boards: usize = unreql::r
        .table("boards")
        .count(())
        .exec(&session)
        .await
        .unwrap();
    let players: usize = unreql::r
        .table("players")
        .count(())
        .exec(&session)
        .await
        .unwrap();
    assert_eq!((boards, players), (3, 15), "seed {seed}");

    assert!(stack.web().unwrap().is_running());
    let log = std::fs::read_to_string(stack.web().unwrap().log_path()).unwrap();
    assert!(
        !log.contains("panicked"),
        "the origin panicked (seed {seed})"
    );
}
