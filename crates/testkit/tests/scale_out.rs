//! Scale-out with the real processes: two Pushpins, two origins and several
//! workers sharing the boards through shard leases (see the worker's
//! `leases` module). Runs on the dev server, and on a real RethinkDB with
//! `scripts/test --real`.
//!
//! The leases here last 2 s (`LEASE_TTL_MS`) so that failovers are quick;
//! the default is 5 s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::Shards;
use serde_json::json;
use testkit::{Stack, StackOptions, Subscriber};
use tokio::time::{sleep, Instant};

const TTL: Duration = Duration::from_millis(2000);
const TTL_MS: &str = "2000";

async fn cluster(workers: &[&str]) -> Stack {
    let mut stack = Stack::start_with(StackOptions {
        worker: false,
        extra_webs: 1,
        pushpins: 2,
        worker_env: vec![("LEASE_TTL_MS".into(), TTL_MS.into())],
        ..StackOptions::default()
    })
    .await
    .expect("stack");
    for id in workers {
        stack.add_worker(id, &[]).await.expect("worker");
    }
    stack
}

/// The shards each worker reports on `/healthz`.
async fn reported(stack: &Stack) -> BTreeMap<String, BTreeSet<u16>> {
    let mut out = BTreeMap::new();
    for id in stack.worker_ids() {
        if let Some((_, health)) = stack.worker_health(&id).await {
            let shards = health["leases"]["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_u64().map(|s| s as u16))
                .collect();
            out.insert(id, shards);
        }
    }
    out
}

/// Waits until the 16 shards are split among `live` workers: each holds at
/// most its fair share, every shard is held by exactly one of them, in the
/// table and in what the workers report. Returns the split.
async fn wait_balanced(
    stack: &Stack,
    live: &[&str],
    within: Duration,
) -> BTreeMap<String, BTreeSet<u16>> {
    let fair = 16usize.div_ceil(live.len());
    let deadline = Instant::now() + within;
    loop {
        let holders = stack.lease_holders().await;
        let reports = reported(stack).await;
        let mut claimed: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for (id, shards) in &reports {
            if live.contains(&id.as_str()) {
                for s in shards {
                    claimed.entry(*s).or_default().push(id);
                }
            }
        }
        let table_ok = holders.len() == 16
            && holders
                .values()
                .all(|h| h.as_deref().is_some_and(|h| live.contains(&h)));
        let once = (0..16).all(|k| claimed.get(&k).is_some_and(|c| c.len() == 1));
        let fair_ok = live
            .iter()
            .all(|id| reports.get(*id).is_some_and(|s| s.len() <= fair));
        let agree = (0..16u16)
            .all(|k| claimed.get(&k).and_then(|c| c.first().copied()) == holders[&k].as_deref());
        if table_ok && once && fair_ok && agree {
            return reports
                .into_iter()
                .filter(|(id, _)| live.contains(&id.as_str()))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "not balanced over {live:?} within {within:?}: table {holders:?}, reports {reports:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Every score a subscriber received for its board's player `p`, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<i64>>>);

impl Seen {
    fn last(&self) -> Option<i64> {
        self.0.lock().unwrap().last().copied()
    }

    fn all(&self) -> Vec<i64> {
        self.0.lock().unwrap().clone()
    }
}

fn follow(mut sub: Subscriber) -> Seen {
    let seen = Seen::default();
    let out = seen.clone();
    tokio::spawn(async move {
        while let Ok(event) = sub.next(Duration::from_secs(120)).await {
            if event.event != "update" {
                continue;
            }
            let score = event.json()["players"][0]["score"].as_i64();
            if let Some(score) = score {
                out.0.lock().unwrap().push(score);
            }
        }
    });
    seen
}

async fn subscribe_via(stack: &Stack, pushpin: usize, board: &str) -> Subscriber {
    let base = match pushpin {
        0 => stack.pushpin.url(),
        i => stack.extra_pushpins[i - 1].url(),
    };
    let url = format!("{base}/boards/{board}/");
    // A Pushpin that has just been restarted can leave a request unanswered
    // (see `Subscriber::open`): a stream not answered in time is opened
    // again, as the live page does.
    let mut tries = Vec::new();
    for _ in 0..5 {
        match Subscriber::open(&stack.stream_client, &url, None).await {
            Ok(sub) => return sub,
            Err(e) => tries.push(format!("{e:#}")),
        }
        sleep(Duration::from_millis(200)).await;
    }
    panic!("subscribe to {url}: {tries:?}")
}

async fn wait_score(seen: &Seen, score: i64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if seen.last() == Some(score) {
            return true;
        }
        sleep(Duration::from_millis(20)).await;
    }
    seen.last() == Some(score)
}

fn shard_of(board: &str) -> u16 {
    Shards::default().of_board(board)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_boards_are_taken_over_and_no_subscriber_goes_back() {
    let mut stack = cluster(&["w1", "w2", "w3"]).await;
    wait_balanced(&stack, &["w1", "w2", "w3"], Duration::from_secs(15)).await;

    let boards: Vec<String> = (0..20).map(|i| format!("fo-{i}")).collect();
    let spread: BTreeSet<u16> = boards.iter().map(|b| shard_of(b)).collect();
    assert!(spread.len() >= 8, "20 boards over {} shards", spread.len());
    for b in &boards {
        stack.create_board(b, &[("p", "P")]).await;
    }
    let mut seen = Vec::new();
    for (i, b) in boards.iter().enumerate() {
        seen.push(follow(subscribe_via(&stack, i % 2, b).await));
    }
    for (b, s) in boards.iter().zip(&seen) {
        stack.score_add(b, "p", 1).await;
        assert!(
            wait_score(s, 1, Duration::from_secs(5)).await,
            "{b}: {:?}",
            s.all()
        );
    }

    // kill -9 the owner of the first board.
    let holders = stack.lease_holders().await;
    let victim = holders[&shard_of(&boards[0])].clone().expect("held");
    let lost: Vec<u16> = holders
        .iter()
        .filter(|(_, h)| h.as_deref() == Some(victim.as_str()))
        .map(|(k, _)| *k)
        .collect();
    stack.named_worker(&victim).process.kill_hard();
    let killed = Instant::now();

    // A score-add right away, while the dead worker's leases still run.
    for b in &boards {
        stack.score_add(b, "p", 1).await;
    }
    let added = Instant::now();
    let deadline = (killed + TTL + Duration::from_secs(2)).max(added + Duration::from_secs(5));
    for (b, s) in boards.iter().zip(&seen) {
        let within = deadline.saturating_duration_since(Instant::now());
        assert!(
            wait_score(s, 2, within).await,
            "{b} (shard {}) did not get its new state: {:?}",
            shard_of(b),
            s.all()
        );
    }
    let survivors: Vec<&str> = ["w1", "w2", "w3"]
        .into_iter()
        .filter(|w| *w != victim)
        .collect();
    let split = wait_balanced(&stack, &survivors, Duration::from_secs(15)).await;
    assert!(lost.iter().all(|k| split.values().any(|s| s.contains(k))));
    let mut takeovers = 0.0;
    for w in &survivors {
        takeovers += stack
            .worker_metric(w, "dblistener_lease_takeovers_total")
            .await
            .unwrap_or(0.0);
    }
    assert!(
        takeovers >= lost.len() as f64,
        "takeovers {takeovers}, lost {lost:?}"
    );

    // After the takeover, each score-add reaches its subscriber within 5 s.
    for (b, s) in boards.iter().zip(&seen) {
        stack.score_add(b, "p", 1).await;
        assert!(
            wait_score(s, 3, Duration::from_secs(5)).await,
            "{b}: {:?}",
            s.all()
        );
    }
    for (b, s) in boards.iter().zip(&seen) {
        let all = s.all();
        assert!(
            all.windows(2).all(|w| w[0] <= w[1]),
            "{b}: an older board after a newer one: {all:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fourth_worker_gets_its_share_and_hands_it_back_on_sigterm() {
    let mut stack = Stack::start_with(StackOptions {
        worker: false,
        extra_webs: 1,
        pushpins: 2,
        // Long leases: a hand-back must not be mistaken for an expiry.
        worker_env: vec![("LEASE_TTL_MS".into(), "10000".into())],
        ..StackOptions::default()
    })
    .await
    .expect("stack");
    for id in ["w1", "w2", "w3"] {
        stack.add_worker(id, &[]).await.expect("worker");
    }
    wait_balanced(&stack, &["w1", "w2", "w3"], Duration::from_secs(30)).await;

    stack.add_worker("w4", &[]).await.expect("fourth worker");
    let split = wait_balanced(&stack, &["w1", "w2", "w3", "w4"], Duration::from_secs(15)).await;
    let mine = split["w4"].clone();
    assert!(!mine.is_empty() && mine.len() <= 4, "{split:?}");

    // SIGTERM: the leases come back at once, not after 10 s.
    let stopped = Instant::now();
    let status = stack
        .named_worker("w4")
        .process
        .stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let holders = stack.lease_holders().await;
    for k in &mine {
        assert_ne!(
            holders[k].as_deref(),
            Some("w4"),
            "shard {k} still held by w4"
        );
    }
    assert!(stopped.elapsed() < Duration::from_secs(5));
    let split = wait_balanced(&stack, &["w1", "w2", "w3"], Duration::from_secs(15)).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "taken back only after {:?}: {split:?}",
        stopped.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_worker_is_replaced_and_publishes_nothing_for_what_it_lost() {
    let mut stack = cluster(&["w1", "w2"]).await;
    let split = wait_balanced(&stack, &["w1", "w2"], Duration::from_secs(15)).await;
    // A board in one of w1's shards.
    let board = (0..)
        .map(|i| format!("st-{i}"))
        .find(|b| split["w1"].contains(&shard_of(b)))
        .unwrap();
    stack.create_board(&board, &[("p", "P")]).await;
    let seen = follow(subscribe_via(&stack, 1, &board).await);
    stack.score_add(&board, "p", 1).await;
    assert!(wait_score(&seen, 1, Duration::from_secs(5)).await);

    let published_before = stack
        .worker_metric("w1", "dblistener_publishes_total")
        .await
        .expect("metrics");
    let takes_before = stack
        .worker_metric("w1", "dblistener_lease_takes_total")
        .await
        .expect("metrics");
    stack.named_worker("w1").process.signal("STOP");
    let frozen = Instant::now();
    // w2 takes every shard once w1's leases expire, within the TTL and a
    // renewal period.
    loop {
        let holders = stack.lease_holders().await;
        if holders.values().all(|h| h.as_deref() == Some("w2")) {
            break;
        }
        assert!(
            frozen.elapsed() < TTL + Duration::from_secs(2),
            "no takeover during the stall: {holders:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let w2_published = stack
        .worker_metric("w2", "dblistener_publishes_total")
        .await
        .unwrap_or(0.0);
    stack.score_add(&board, "p", 1).await;
    assert!(
        wait_score(&seen, 2, Duration::from_secs(5)).await,
        "{:?}",
        seen.all()
    );
    assert!(
        stack
            .worker_metric("w2", "dblistener_publishes_total")
            .await
            .unwrap_or(0.0)
            > w2_published,
        "the update came from w2"
    );
    while frozen.elapsed() < TTL * 2 {
        sleep(Duration::from_millis(100)).await;
    }
    // Changes w1 will find in its socket when it wakes.
    stack.score_add(&board, "p", 1).await;
    assert!(wait_score(&seen, 3, Duration::from_secs(5)).await);

    stack.named_worker("w1").process.signal("CONT");
    // Until it takes a lease again, it publishes nothing at all.
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(3) {
        let takes = stack
            .worker_metric("w1", "dblistener_lease_takes_total")
            .await;
        let published = stack
            .worker_metric("w1", "dblistener_publishes_total")
            .await;
        if takes.is_some_and(|t| t > takes_before) {
            break;
        }
        if let Some(p) = published {
            assert_eq!(p, published_before, "w1 published after its leases ran out");
        }
        sleep(Duration::from_millis(20)).await;
    }
    // And it rejoins: the shards are split again, and updates keep flowing
    // in order.
    wait_balanced(&stack, &["w1", "w2"], Duration::from_secs(15)).await;
    stack.score_add(&board, "p", 1).await;
    assert!(
        wait_score(&seen, 4, Duration::from_secs(5)).await,
        "{:?}",
        seen.all()
    );
    let all = seen.all();
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "{all:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn both_proxies_get_every_update_and_route_to_both_origins() {
    let mut stack = cluster(&["w1", "w2"]).await;
    stack.create_board("two", &[("p", "P")]).await;
    let via_one = follow(subscribe_via(&stack, 0, "two").await);
    let via_two = follow(subscribe_via(&stack, 1, "two").await);
    for n in 1..=10 {
        stack.score_add("two", "p", 1).await;
        assert!(
            wait_score(&via_one, n, Duration::from_secs(5)).await,
            "{:?}",
            via_one.all()
        );
        assert!(
            wait_score(&via_two, n, Duration::from_secs(5)).await,
            "{:?}",
            via_two.all()
        );
    }
    // Every update reached both: the scores seen are 1..=10, each once
    // (an update may come twice only with the same score).
    for seen in [&via_one, &via_two] {
        let mut distinct = seen.all();
        distinct.dedup();
        // The first is the snapshot the stream opened with.
        assert_eq!(distinct, (0..=10).collect::<Vec<_>>());
    }

    // With the first origin down, both proxies still answer, through the
    // second one.
    stack.stop_web();
    for base in [stack.pushpin.url(), stack.extra_pushpins[0].url()] {
        let resp = stack
            .client
            .post(format!("{base}/boards/two/players/p/score-add/"))
            .json(&json!({"value": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "via {base}");
    }
    assert!(wait_score(&via_one, 12, Duration::from_secs(5)).await);
    assert!(wait_score(&via_two, 12, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_proxy_down_the_other_still_gets_every_update() {
    let mut stack = cluster(&["w1"]).await;
    stack.create_board("half", &[("p", "P")]).await;
    let via_two = follow(subscribe_via(&stack, 1, "half").await);
    stack.score_add("half", "p", 1).await;
    assert!(wait_score(&via_two, 1, Duration::from_secs(5)).await);
    // Every publish now fails on the first Pushpin and reaches the second:
    // each update must reach its subscribers, though the item before it
    // did not reach every proxy (the `prev-id` chain is broken there).
    stack.pushpin_at(0).kill_hard();
    for n in 2..=4 {
        // Straight to the origin: the first Pushpin is down.
        let resp = stack
            .client
            .post(stack.origin_url("/boards/half/players/p/score-add/"))
            .json(&json!({"value": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            wait_score(&via_two, n, Duration::from_secs(10)).await,
            "update {n} not seen through the second Pushpin: {:?}",
            via_two.all()
        );
    }
    // Back up, the first proxy's new subscribers get the board, and both
    // get what follows.
    stack.restart_pushpin_at(0).await.expect("pushpin back");
    let via_one = follow(subscribe_via(&stack, 0, "half").await);
    stack.score_add("half", "p", 1).await;
    for seen in [&via_one, &via_two] {
        assert!(
            wait_score(seen, 5, Duration::from_secs(10)).await,
            "{:?}",
            seen.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_another_shard_count_is_kept_out_until_the_others_are_gone() {
    let mut stack = cluster(&["w1", "w2"]).await;
    wait_balanced(&stack, &["w1", "w2"], Duration::from_secs(15)).await;
    stack.create_board("layout", &[("p", "P")]).await;
    let seen = follow(subscribe_via(&stack, 0, "layout").await);
    stack.score_add("layout", "p", 1).await;
    assert!(wait_score(&seen, 1, Duration::from_secs(5)).await);

    // Eight shards cut the slots differently from sixteen: the newcomer is
    // refused, says why, and holds nothing, however long it runs.
    stack
        .add_worker("w8", &[("WORKER_SHARDS", "8")])
        .await
        .expect("worker");
    sleep(TTL * 2).await;
    let (status, health) = stack.worker_health("w8").await.expect("w8 answers");
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "misconfigured", "{health}");
    assert_eq!(health["layout"]["worker_shards"], 8, "{health}");
    assert_eq!(health["layout"]["running"], 16, "{health}");
    let members: BTreeSet<&str> = health["layout"]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    assert_eq!(members, BTreeSet::from(["w1", "w2"]), "{health}");
    assert!(
        health["error"]
            .as_str()
            .is_some_and(|e| e.contains("WORKER_SHARDS is 8 here but 16")),
        "{health}"
    );
    assert_eq!(
        stack.worker_metric("w8", "dblistener_layout_refused").await,
        Some(1.0)
    );
    assert_eq!(reported(&stack).await["w8"], BTreeSet::new());
    // The others still split the sixteen between the two of them.
    wait_balanced(&stack, &["w1", "w2"], Duration::from_secs(5)).await;
    stack.score_add("layout", "p", 1).await;
    assert!(wait_score(&seen, 2, Duration::from_secs(5)).await);

    // Once both have stopped, the layout is the newcomer's: it takes the
    // eight shards at its next round and publishes every board.
    for id in ["w1", "w2"] {
        let status = stack.named_worker(id).process.stop(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{id}: {status:?}");
    }
    let deadline = Instant::now() + TTL * 2 + Duration::from_secs(5);
    loop {
        let health = stack.worker_health("w8").await;
        let shards = health
            .as_ref()
            .map(|(_, h)| h["leases"]["shards"].as_array().map_or(0, Vec::len));
        if health.as_ref().is_some_and(|(s, _)| *s == 200) && shards == Some(8) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "w8 did not take the layout over: {health:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    let holders = stack.lease_holders().await;
    for k in 0..8 {
        assert_eq!(holders[&k].as_deref(), Some("w8"), "shard {k}: {holders:?}");
    }
    assert_eq!(
        stack.worker_metric("w8", "dblistener_layout_refused").await,
        Some(0.0)
    );
    stack.score_add("layout", "p", 1).await;
    assert!(
        wait_score(&seen, 3, Duration::from_secs(5)).await,
        "{:?}",
        seen.all()
    );
    let all = seen.all();
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "{all:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn boards_of_an_earlier_release_get_their_slot_and_are_published() {
    use unreql::{func, r};
    let mut stack = Stack::start_with(StackOptions {
        worker: false,
        ..StackOptions::default()
    })
    .await
    .expect("stack");
    stack.create_board("old", &[("p", "P"), ("q", "Q")]).await;
    // As an earlier release wrote them: no slot, and no migration marker.
    let session = stack.db_session().await;
    for table in ["boards", "players"] {
        let _: serde_json::Value = r
            .table(table)
            .replace(func!(|doc| doc.without("slot")))
            .exec(&session)
            .await
            .expect("strip the slots");
    }
    let _: serde_json::Value = r
        .table("leases")
        .get("migration:slot")
        .delete(())
        .exec(&session)
        .await
        .expect("forget the migration");

    // The worker migrates at start, then follows the board.
    stack.add_worker("w1", &[]).await.expect("worker");
    let slotted: i64 = r
        .table("players")
        .has_fields("slot")
        .count(())
        .exec(&session)
        .await
        .unwrap();
    assert_eq!(slotted, 2);
    let seen = follow(subscribe_via(&stack, 0, "old").await);
    stack.score_add("old", "p", 5).await;
    assert!(
        wait_score(&seen, 5, Duration::from_secs(5)).await,
        "{:?}",
        seen.all()
    );

    // `leaderboard-web migrate` does it again, finding nothing to change.
    let out = std::process::Command::new(testkit::binary(testkit::Binary::Web))
        .arg("migrate")
        .env("DATABASE_URL", stack.database_url())
        .output()
        .expect("run migrate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 boards and 0 players"), "{text}");
}
