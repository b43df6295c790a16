//! Boards that reset on a schedule, through real Pushpin, driven by cron
//! expressions with seconds so that tests do not wait for midnight.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{Stack, StackOptions};
use tokio::time::{sleep, Instant};
use unreql::r;

async fn add_players(stack: &Stack, board: &str, ids: &[&str]) {
    for id in ids {
        let resp = stack
            .post_json(
                &format!("/boards/{board}/players/"),
                json!({ "id": id, "name": id }),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
}

/// Waits until the board has at least `n` finished periods.
async fn wait_periods(stack: &Stack, board: &str, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = stack.get_json(&format!("/boards/{board}/periods/")).await;
        assert_eq!(status, 200, "{body}");
        let periods = body["periods"].as_array().cloned().unwrap_or_default();
        if periods.len() >= n {
            return periods;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} periods after {within:?}: {body}",
            periods.len()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_resets_archives_its_period_and_tells_subscribers() {
    let stack = Stack::start().await.unwrap();
    let (status, board) = stack
        .post_json_answer(
            "/boards/",
            json!({"id": "daily", "reset": "daily", "top": 3}),
        )
        .await;
    assert_eq!(status, 201, "{board}");
    assert_eq!(board["rules"]["reset"], "daily");
    assert_eq!(board["period"]["number"], 1);
    assert!(board["next_reset"]
        .as_str()
        .unwrap()
        .ends_with("T00:00:00.000Z"));

    // Every three seconds: the test's clock.
    let (status, board) = stack
        .post_json_answer(
            "/boards/",
            json!({"id": "b", "reset": "*/3 * * * * *", "top": 2}),
        )
        .await;
    assert_eq!(status, 201, "{board}");
    add_players(&stack, "b", &["ann", "bob", "cat"]).await;
    // The first period ends at the next multiple of three seconds, perhaps
    // at once: start from the beginning of the second, which lasts 3 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.get_json("/boards/b/").await.1["period"]["number"] != 2 {
        assert!(Instant::now() < deadline, "period 1 never ended");
        sleep(Duration::from_millis(20)).await;
    }
    stack.score_add("b", "ann", 5).await;
    stack.score_add("b", "bob", 7).await;
    stack.score_add("b", "cat", 1).await;
    let mut sub = stack.subscribe("b").await;

    // The reset event, with the archive, then the new period's snapshot.
    let (archived, _) = sub
        .wait_for(Duration::from_secs(10), |e| {
            (e.event == "reset").then(|| e.json())
        })
        .await
        .expect("event: reset");
    assert_eq!(archived["number"], 2);
    assert_eq!(archived["players"], 3);
    assert_eq!(
        archived["top"],
        json!([
            {"id": "bob", "name": "bob", "score": 7, "rank": 1},
            {"id": "ann", "name": "ann", "score": 5, "rank": 2},
        ])
    );
    let next = sub
        .next(Duration::from_secs(5))
        .await
        .expect("the new snapshot");
    assert_eq!(next.event, "update");
    let board = next.json();
    assert_eq!(board["period"]["number"], 3);
    assert_eq!(board["period"]["start"], archived["end"]);
    assert!(board["players"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["score"] == 0));

    // Readable afterwards.
    let periods = wait_periods(&stack, "b", 2, Duration::from_secs(1)).await;
    assert!(periods.contains(&archived), "{periods:?}");
    let (status, one) = stack.get_json("/boards/b/periods/2/").await;
    assert_eq!((status, &one), (200, &archived));
    assert_eq!(stack.get_json("/boards/b/periods/99/").await.0, 404);
    assert_eq!(stack.get_json("/boards/b/periods/x/").await.0, 400);
    assert_eq!(stack.get_json("/boards/none/periods/").await.0, 404);
    for bad in [
        json!({"reset": "sometimes"}),
        json!({"reset": 5}),
        json!({"reset": "61 * * * *"}),
    ] {
        let (status, body) = stack.post_json_answer("/boards/", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_score_add_counts_in_exactly_one_period_with_two_workers() {
    let mut stack = Stack::start_with(StackOptions {
        worker: false,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.add_worker("w1", &[]).await.unwrap();
    stack.add_worker("w2", &[]).await.unwrap();
    stack
        .post_json_answer("/boards/", json!({"id": "b", "reset": "*/2 * * * * *"}))
        .await;
    add_players(&stack, "b", &["ann"]).await;

    // One client adds 1 as fast as it can for about seven seconds: several
    // resets fall among its writes.
    let deadline = Instant::now() + Duration::from_secs(7);
    let mut counted = 0i64;
    while Instant::now() < deadline {
        let resp = stack
            .post_json("/boards/b/players/ann/score-add/", json!({"value": 1}))
            .await;
        assert_eq!(resp.status(), 200);
        counted += 1;
    }
    // Let the last period end and be archived.
    let (_, board) = stack.get_json("/boards/b/").await;
    let current = board["period"]["number"].as_u64().unwrap();
    let periods = wait_periods(&stack, "b", current as usize, Duration::from_secs(10)).await;
    let numbers: Vec<u64> = periods
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).rev().collect();
    assert_eq!(numbers, expected, "one archive per period, none missing");
    assert!(numbers.len() >= 3, "{numbers:?}");
    let archived: i64 = periods
        .iter()
        .map(|p| p["top"][0]["score"].as_i64().unwrap_or(0))
        .sum();
    let (_, ann) = stack.get_json("/boards/b/players/ann/").await;
    let now = ann["score"].as_i64().unwrap();
    assert_eq!(
        archived + now,
        counted,
        "archived {archived} + current {now}"
    );

    // Each period archived once, by one of the workers.
    let session = stack.db_session().await;
    let stored: Vec<Value> = {
        use futures::TryStreamExt;
        r.table("periods")
            .run::<_, Value>(&session)
            .try_collect()
            .await
            .unwrap()
    };
    let mut per_number: BTreeMap<u64, usize> = BTreeMap::new();
    for p in stored
        .iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]))
    {
        *per_number.entry(p["number"].as_u64().unwrap()).or_default() += 1;
    }
    assert!(per_number.values().all(|n| *n == 1), "{per_number:?}");
}

/// A board `b` that resets once a year, with ann at 4 and bob at 9 in its
/// first period, and its worker killed.
async fn board_of_two_without_its_worker() -> Stack {
    let mut stack = Stack::start().await.unwrap();
    stack
        .post_json_answer(
            "/boards/",
            json!({"id": "b", "reset": "0 0 1 1 *", "top": 5}),
        )
        .await;
    add_players(&stack, "b", &["ann", "bob"]).await;
    stack.score_add("b", "ann", 4).await;
    stack.score_add("b", "bob", 9).await;
    stack.kill_worker();
    stack
}

/// Adds `value` to `player` on board `b` once the write is taken, within
/// 15 s of 503s (the board's reset is being caught up).
async fn add_once_accepted(stack: &Stack, player: &str, value: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = stack
            .post_json_answer(
                &format!("/boards/b/players/{player}/score-add/"),
                json!({ "value": value }),
            )
            .await;
        if status == 200 {
            return;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "still refused: {body}");
        sleep(Duration::from_millis(200)).await;
    }
}

/// Sets fields of board `b` straight in the database, as a worker that
/// died half-way (or is late) would have left them.
async fn set_board_b(session: &unreql::Session, fields: Value) {
    let _: Value = r
        .table("boards")
        .get("b")
        .update(r.expr(fields))
        .exec(session)
        .await
        .unwrap();
}

/// Player `id` of board `b`, as stored.
async fn player_of_b(session: &unreql::Session, id: &str) -> Value {
    r.table("players")
        .get(format!("b:{id}"))
        .exec(session)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_left_half_done_is_finished_once_by_the_next_holder() {
    // The worker dies right after switching the board over: the board is in
    // period 2 with period 1 marked as being archived, its players still in
    // period 1.
    let mut stack = board_of_two_without_its_worker().await;
    let session = stack.db_session().await;
    set_board_b(
        &session,
        json!({
            "period": {"n": 2, "start": 1_000, "end": 4_102_444_800_000_i64},
            "archiving": {"n": 1, "start": 0, "end": 1_000},
        }),
    )
    .await;
    // A write after the switch lands in period 2.
    stack.score_add("b", "ann", 1).await;

    stack.start_worker().await.unwrap();
    let periods = wait_periods(&stack, "b", 1, Duration::from_secs(10)).await;
    assert_eq!(periods.len(), 1);
    assert_eq!(periods[0]["number"], 1);
    assert_eq!(periods[0]["players"], 2);
    assert_eq!(
        periods[0]["top"],
        json!([
            {"id": "bob", "name": "bob", "score": 9, "rank": 1},
            {"id": "ann", "name": "ann", "score": 4, "rank": 2},
        ])
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, board) = stack.get_json("/boards/b/").await;
        let scores: BTreeMap<String, i64> = testkit::scores(&board).into_iter().collect();
        if scores == BTreeMap::from([("ann".to_owned(), 1), ("bob".to_owned(), 0)]) {
            break;
        }
        assert!(Instant::now() < deadline, "{board}");
        sleep(Duration::from_millis(100)).await;
    }
    // Finished: no mark left, and a restart archives nothing again.
    stack.kill_worker();
    stack.start_worker().await.unwrap();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        wait_periods(&stack, "b", 1, Duration::from_secs(1))
            .await
            .len(),
        1
    );
    let doc: Value = r.table("boards").get("b").exec(&session).await.unwrap();
    assert!(doc.get("archiving").is_none(), "{doc}");
}

/// A reset left half done past the next period's end: a player already
/// moved into that period keeps the unarchived period's score in `prev`,
/// and a write that would move it on again is refused (503) rather than
/// erase it; once the next holder has finished the reset, it goes through
/// and every period holds its own writes.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_waits_rather_than_erase_a_period_not_yet_archived() {
    let mut stack = board_of_two_without_its_worker().await;
    let session = stack.db_session().await;
    let set_period = |end: i64| {
        json!({
            "period": {"n": 2, "start": 1_000, "end": end},
            "archiving": {"n": 1, "start": 0, "end": 1_000},
        })
    };
    // The worker died right after switching to period 2; ann's next write
    // moves her into it, keeping her period-1 score.
    set_board_b(&session, set_period(4_102_444_800_000)).await;
    stack.score_add("b", "ann", 1).await;
    // Period 2 ends too, its reset still unfinished.
    set_board_b(&session, set_period(2_000)).await;
    let (status, body) = stack
        .post_json_answer("/boards/b/players/ann/score-add/", json!({"value": 2}))
        .await;
    assert_eq!(status, 503, "{body}");
    let ann = player_of_b(&session, "ann").await;
    assert_eq!(
        (&ann["prev"]["n"], &ann["prev"]["score"]),
        (&json!(1), &json!(4)),
        "{ann}"
    );

    stack.start_worker().await.unwrap();
    add_once_accepted(&stack, "ann", 2).await;
    let periods = wait_periods(&stack, "b", 2, Duration::from_secs(15)).await;
    let by_number: BTreeMap<u64, Value> = periods
        .iter()
        .map(|p| (p["number"].as_u64().unwrap(), p["top"].clone()))
        .collect();
    assert_eq!(
        by_number[&1],
        json!([
            {"id": "bob", "name": "bob", "score": 9, "rank": 1},
            {"id": "ann", "name": "ann", "score": 4, "rank": 2},
        ])
    );
    assert_eq!(
        by_number[&2],
        json!([
            {"id": "ann", "name": "ann", "score": 1, "rank": 1},
            {"id": "bob", "name": "bob", "score": 0, "rank": 2},
        ])
    );
}

/// A board more than a period behind its schedule (its worker is gone past
/// the end of the period after the board's): which period a write belongs
/// to is not known yet, so the write is refused (503 with `Retry-After`)
/// and changes nothing; once a worker has caught the board up, it counts in
/// the period that was due, and the late period holds only its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_two_periods_past_a_late_board_waits_for_its_reset() {
    let mut stack = board_of_two_without_its_worker().await;
    let session = stack.db_session().await;
    set_board_b(
        &session,
        json!({
            "period": {"n": 1, "start": 0, "end": 1_000, "next_end": 2_000},
        }),
    )
    .await;
    let resp = stack
        .post_json("/boards/b/players/ann/score-add/", json!({"value": 2}))
        .await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "database_unavailable", "{body}");
    let ann = player_of_b(&session, "ann").await;
    assert_eq!(
        (&ann["score"], &ann["period"]),
        (&json!(4), &json!(1)),
        "{ann}"
    );

    stack.start_worker().await.unwrap();
    add_once_accepted(&stack, "ann", 2).await;
    let periods = wait_periods(&stack, "b", 1, Duration::from_secs(15)).await;
    assert_eq!(periods[0]["number"], 1);
    assert_eq!(
        periods[0]["top"],
        json!([
            {"id": "bob", "name": "bob", "score": 9, "rank": 1},
            {"id": "ann", "name": "ann", "score": 4, "rank": 2},
        ])
    );
    let (_, board) = stack.get_json("/boards/b/").await;
    assert_eq!(board["period"]["number"], 2, "{board}");
    let scores: BTreeMap<String, i64> = testkit::scores(&board).into_iter().collect();
    assert_eq!(scores.get("ann"), Some(&2), "{board}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_reset_best_boards_start_unscored() {
    let stack = Stack::start().await.unwrap();
    stack
        .post_json_answer(
            "/boards/",
            json!({"id": "laps", "order": "asc", "operator": "best", "reset": "*/2 * * * * *"}),
        )
        .await;
    add_players(&stack, "laps", &["ann"]).await;
    let resp = stack
        .post_json("/boards/laps/players/ann/score/", json!({"value": 61}))
        .await;
    assert_eq!(resp.status(), 200);
    // The submission lands in the first period or, if a reset fell between
    // the board's creation and it, the second.
    let periods = wait_periods(&stack, "laps", 2, Duration::from_secs(10)).await;
    assert!(
        periods.iter().any(|p| p["top"][0]["score"] == 61),
        "{periods:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, ann) = stack.get_json("/boards/laps/players/ann/").await;
        if ann["score"].is_null() {
            assert!(ann.get("rank").is_none(), "{ann}");
            break;
        }
        assert!(Instant::now() < deadline, "{ann}");
        sleep(Duration::from_millis(100)).await;
    }
}

/// A score-add is first sent without reading the board, and again with the
/// read when the player turns out to be on a board that resets; the origin
/// remembers such boards. Deleting a board and creating it again with other
/// rules must not fool it either way.
#[tokio::test(flavor = "multi_thread")]
async fn score_adds_follow_a_board_deleted_and_created_again_with_other_rules() {
    let stack = Stack::start().await.unwrap();
    let session = stack.db_session().await;
    let stored = |session: &unreql::Session| {
        let session = session.clone();
        async move {
            let doc: Value = r
                .table("players")
                .get("again:p")
                .exec(&session)
                .await
                .unwrap();
            doc
        }
    };
    let score_add = |value: i64, key: Option<&'static str>| {
        let stack = &stack;
        async move {
            let mut req = stack
                .client
                .post(format!(
                    "{}/boards/again/players/p/score-add/",
                    stack.pushpin.url()
                ))
                .json(&json!({ "value": value }));
            if let Some(key) = key {
                req = req.header("Idempotency-Key", key);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or_default())
        }
    };
    let create = |rules: Value| {
        let stack = &stack;
        async move {
            let mut body = json!({"id": "again", "name": "Again"});
            body.as_object_mut()
                .unwrap()
                .extend(rules.as_object().unwrap().clone());
            let (status, answer) = stack.post_json_answer("/boards/", body).await;
            assert_eq!(status, 201, "{answer}");
            add_players(stack, "again", &["p"]).await;
        }
    };

    for round in 0..2 {
        // A board that resets: its players carry their period.
        create(json!({"reset": "daily"})).await;
        for expected in [1, 2] {
            let (status, body) = score_add(1, None).await;
            assert_eq!(status, 200, "round {round}: {body}");
            assert_eq!(body["score"], expected, "round {round}: {body}");
        }
        let key = if round == 0 { "again-0" } else { "again-1" };
        for _ in 0..2 {
            let (status, body) = score_add(5, Some(key)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["score"], 7, "a keyed retry counts once: {body}");
        }
        let doc = stored(&session).await;
        assert_eq!(doc["score"], 7, "{doc}");
        assert_eq!(doc["period"], 1, "{doc}");
        assert_eq!(stack.delete("/boards/again/").await.status(), 204);

        // The same id without a reset.
        create(json!({})).await;
        let (status, body) = score_add(3, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["score"], 3, "{body}");
        let doc = stored(&session).await;
        assert_eq!(doc["score"], 3, "{doc}");
        assert!(doc.get("period").is_none(), "{doc}");
        assert_eq!(stack.delete("/boards/again/").await.status(), 204);
    }
}
