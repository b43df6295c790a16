//! Replays transcripts recorded from a real RethinkDB 2.4.4 against the dev
//! server, where no real server runs:
//!
//! - `conformance/`: the recorded conformance transcripts (572 exchanges:
//!   handshakes, admin, reads, writes, batches, changefeeds, limits and
//!   malformed input), judged by the rules of their reference checker
//!   (`replay/`);
//! - `transcripts/`: the cases the differential fuzzer found
//!   (`transcripts/record.py`), START queries on one connection, judged
//!   both by those rules and as the fuzzer compares answers, so each class
//!   of divergence it found stays fixed.
//!
//! The conformance replay goes to a dev server in this process, or with
//! `REQL_REPLAY_ADDR=host:port` (and `REQL_REPLAY_PASSWORD`) to any server
//! that speaks the protocol: the built binary (`scripts/replay`), or a real
//! RethinkDB 2.4.4 to check the transcripts themselves.

// The fuzzer's own connection and comparison, so both judge answers alike.
#[path = "../src/bin/differential/compare.rs"]
#[allow(dead_code)]
mod compare;
#[path = "../src/bin/differential/run.rs"]
#[allow(dead_code)]
mod run;
#[path = "../src/bin/differential/wire.rs"]
#[allow(dead_code)]
mod wire;

mod replay;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use compare::{canonical_order, differences, normalize, Order};

/// The exchanges recorded from RethinkDB 2.4.4 in `conformance/`: a file
/// that went missing, or a line, fails the count.
const CONFORMANCE_EXCHANGES: usize = 572;

/// The `.jsonl` files of a directory of the crate, in name order.
fn jsonl_files(dir: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

/// A dev server in this process, on a port of its own; its port.
async fn dev_server() -> u16 {
    let server = reql_dev_server::Server::bind(reql_dev_server::Config {
        port: 0,
        ..Default::default()
    })
    .await
    .expect("bind");
    let port = server.local_addr().port();
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    port
}

/// Where the replay goes: `REQL_REPLAY_ADDR`, or a dev server in this
/// process.
async fn replay_options() -> replay::Options {
    let addr = match std::env::var("REQL_REPLAY_ADDR") {
        Ok(addr) if !addr.is_empty() => addr,
        _ => format!("127.0.0.1:{}", dev_server().await),
    };
    replay::Options {
        addr,
        user: "admin".into(),
        password: std::env::var("REQL_REPLAY_PASSWORD").unwrap_or_default(),
        timeout: Duration::from_secs(5),
    }
}

/// Replays `files`; prints a line per file and the tally, and fails on any
/// mismatch. The number of exchanges replayed.
async fn replay_all(files: &[PathBuf]) -> usize {
    let options = replay_options().await;
    let outcome = replay::replay(&options, files).await;
    for f in &outcome.files {
        println!("# {}: {} passed, {} failed", f.name, f.passed, f.failed);
    }
    println!(
        "{} passed, {} failed (against {})",
        outcome.passed(),
        outcome.failed(),
        options.addr
    );
    assert!(
        outcome.failed() == 0,
        "{} passed, {} failed:\n{}",
        outcome.passed(),
        outcome.failed(),
        outcome.mismatches.join("\n")
    );
    outcome.passed() + outcome.skipped()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_transcripts_of_rethinkdb_2_4_4() {
    let files = jsonl_files("conformance");
    let replayed = replay_all(&files).await;
    assert_eq!(
        replayed,
        CONFORMANCE_EXCHANGES,
        "exchanges in conformance/ ({} files)",
        files.len()
    );
}

/// The replay is no rubber stamp: one recorded answer changed (a plain
/// answer, a stream's item, a handshake's error code), and exactly that
/// exchange fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_recorded_answer_fails_the_replay() {
    let dir = std::env::temp_dir().join(format!(
        "reql-conformance-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let changes = [
        (
            "limits.jsonl",
            9,
            "too large: 2147483648",
            "too large: 2147483647",
        ),
        ("unreql-probe.jsonl", 16, "\"score\": 40}", "\"score\": 41}"),
        (
            "handshake.jsonl",
            2,
            "\"error_code\": 12",
            "\"error_code\": 13",
        ),
    ];
    let mut files = Vec::new();
    for (name, line, from, to) in changes {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("conformance")
            .join(name);
        let text = std::fs::read_to_string(&source).expect("read transcript");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // Only what the server sent is changed, not what is sent to it.
        let answers = if name == "handshake.jsonl" {
            "\"handshake\""
        } else {
            "\"recv\""
        };
        let (head, recorded) = lines[line - 1]
            .split_once(answers)
            .expect("recorded answers");
        assert!(recorded.contains(from), "{name}:{line} has no {from}");
        lines[line - 1] = format!("{head}{answers}{}", recorded.replacen(from, to, 1));
        let copy = dir.join(name);
        std::fs::write(&copy, lines.join("\n")).expect("write transcript");
        files.push(copy);
    }
    let options = replay_options().await;
    let outcome = replay::replay(&options, &files).await;
    let _ = std::fs::remove_dir_all(&dir);
    let failed: Vec<&str> = outcome
        .mismatches
        .iter()
        .map(|m| m.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        failed,
        [
            "limits.jsonl:9",
            "unreql-probe.jsonl:16",
            "handshake.jsonl:2"
        ],
        "{}",
        outcome.mismatches.join("\n")
    );
    assert_eq!(outcome.failed(), 3);
    assert!(
        outcome.mismatches[1].ends_with("$items[2].score: expected 41, got 40"),
        "{}",
        outcome.mismatches[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fuzzers_cases_by_the_conformance_rules() {
    let files = jsonl_files("transcripts");
    assert!(replay_all(&files).await > 0, "no transcripts found");
}

#[tokio::test]
async fn recorded_answers_of_the_real_server() {
    let port = dev_server().await;

    let files = jsonl_files("transcripts");
    assert!(!files.is_empty(), "no transcripts found");
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let side = run::Side::connect(port).await.expect("connect");
        let text = std::fs::read_to_string(&file).expect("read transcript");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: Value = serde_json::from_str(line).expect("a JSON line");
            let send = &line["send"];
            assert_eq!(send[0], 1, "{name}: only START lines are replayed here");
            let answers = side.queries.start(&send[1], &send[2]).await.expect("send");
            let got = side.finish(answers).await;
            let recv = line["recv"].as_array().cloned().unwrap_or_default();
            let expected = run::summarize(&recv);
            let order = if line["unordered"] == Value::Bool(true) {
                Order::Unordered
            } else {
                Order::Exact
            };
            let (mut got, mut expected) = (normalize(got), normalize(expected));
            canonical_order(&mut got, order);
            canonical_order(&mut expected, order);
            for d in differences(&got, &expected) {
                failures.push(format!(
                    "{name}:{} ({}): {}: expected {}, got {}",
                    line["step"], line["desc"], d.path, d.real, d.dev
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} lines differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What RethinkDB 2.4.4 answered (recorded with the Python driver): a
/// `getAll` feed reports a change once per key it matches, and pairs old and
/// new values as far as they go. Items are compared as a multiset.
#[tokio::test]
async fn get_all_feed_reports_a_change_once_per_matching_key() {
    let port = dev_server().await;
    let side = run::Side::connect(port).await.expect("connect");
    let t = json!([15, [[14, ["golden"]], "t"]]);
    for setup in [
        json!([57, ["golden"]]),
        json!([60, [[14, ["golden"]], "t"]]),
        json!([75, [t, "board"]]),
        json!([140, [t]]),
        json!([56, [t, [2, [{"id": "a", "board": "b0"}, {"id": "b", "board": "b1"}]]]]),
    ] {
        let answer = side.run(&setup).await;
        assert_eq!(answer["t"], 1, "{setup}: {answer}");
    }
    let get = |key: &str| json!([16, [t, key]]);
    let cases = [
        (
            json!([152, [[78, [t, "a", "a", "b"]]], {"include_initial": true}]),
            vec![json!([53, [get("a"), {"x": 1}]]), json!([54, [get("b")]])],
            json!([
                {"new_val": null, "old_val": {"board": "b1", "id": "b"}},
                {"new_val": {"board": "b0", "id": "a", "x": 1}, "old_val": {"board": "b0", "id": "a"}},
                {"new_val": {"board": "b0", "id": "a", "x": 1}, "old_val": {"board": "b0", "id": "a"}},
                {"new_val": {"board": "b0", "id": "a"}},
                {"new_val": {"board": "b0", "id": "a"}},
                {"new_val": {"board": "b1", "id": "b"}},
            ]),
        ),
        (
            json!([152, [[78, [t, "b0", "b1", "b0"], {"index": "board"}]], {"include_initial": true}]),
            vec![
                json!([53, [get("a"), {"board": "b1"}]]),
                json!([56, [t, {"id": "c", "board": "b0"}]]),
            ],
            json!([
                {"new_val": null, "old_val": {"board": "b0", "id": "a", "x": 1}},
                {"new_val": {"board": "b0", "id": "a", "x": 1}},
                {"new_val": {"board": "b0", "id": "a", "x": 1}},
                {"new_val": {"board": "b0", "id": "c"}, "old_val": null},
                {"new_val": {"board": "b0", "id": "c"}, "old_val": null},
                {"new_val": {"board": "b1", "id": "a", "x": 1}, "old_val": {"board": "b0", "id": "a", "x": 1}},
            ]),
        ),
    ];
    for (feed, writes, expected) in cases {
        let (answers, mut first) = side.open_feed(&feed).await;
        let answers = answers.unwrap_or_else(|| panic!("{feed}: {first}"));
        for w in &writes {
            let answer = side.run(w).await;
            assert_eq!(answer["t"], 1, "{w}: {answer}");
        }
        side.drain_feed(answers, &mut first).await;
        let mut got = json!({ "items": first["items"].take() });
        let mut expected = json!({ "items": expected });
        canonical_order(&mut got, Order::Unordered);
        canonical_order(&mut expected, Order::Unordered);
        assert_eq!(got, expected, "{feed}");
    }
}
