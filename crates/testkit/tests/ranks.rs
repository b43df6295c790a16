//! Ranks at any depth, through real Pushpin, the real origin and worker, on
//! whichever server the suite runs on: random writes on boards of several
//! hundred players (several leaves of the rank digest) against a model that
//! sorts; a rank read right after a write; pages from a rank; friends; the
//! keeper killed with `kill -9` while writes go on; and the query
//! parameters refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use testkit::Stack;

/// How long a board must be quiet before every rank is exact, as docs/scaling.md
/// states it, and how long a test gives it on a loaded machine.
const STATED_LAG: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(15);

/// A board as the model holds it: each player's score (`None` until a
/// first submission on a `set`/`best` board).
struct Model {
    asc: bool,
    operator: &'static str,
    players: BTreeMap<String, Option<i64>>,
}

impl Model {
    /// `(id, score)` in rank order: the better score first, ties by id
    /// (descending on a `desc` board, ascending on an `asc` one).
    fn ranking(&self) -> Vec<(String, i64)> {
        let mut ranked: Vec<(String, i64)> = self
            .players
            .iter()
            .filter_map(|(id, s)| s.map(|s| (id.clone(), s)))
            .collect();
        ranked.sort_by(|a, b| {
            let natural = (a.1, &a.0).cmp(&(b.1, &b.0));
            if self.asc {
                natural
            } else {
                natural.reverse()
            }
        });
        ranked
    }

    fn apply(&mut self, player: &str, value: i64, score_add: bool) {
        let entry = self.players.entry(player.to_owned()).or_insert(None);
        let next = match (self.operator, *entry) {
            _ if score_add => entry.unwrap_or(0) + value,
            ("incr", s) => s.unwrap_or(0) + value,
            ("set", _) | (_, None) => value,
            ("best", Some(s)) if self.asc => s.min(value),
            ("best", Some(s)) => s.max(value),
            (_, Some(s)) => s,
        };
        *entry = Some(next);
    }
}

async fn create_players(stack: &Stack, board: &str, ids: &[String]) {
    futures::stream::iter(ids)
        .for_each_concurrent(16, |id| async move {
            let (status, body) = stack
                .post_json_answer(
                    &format!("/boards/{board}/players/"),
                    json!({ "id": id, "name": id }),
                )
                .await;
            assert_eq!(status, 201, "create {id}: {body}");
        })
        .await;
}

/// `(id, score, rank)` of each player of a JSON list.
fn listed(v: &Value) -> Vec<(String, i64, u64)> {
    v["players"]
        .as_array()
        .unwrap_or_else(|| panic!("players in {v}"))
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["score"].as_i64().unwrap(),
                p["rank"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Everything a client can read of the board's ranks, compared with the
/// model; the first difference found, if any.
async fn differences(stack: &Stack, board: &str, model: &Model) -> Option<String> {
    let ranking = model.ranking();
    let n = ranking.len() as u64;
    let expect = |i: usize| -> (String, i64, u64) {
        let (id, s) = &ranking[i];
        (id.clone(), *s, i as u64 + 1)
    };
    // Every player's own rank, out of how many.
    for (i, (id, score)) in ranking.iter().enumerate() {
        let (status, p) = stack
            .get_json(&format!("/boards/{board}/players/{id}/"))
            .await;
        if status != 200 {
            return Some(format!("{id}: {status} {p}"));
        }
        let got = (
            p["score"].as_i64(),
            p["rank"].as_u64(),
            p["out_of"].as_u64(),
        );
        if got != (Some(*score), Some(i as u64 + 1), Some(n)) {
            return Some(format!("{id}: expected ({score}, {}, {n}), got {p}", i + 1));
        }
    }
    // A walk by cursor, pages of 37.
    let mut walked = Vec::new();
    let mut path = format!("/boards/{board}/players/?limit=37");
    loop {
        let (status, page) = stack.get_json(&path).await;
        if status != 200 {
            return Some(format!("page {path}: {status} {page}"));
        }
        walked.extend(listed(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/boards/{board}/players/?limit=37&cursor={c}"),
            None => break,
        }
    }
    let all: Vec<_> = (0..ranking.len()).map(expect).collect();
    if walked != all {
        return Some(format!("cursor walk differs: {walked:?}"));
    }
    // Pages from ranks, and around-me next to the top, the bottom and deep.
    let last = ranking.len();
    for rank in [
        1,
        2,
        63,
        64,
        65,
        129,
        last.saturating_sub(3).max(1),
        last,
        last + 1,
    ] {
        let (status, page) = stack
            .get_json(&format!("/boards/{board}/players/?rank={rank}&limit=5"))
            .await;
        let want: Vec<_> = (rank - 1..(rank + 4).min(last)).map(expect).collect();
        if status != 200 || listed(&page) != want {
            return Some(format!("?rank={rank}: {status} {page}, expected {want:?}"));
        }
    }
    for i in [0, 1, last / 2, last - 2, last - 1] {
        let id = &ranking[i].0;
        let (status, around) = stack
            .get_json(&format!("/boards/{board}/players/{id}/around/?n=2"))
            .await;
        let want: Vec<_> = (i.saturating_sub(2)..(i + 3).min(last))
            .map(expect)
            .collect();
        if status != 200 || listed(&around) != want {
            return Some(format!("around {id}: {status} {around}, expected {want:?}"));
        }
    }
    // Friends: a few ids from everywhere, one unknown.
    let picks = [last - 1, 0, last / 3, 2 * last / 3];
    let ids: Vec<&str> = picks.iter().map(|&i| ranking[i].0.as_str()).collect();
    let (status, friends) = stack
        .get_json(&format!(
            "/boards/{board}/players/?ids={},nobody",
            ids.join(",")
        ))
        .await;
    let mut want: Vec<_> = picks.iter().map(|&i| expect(i)).collect();
    want.sort_by_key(|e| e.2);
    if status != 200 || listed(&friends) != want || friends["missing"] != json!(["nobody"]) {
        return Some(format!("friends: {status} {friends}, expected {want:?}"));
    }
    None
}

/// Waits until every read agrees with the model; the last difference if
/// it never does within [`PATIENCE`].
async fn settle(stack: &Stack, board: &str, model: &Model) {
    tokio::time::sleep(STATED_LAG).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let Some(diff) = differences(stack, board, model).await else {
            return;
        };
        if Instant::now() > deadline {
            panic!("board {board} never matched the model: {diff}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One random write: a score-add or a submission, with `?with=rank` half
/// the time. The answer's rank, when asked, is never 0 or missing.
async fn random_write(stack: &Stack, board: &str, model: &mut Model, rng: &mut StdRng) {
    let ids: Vec<String> = model.players.keys().cloned().collect();
    let player = ids[rng.gen_range(0..ids.len())].clone();
    // Values from a small range, so ties are everywhere; 0 too.
    let value: i64 = rng.gen_range(-3..=12);
    let score_add = model.operator == "incr" && rng.gen_bool(0.5);
    let with_rank = rng.gen_bool(0.5);
    let route = if score_add { "score-add" } else { "score" };
    let query = if with_rank { "?with=rank" } else { "" };
    let (status, answer) = stack
        .post_json_answer(
            &format!("/boards/{board}/players/{player}/{route}/{query}"),
            json!({ "value": value }),
        )
        .await;
    assert_eq!(status, 200, "{route} {player} {value}: {answer}");
    model.apply(&player, value, score_add);
    if with_rank && answer.get("rank").is_some() {
        let rank = answer["rank"].as_u64().unwrap_or(0);
        let out_of = answer["out_of"].as_u64().unwrap_or(0);
        assert!(
            rank >= 1 && rank <= out_of,
            "a rank read right after a write: {answer}"
        );
        assert!(answer["percentile"].as_f64().is_some(), "{answer}");
    }
    if with_rank {
        // A read right after the write always has a rank (a digest that is
        // behind answers 503 for a moment, never a wrong or missing rank).
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, p) = stack
                .get_json(&format!("/boards/{board}/players/{player}/"))
                .await;
            if status == 200 {
                let rank = p["rank"].as_u64().unwrap_or(0);
                assert!(
                    rank >= 1 && rank <= p["out_of"].as_u64().unwrap_or(0),
                    "{p}"
                );
                break;
            }
            assert!(
                status == 503 && Instant::now() < deadline,
                "read after a write: {status} {p}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ranks_at_every_depth_match_a_model_that_sorts() {
    let stack = Stack::start().await.unwrap();
    for (seed, board, order, operator) in [
        (1_u64, "inc", "desc", "incr"),
        (2, "laps", "asc", "best"),
        (3, "set", "desc", "set"),
    ] {
        let mut rng = StdRng::seed_from_u64(seed);
        let (status, body) = stack
            .post_json_answer(
                "/boards/",
                json!({ "id": board, "order": order, "operator": operator }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        // Enough players for several leaves of the digest, and for ranks
        // past what a board without one may count (256).
        let ids: Vec<String> = (0..420).map(|i| format!("p{i:03}")).collect();
        create_players(&stack, board, &ids).await;
        let mut model = Model {
            asc: order == "asc",
            operator,
            players: ids
                .iter()
                .map(|id| (id.clone(), (operator == "incr").then_some(0)))
                .collect(),
        };
        // Everyone scores on a `set`/`best` board, and some move on any.
        for id in &ids {
            if operator != "incr" || rng.gen_bool(0.3) {
                let value = rng.gen_range(0..60);
                let (status, answer) = stack
                    .post_json_answer(
                        &format!("/boards/{board}/players/{id}/score/"),
                        json!({ "value": value }),
                    )
                    .await;
                assert_eq!(status, 200, "{answer}");
                model.apply(id, value, false);
            }
        }
        settle(&stack, board, &model).await;
        // Then bursts of random writes, each followed by quiet.
        for _ in 0..2 {
            for _ in 0..150 {
                random_write(&stack, board, &mut model, &mut rng).await;
            }
            settle(&stack, board, &model).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_deleted_and_created_again_ranks_afresh() {
    let stack = Stack::start().await.unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("p{i:03}")).collect();
    for round in 0..2 {
        let order = if round == 0 { "desc" } else { "asc" };
        let (status, body) = stack
            .post_json_answer("/boards/", json!({ "id": "again", "order": order }))
            .await;
        assert_eq!(status, 201, "{body}");
        create_players(&stack, "again", &ids).await;
        let mut model = Model {
            asc: order == "asc",
            operator: "incr",
            players: ids.iter().map(|id| (id.clone(), Some(0))).collect(),
        };
        let mut rng = StdRng::seed_from_u64(round);
        for _ in 0..120 {
            random_write(&stack, "again", &mut model, &mut rng).await;
        }
        settle(&stack, "again", &model).await;
        assert_eq!(stack.delete("/boards/again/").await.status(), 204);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ranks_come_right_after_their_keeper_is_killed() {
    let mut stack = Stack::start().await.unwrap();
    let ids: Vec<String> = (0..400).map(|i| format!("p{i:03}")).collect();
    assert_eq!(
        stack
            .post_json("/boards/", json!({ "id": "k", "order": "desc" }))
            .await
            .status(),
        201
    );
    create_players(&stack, "k", &ids).await;
    let mut model = Model {
        asc: false,
        operator: "incr",
        players: ids.iter().map(|id| (id.clone(), Some(0))).collect(),
    };
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..100 {
        random_write(&stack, "k", &mut model, &mut rng).await;
    }
    settle(&stack, "k", &model).await;
    // The keeper dies with everything in memory; writes go on, each read
    // right after still answering a rank.
    stack.kill_worker();
    for _ in 0..150 {
        random_write(&stack, "k", &mut model, &mut rng).await;
    }
    stack.set_worker_env("RUST_LOG", "dblistener=debug,info");
    stack.start_worker().await.unwrap();
    for _ in 0..50 {
        random_write(&stack, "k", &mut model, &mut rng).await;
    }
    // The new keeper takes the shard once the old lease expires, recounts
    // the digest it finds, and every rank is exact again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    settle(&stack, "k", &model).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rank_parameters_are_checked_and_unknown_ones_refused() {
    let stack = Stack::start().await.unwrap();
    stack
        .create_board("b", &[("ann", "Ann"), ("bob", "Bob")])
        .await;
    stack.score_add("b", "ann", 5).await;
    let many: Vec<String> = (0..101).map(|i| format!("x{i}")).collect();
    for bad in [
        "/boards/b/players/?rank=0".to_owned(),
        "/boards/b/players/?rank=abc".to_owned(),
        "/boards/b/players/?rank=1&cursor=WzEsImEiXQ".to_owned(),
        "/boards/b/players/?ids=".to_owned(),
        "/boards/b/players/?ids=ann,b%3Ad".to_owned(),
        "/boards/b/players/?ids=ann&limit=5".to_owned(),
        format!("/boards/b/players/?ids={}", many.join(",")),
        "/boards/b/players/?rnak=5".to_owned(),
        "/boards/b/players/?limit=5&limit=6".to_owned(),
        "/boards/b/players/ann/?with=rank".to_owned(),
        "/boards/b/players/ann/around/?m=2".to_owned(),
        "/boards/b/?foo=1".to_owned(),
        "/boards/?page=2".to_owned(),
        "/boards/b/periods/?x=1".to_owned(),
    ] {
        let (status, body) = stack.get_json(&bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request", "{bad}: {body}");
    }
    for bad in [
        "/boards/b/players/ann/score-add/?with=score",
        "/boards/b/players/ann/score-add/?rank=1",
        "/boards/b/players/ann/score/?with=",
    ] {
        let (status, body) = stack.post_json_answer(bad, json!({ "value": 1 })).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Nothing was written by the refused writes. (`out_of` comes from the
    // digest, written by the worker a moment after the players.)
    let deadline = Instant::now() + PATIENCE;
    let ann = loop {
        let (_, ann) = stack.get_json("/boards/b/players/ann/").await;
        if ann["out_of"] == 2 || Instant::now() > deadline {
            break ann;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (
            &ann["score"],
            &ann["rank"],
            &ann["out_of"],
            &ann["percentile"]
        ),
        (&json!(5), &json!(1), &json!(2), &json!(100.0))
    );
    let (_, bob) = stack.get_json("/boards/b/players/bob/").await;
    assert_eq!(
        (&bob["rank"], &bob["percentile"]),
        (&json!(2), &json!(50.0))
    );
    // A write asked for its rank answers it.
    let (status, answer) = stack
        .post_json_answer(
            "/boards/b/players/bob/score-add/?with=rank",
            json!({ "value": 9 }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["score"], &answer["rank"], &answer["out_of"]),
        (&json!(9), &json!(1), &json!(2))
    );
    // A page past the end is empty; a rank page says out of how many, and
    // far past the end too: further than a rank may be counted on the
    // index, the board still answers that it ends before (no 503). `out_of`
    // is the digest's count, exact within the stated lag of bob's write.
    for rank in [3, 100, 1000, 9_007_199_254_740_991_u64] {
        let url = format!("/boards/b/players/?rank={rank}&limit=5");
        let deadline = Instant::now() + PATIENCE;
        let (status, page) = loop {
            let (status, page) = stack.get_json(&url).await;
            if page["out_of"] == 2 || Instant::now() > deadline {
                break (status, page);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status, 200, "rank {rank}: {page}");
        assert_eq!(page["players"], json!([]), "rank {rank}");
        assert_eq!(page["out_of"], 2, "rank {rank}");
    }
    let (status, _) = stack.get_json("/boards/none/players/?rank=1").await;
    assert_eq!(status, 404);
    let (status, _) = stack.get_json("/boards/none/players/?ids=a").await;
    assert_eq!(status, 404);
}

/// Boards made one after another, each player created and then given a
/// score one request at a time (as the live page's own test does): every
/// board gets its digest, with every player in it.
#[tokio::test(flavor = "multi_thread")]
async fn boards_made_one_after_another_each_get_every_player_ranked() {
    let stack = Stack::start().await.unwrap();
    let mut boards = Vec::new();
    for b in 0..8 {
        let board = format!("seq{b}");
        let (status, body) = stack
            .post_json_answer("/boards/", json!({ "id": board, "order": "desc" }))
            .await;
        assert_eq!(status, 201, "{body}");
        let mut model = Model {
            asc: false,
            operator: "incr",
            players: BTreeMap::new(),
        };
        for k in 0..40 {
            let id = format!("{board}-p{k}");
            create_players(&stack, &board, std::slice::from_ref(&id)).await;
            let value = 400 - 10 * k as i64;
            let (status, answer) = stack
                .post_json_answer(
                    &format!("/boards/{board}/players/{id}/score-add/"),
                    json!({ "value": value }),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            model.players.insert(id, Some(value));
        }
        boards.push((board, model));
    }
    for (board, model) in &boards {
        settle(&stack, board, model).await;
    }
}
