//! Replays the transcripts in `transcripts/`, recorded from a real
//! RethinkDB 2.4.4 (`transcripts/record.py`), against the dev server: each
//! class of divergence the differential fuzzer found stays fixed in CI,
//! where no real server runs.
//!
//! The lines are START queries on one connection, in the format of the
//! shared conformance transcripts; answers are compared as the fuzzer
//! compares them (generated ids and the server's name masked, `unordered`
//! results as multisets, backtraces ignored).

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

use std::path::PathBuf;

use serde_json::{json, Value};

use compare::{canonical_order, differences, normalize, Order};

fn transcripts() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("transcripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("transcripts directory")
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

#[tokio::test]
async fn recorded_answers_of_the_real_server() {
    let port = dev_server().await;

    let files = transcripts();
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
