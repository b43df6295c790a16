//! Whatever a client sends, the server answers with a ReQL error (or a result)
//! and keeps serving: random term trees, garbage frames, broken handshakes.

mod common;

use common::{InProcess, Raw};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reql_dev_server::Config;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Term types worth generating: every one the transcripts use, some the server
/// does not implement, and ids that do not exist.
const TERM_TYPES: &[u64] = &[
    2, 3, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    33, 34, 35, 38, 39, 40, 41, 42, 43, 44, 45, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 64,
    65, 66, 67, 69, 70, 71, 73, 74, 75, 76, 77, 78, 79, 80, 86, 88, 92, 93, 94, 98, 101, 137, 139,
    140, 141, 143, 144, 145, 146, 147, 148, 149, 150, 152, 154, 156, 169, 170, 172, 173, 174, 175,
    177, 180, 181, 182, 183, 11, 48, 153, 159, 191, 9999, 0,
];

const OPTARGS: &[&str] = &[
    "index",
    "default",
    "multi",
    "conflict",
    "return_changes",
    "left_bound",
    "right_bound",
    "squash",
    "include_states",
    "include_initial",
    "include_offsets",
    "durability",
    "primary_key",
    "non_atomic",
    "bogus",
];

fn datum(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..7) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => json!(rng.gen_range(-20..20)),
        3 => json!(rng.gen_range(-2.0..2.0)),
        4 => json!(
            ["", "a", "id", "t", "score", "p1", "open", "closed", "test"][rng.gen_range(0..9)]
        ),
        5 => json!([15, ["t"]]),
        _ => json!([13, []]),
    }
}

fn term(rng: &mut StdRng, depth: u32) -> Value {
    if depth == 0 || rng.gen_bool(0.3) {
        return datum(rng);
    }
    match rng.gen_range(0..10) {
        0 => {
            let n = rng.gen_range(0..4);
            json!([2, (0..n).map(|_| term(rng, depth - 1)).collect::<Vec<_>>()])
        }
        1 => {
            let mut o = Map::new();
            for _ in 0..rng.gen_range(0..3) {
                o.insert(
                    ["a", "id", "score", "b"][rng.gen_range(0..4)].into(),
                    term(rng, depth - 1),
                );
            }
            Value::Object(o)
        }
        2 => json!([69, [[2, [1]], term(rng, depth - 1)]]),
        3 => json!([10, [rng.gen_range(0..3)]]),
        _ => {
            let ty = TERM_TYPES[rng.gen_range(0..TERM_TYPES.len())];
            let n = rng.gen_range(0..4);
            let args: Vec<Value> = (0..n).map(|_| term(rng, depth - 1)).collect();
            if rng.gen_bool(0.3) {
                let mut o = Map::new();
                o.insert(
                    OPTARGS[rng.gen_range(0..OPTARGS.len())].into(),
                    term(rng, depth - 1),
                );
                json!([ty, args, o])
            } else {
                json!([ty, args])
            }
        }
    }
}

fn func(rng: &mut StdRng) -> Value {
    let field = |f: &str| json!([170, [[10, [1]], f]]);
    let body = match rng.gen_range(0..8) {
        0 => field("score"),
        1 => json!([21, [field("score"), rng.gen_range(-2..8)]]),
        2 => json!({"score": [24, [field("score"), 1]]}),
        3 => json!([65, [[17, [field("score"), 3]], datum(rng), datum(rng)]]),
        4 => json!([12, ["boom"]]),
        5 => json!([92, [field("nofield"), 0]]),
        6 => json!([10, [1]]),
        _ => datum(rng),
    };
    json!([69, [[2, [1]], body]])
}

/// A chain of the operations clients actually use, applied to a table, an
/// array or a range, with random arguments.
fn chain(rng: &mut StdRng) -> Value {
    let mut x = match rng.gen_range(0..4) {
        0 => json!([2, [1, 2, {"score": 3}]]),
        1 => json!([173, [rng.gen_range(0..30)]]),
        _ => json!([15, ["t"]]),
    };
    let n = |rng: &mut StdRng| json!(rng.gen_range(-2..12));
    let pick = |rng: &mut StdRng, xs: &[&str]| json!(xs[rng.gen_range(0..xs.len())]);
    for _ in 0..rng.gen_range(1..5) {
        x = match rng.gen_range(0..34) {
            0 => json!([39, [x, func(rng)]]),
            1 => json!([39, [x, {"score": rng.gen_range(0..7)}], {"default": datum(rng)}]),
            2 => json!([38, [x, func(rng)]]),
            3 => json!([41, [x, "score"]]),
            4 => json!([41, [x, [74, ["id"]]]]),
            5 => json!([41, [x], {"index": pick(rng, &["score", "id", "nope"])}]),
            6 => json!([41, [x], {"index": [74, ["score"]]}]),
            7 => json!([182, [x, datum(rng), datum(rng)], {"index": "score"}]),
            8 => json!([182, [x, [180, []], n(rng)]]),
            9 => json!([71, [x, n(rng)]]),
            10 => json!([70, [x, n(rng)]]),
            11 => json!([30, [x, n(rng), n(rng)]]),
            12 => json!([45, [x, n(rng)]]),
            13 => json!([33, [x, "id", "score"]]),
            14 => json!([34, [x, "score"]]),
            15 => json!([35, [x, {"extra": datum(rng)}]]),
            16 => json!([43, [x]]),
            17 => json!([145, [x, "score"]]),
            18 => json!([146, [x, "score"]]),
            19 => json!([147, [x, "score"]]),
            20 => json!([148, [x], {"index": "score"}]),
            21 => json!([144, [x, "score"]]),
            22 => json!([150, [x]]),
            23 => json!([42, [x]]),
            24 => json!([86, [x]]),
            25 => json!([93, [x, datum(rng)]]),
            26 => json!([53, [x, func(rng)]]),
            27 => json!([53, [x, {"score": datum(rng)}]]),
            28 => json!([55, [x, func(rng)]]),
            29 => json!([54, [x]]),
            30 => {
                json!([152, [x], {"include_initial": rng.gen::<bool>(), "include_states": rng.gen::<bool>()}])
            }
            31 => json!([170, [x, pick(rng, &["score", "id"])]]),
            32 => json!([51, [x, pick(rng, &["array", "object", "string"])]]),
            _ => json!([16, [[15, ["t"]], pick(rng, &["p1", "p3", "zz"])]]),
        };
    }
    x
}

async fn setup(raw: &mut Raw) -> anyhow::Result<()> {
    raw.query(1, &json!([1, [60, ["t"]], {}])).await?;
    raw.query(2, &json!([1, [75, [[15, ["t"]], "score"]], {}]))
        .await?;
    let docs: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("p{i}"), "score": i % 7, "a": [i, "x"]}))
        .collect();
    raw.query(3, &json!([1, [56, [[15, ["t"]], [2, docs]]], {}]))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_terms_always_get_an_answer() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut raw = Raw::connect(server.port).await?;
    setup(&mut raw).await?;
    // REQL_FUZZ_SEED / REQL_FUZZ_CASES widen the search when run by hand.
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mut rng = StdRng::seed_from_u64(env("REQL_FUZZ_SEED", 0x5eed));
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..env("REQL_FUZZ_CASES", 3000) {
        if i % 500 == 0 {
            // Random writes may drop the table; put it back now and then.
            setup(&mut raw).await?;
        }
        let q = json!([1, term(&mut rng, 5), {}]);
        let token = 1000 + i;
        let answer = raw
            .query(token, &q)
            .await
            .map_err(|e| anyhow::anyhow!("{e}: query {q}"))?;
        let t = answer["t"].as_u64().unwrap_or(0);
        *seen.entry(t).or_insert(0u32) += 1;
        assert!(
            matches!(t, 1 | 2 | 3 | 16 | 17 | 18),
            "query {q} answered {answer}"
        );
        if t == 3 {
            raw.send(token, &json!([3])).await?;
            loop {
                let (tok, v) = raw.recv().await?;
                assert_eq!(tok, token);
                if v["t"] != 3 {
                    break;
                }
            }
        }
    }
    let v = raw.query(1, &json!([1, [24, [1, 2]], {}])).await?;
    assert_eq!(v, json!({"t": 1, "r": [3]}));
    // Most answers should be real results, not just rejected trees.
    let results = seen.get(&1).copied().unwrap_or(0) + seen.get(&2).copied().unwrap_or(0);
    println!("answers by response type: {seen:?}");
    assert!(results > 0, "{seen:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_query_chains_always_get_an_answer() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut raw = Raw::connect(server.port).await?;
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mut rng = StdRng::seed_from_u64(env("REQL_FUZZ_SEED", 0xc4a1));
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..env("REQL_FUZZ_CASES", 3000) {
        if i % 100 == 0 {
            let _ = raw.query(5, &json!([1, [61, ["t"]], {}])).await?;
            setup(&mut raw).await?;
        }
        let q = json!([1, chain(&mut rng), {}]);
        let token = 1000 + i;
        let answer = raw
            .query(token, &q)
            .await
            .map_err(|e| anyhow::anyhow!("{e}: query {q}"))?;
        let t = answer["t"].as_u64().unwrap_or(0);
        *seen.entry(t).or_insert(0u32) += 1;
        assert!(
            matches!(t, 1 | 2 | 3 | 17 | 18),
            "query {q} answered {answer}"
        );
        if t == 3 {
            raw.send(token, &json!([3])).await?;
            loop {
                let (tok, v) = raw.recv().await?;
                assert_eq!(tok, token);
                if v["t"] != 3 {
                    break;
                }
            }
        }
    }
    println!("answers by response type: {seen:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_get_client_errors() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut raw = Raw::connect(server.port).await?;
    let mut rng = StdRng::seed_from_u64(7);
    for token in 0..300u64 {
        let len = rng.gen_range(0..64);
        let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if token % 3 == 0 {
            body = format!("[{}, {}]", rng.gen_range(-3..8), rng.gen_range(-3..8)).into_bytes();
        }
        raw.send_bytes(token, &body).await?;
        let (t, v) = raw.recv().await?;
        assert_eq!(t, token);
        assert!(v["t"].as_u64().is_some(), "{v}");
    }
    let v = raw.query(9, &json!([1, [24, [1, 2]], {}])).await?;
    assert_eq!(v, json!({"t": 1, "r": [3]}));
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_connection() -> anyhow::Result<()> {
    let server = InProcess::start(Config::default()).await?;
    let mut bad = Raw::connect(server.port).await?;
    let mut good = Raw::connect(server.port).await?;
    let mut frame = 1u64.to_le_bytes().to_vec();
    frame.extend_from_slice(&u32::MAX.to_le_bytes());
    bad.stream.write_all(&frame).await?;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), bad.stream.read(&mut buf))
        .await??;
    assert_eq!(n, 0, "the server should close the connection");
    let v = good.query(2, &json!([1, [24, [40, 2]], {}])).await?;
    assert_eq!(v, json!({"t": 1, "r": [42]}));

    // Broken handshakes: the server answers or closes, and keeps serving.
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xc3, 0xbd, 0xc2, 0x34, b'{', b'}', 0],
        vec![0xc3, 0xbd, 0xc2, 0x34, 0xff, 0xfe, 0],
        vec![0x20, 0x2d, 0x0c, 0x40, 0xff, 0xff, 0xff, 0xff],
        vec![],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).await?;
        s.write_all(&bytes).await?;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    }
    let v = good.query(3, &json!([1, [24, [1, 1]], {}])).await?;
    assert_eq!(v, json!({"t": 1, "r": [2]}));
    server.stop().await;
    Ok(())
}
