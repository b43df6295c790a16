//! Losing a database node under load: the whole stack (two Pushpins, two
//! origins, three workers) on a real three-node RethinkDB cluster with every
//! table at three replicas. Sixteen clients add to scores, each retrying a
//! failed request with its `Idempotency-Key` until it is answered 200, while
//! the node holding the primary replica of `players` is killed with
//! `kill -9`.
//!
//! Needs a real `rethinkdb` (`RETHINKDB_BIN`, or on `PATH`); without one the
//! test says so in one line and passes, as CI has only the dev server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{rethinkdb_binary, RethinkCluster, Stack, StackOptions, Subscriber, TempDir};
use tokio::time::{sleep, Instant};

const BOARD: &str = "nodeloss";
const PLAYERS: [&str; 4] = ["ann", "bob", "cat", "dan"];
const CLIENTS: usize = 16;

/// A key's 200 answer.
struct Answer {
    key: String,
    player: &'static str,
    /// The score the answer carried.
    score: i64,
    /// When the attempt that got it was sent, and when it was answered.
    sent: Instant,
    at: Instant,
}

/// What one client saw: each key's 200 answer, and every attempt that got
/// something else.
#[derive(Default)]
struct ClientLog {
    answered: Vec<Answer>,
    refused: Vec<(Instant, String)>,
}

/// Sends `+1` score-adds for `player` through `base` (a Pushpin), one key at
/// a time, each retried until it is answered 200, until `stop` is set.
async fn client(i: usize, base: String, player: &'static str, stop: Arc<AtomicBool>) -> ClientLog {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("{base}/boards/{BOARD}/players/{player}/score-add/");
    let mut log = ClientLog::default();
    let give_up = |started: Instant| started.elapsed() > Duration::from_secs(60);
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("c{i}-{n}");
        let started = Instant::now();
        loop {
            assert!(!give_up(started), "key {key} never answered 200");
            let attempt = Instant::now();
            let sent = http
                .post(&url)
                .header("Idempotency-Key", &key)
                .json(&json!({ "value": 1 }))
                .send()
                .await;
            let outcome = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    (status, body)
                }
                Err(e) => {
                    // No answer (a timeout or a dropped connection): the
                    // increment may or may not have been applied.
                    log.refused
                        .push((Instant::now(), format!("no answer: {e}")));
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match outcome {
                (200, body) => {
                    let score = body["score"].as_i64().expect("a score in the answer");
                    log.answered.push(Answer {
                        key,
                        player,
                        score,
                        sent: attempt,
                        at: Instant::now(),
                    });
                    break;
                }
                (503, body) => {
                    log.refused.push((Instant::now(), format!("503 {body}")));
                    sleep(Duration::from_millis(100)).await;
                }
                (status, body) => panic!("a wrong answer for {key}: {status} {body}"),
            }
        }
    }
    log
}

/// Each player's score in one update.
type Scores = BTreeMap<String, i64>;

/// Every update a subscriber got: when, and the scores in it.
#[derive(Clone, Default)]
struct Updates(Arc<Mutex<Vec<(Instant, Scores)>>>);

impl Updates {
    /// When the subscriber first showed `player` at `score` or more.
    fn reached(&self, player: &str, score: i64) -> Option<Instant> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .find(|(_, scores)| scores.get(player).is_some_and(|s| *s >= score))
            .map(|(at, _)| *at)
    }

    fn latest(&self) -> Option<Scores> {
        self.0.lock().unwrap().last().map(|(_, s)| s.clone())
    }

    /// A player whose score went down from one update to a later one.
    fn went_back(&self) -> Option<(String, i64, i64)> {
        let seen = self.0.lock().unwrap();
        let mut high: BTreeMap<String, i64> = BTreeMap::new();
        for (_, scores) in seen.iter() {
            for (p, s) in scores {
                let before = high.entry(p.clone()).or_insert(*s);
                if *s < *before {
                    return Some((p.clone(), *before, *s));
                }
                *before = *s;
            }
        }
        None
    }
}

fn follow(mut sub: Subscriber) -> Updates {
    let updates = Updates::default();
    let out = updates.clone();
    tokio::spawn(async move {
        while let Ok(event) = sub.next(Duration::from_secs(120)).await {
            if event.event != "update" {
                continue;
            }
            let board = event.json();
            let scores = board["players"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p["id"].as_str()?.to_owned(), p["score"].as_i64()?)))
                .collect();
            out.0.lock().unwrap().push((Instant::now(), scores));
        }
    });
    updates
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_players_primary_loses_and_doubles_nothing() {
    let Some(bin) = rethinkdb_binary() else {
        eprintln!("skipped: no real rethinkdb (set RETHINKDB_BIN or put rethinkdb on PATH)");
        return;
    };
    let dir = TempDir::new("nodeloss").expect("scratch directory");
    let mut cluster = RethinkCluster::start(&bin, dir.path(), 3)
        .await
        .expect("a three-node cluster");
    let replicas = vec![("TABLE_REPLICAS".to_owned(), "3".to_owned())];
    let mut stack = Stack::start_with(StackOptions {
        database: Some(cluster.base_url()),
        pushpins: 2,
        extra_webs: 1,
        web_env: replicas.clone(),
        worker_env: replicas,
        ..StackOptions::default()
    })
    .await
    .expect("stack");
    stack.add_worker("w2", &[]).await.expect("worker 2");
    stack.add_worker("w3", &[]).await.expect("worker 3");
    let players: Vec<(&str, &str)> = PLAYERS.iter().map(|p| (*p, *p)).collect();
    stack.create_board(BOARD, &players).await;
    let bases = [stack.pushpin.url(), stack.extra_pushpins[0].url()];

    let mut subscribers = Vec::new();
    for base in &bases {
        let sub = Subscriber::connect(
            &stack.stream_client,
            &format!("{base}/boards/{BOARD}/"),
            None,
        )
        .await
        .expect("subscribe");
        subscribers.push(follow(sub));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            tokio::spawn(client(i, base, PLAYERS[i % PLAYERS.len()], stop.clone()))
        })
        .collect();

    sleep(Duration::from_secs(3)).await;
    let primary = cluster
        .primary_of(0, &stack.db_name, "players")
        .await
        .expect("the players table's primary");
    cluster.kill(primary);
    let killed_at = Instant::now();
    eprintln!("killed node{primary}, the primary of players");
    sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for c in clients {
        logs.push(c.await.expect("a client finished"));
    }
    let done_at = Instant::now();

    // Nothing lost, nothing doubled: each player's final score is the
    // number of keys sent for it, and the +1 answers are exactly 1..=n.
    let survivor = (0..3).find(|i| *i != primary).unwrap();
    let mut answers: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for a in logs.iter().flat_map(|l| &l.answered) {
        answers.entry(a.player).or_default().push(a.score);
    }
    let stored = cluster
        .query(
            survivor,
            reql_terms::r
                .db(stack.db_name.clone())
                .table(store::PLAYERS)
                .get_all(PLAYERS.map(|p| format!("{BOARD}:{p}")))
                .pluck(["player", "score"]),
        )
        .await
        .expect("the stored players");
    let stored: BTreeMap<String, i64> = stored
        .iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]))
        .map(|p| {
            (
                p["player"].as_str().unwrap().to_owned(),
                p["score"].as_i64().unwrap(),
            )
        })
        .collect();
    for player in PLAYERS {
        let mut scores = answers.remove(player).unwrap_or_default();
        scores.sort_unstable();
        let keys = scores.len() as i64;
        assert!(keys > 0, "no answer for {player}");
        assert_eq!(
            stored.get(player),
            Some(&keys),
            "{player}: stored score beside {keys} distinct keys"
        );
        assert_eq!(
            scores,
            (1..=keys).collect::<Vec<_>>(),
            "{player}: each key's answer is a score of its own"
        );
    }

    // Writes succeed again within 10 s of the kill: every client has a 200
    // answer by then to a request it sent after the kill.
    let refused: Vec<&String> = logs
        .iter()
        .flat_map(|l| &l.refused)
        .map(|(_, r)| r)
        .collect();
    let unanswered = refused
        .iter()
        .filter(|r| r.starts_with("no answer"))
        .count();
    let mut back_at = killed_at;
    for (i, log) in logs.iter().enumerate() {
        let first = log
            .answered
            .iter()
            .find(|a| a.sent > killed_at)
            .map(|a| a.at)
            .unwrap_or_else(|| panic!("client {i} got no answer after the kill"));
        back_at = back_at.max(first);
    }
    let outage = back_at - killed_at;
    let keys: usize = logs.iter().map(|l| l.answered.len()).sum();
    eprintln!(
        "{keys} keys; writes back {outage:?} after the kill; {} attempts refused with 503, {unanswered} unanswered",
        refused.len() - unanswered
    );
    assert!(
        outage <= Duration::from_secs(10),
        "writes came back only {outage:?} after the kill"
    );

    // Every subscriber converges within 5 s after that: each score answered
    // from then on reaches both subscribers within 5 s of its answer.
    for (s, updates) in subscribers.iter().enumerate() {
        let mut worst = Duration::ZERO;
        for a in logs.iter().flat_map(|l| &l.answered) {
            if a.at < back_at {
                continue;
            }
            let limit = a.at + Duration::from_secs(5);
            while Instant::now() < limit && updates.reached(a.player, a.score).is_none() {
                sleep(Duration::from_millis(20)).await;
            }
            let reached = updates.reached(a.player, a.score);
            assert!(
                reached.is_some_and(|r| r <= limit),
                "subscriber {s} showed {} at {} ({}) {:?} after the answer",
                a.player,
                a.score,
                a.key,
                reached.map(|r| r - a.at)
            );
            worst =
                worst.max(reached.map_or(Duration::ZERO, |r| r.saturating_duration_since(a.at)));
        }
        eprintln!("subscriber {s}: every later answer shown within {worst:?}");
        assert_eq!(updates.went_back(), None, "subscriber {s} went back");
    }
    let settle = done_at + Duration::from_secs(5);
    for (s, updates) in subscribers.iter().enumerate() {
        while Instant::now() < settle && updates.latest().as_ref() != Some(&stored) {
            sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(updates.latest().as_ref(), Some(&stored), "subscriber {s}");
    }
    drop(stack);
}
