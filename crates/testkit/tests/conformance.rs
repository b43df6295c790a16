//! The project's own queries against answers recorded from a real
//! RethinkDB 2.4.4.
//!
//! Every query the store sends is built by `store::reql`; this test sends
//! each one, in a scripted session (schema set-up, writes, reads, errors,
//! the changefeed, the catalog repair), and compares the answers, errors
//! included, with `golden/store-queries.json`. CI runs it on the dev server,
//! so a divergence from the real server fails the build and is fixed in the
//! dev server.
//!
//! To record the file again on a real server (after a query changed):
//! `scripts/record-golden` (it needs `rethinkdb` on `PATH`, `RETHINKDB_BIN`
//! or `RETHINKDB_URL`).

use std::path::PathBuf;
use std::time::Duration;

use domain::{BoardId, PlayerId, ScoreDelta, MAX_SCORE};
use reql_terms::Term;
use serde_json::{json, Value};
use store::reql::{self, PageStart};
use testkit::{Database, DbSession, Feed, ServerKind, TempDir};

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/store-queries.json")
}

/// One exchange: what was sent and what came back.
struct Case {
    name: String,
    query: Value,
    answer: Value,
}

/// Replaces what differs between runs and servers: the database's name,
/// ids the server generates, the server's own name, and the current time.
fn normalize(value: Value, db: &str) -> Value {
    match value {
        Value::String(s) => Value::String(normalize_str(&s, db)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| normalize(v, db)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "primary_replica" => json!("<server>"),
                        // An index function as RethinkDB prints it: its
                        // pretty printer wraps lines past 80 columns, which
                        // the dev server does not; the text is compared
                        // with the wrapping undone.
                        "query" => match v {
                            Value::String(q) => json!(unwrap_lines(&q)),
                            other => normalize(other, db),
                        },
                        "replicas" => json!(["<server>"]),
                        _ => normalize(v, db),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Number(n) if n.as_f64().is_some_and(is_now) => json!("<now>"),
        other => other,
    }
}

/// `text` with each line break and the indentation after it made one space.
fn unwrap_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split('\n');
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        out.push(' ');
        out.push_str(line.trim_start());
    }
    out
}

/// Whether `ms` reads as the current time in milliseconds since the epoch
/// (within a day): the database's clock in lease times, which differs from
/// run to run. The fixed times the script itself sends are years away.
fn is_now(ms: f64) -> bool {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64);
    (ms - wall).abs() < 86_400_000.0
}

fn normalize_str(s: &str, db: &str) -> String {
    let s = s.replace(db, "<db>");
    // UUIDs: 8-4-4-4-12 hex digits.
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if i + 36 <= s.len() && is_uuid(&bytes[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let ch = s[i..].chars().next().unwrap_or_default();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_uuid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

/// Runs the scripted session, collecting each exchange.
struct Script {
    session: DbSession,
    db: String,
    cases: Vec<Case>,
}

impl Script {
    async fn answer(&self, query: Term) -> Value {
        let mut items = Vec::new();
        let mut stream = match self.session.feed(&query) {
            Ok(stream) => stream,
            Err(e) => return json!({ "error": as_recorded(&e), "before_error": items }),
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(v) => items.push(v),
                Err(e) => return json!({ "error": as_recorded(&e), "before_error": items }),
            }
        }
        json!(items)
    }

    /// Sends `query` and records its answer under `name`.
    async fn case(&mut self, name: &str, query: Term) -> Value {
        let sent = serde_json::to_value(&query).expect("a query serialises");
        let answer = self.answer(query).await;
        self.record(name, sent, answer.clone());
        answer
    }

    /// Like [`Script::case`] for answers whose order the server does not
    /// define (a table scan over hash shards).
    async fn unordered(&mut self, name: &str, query: Term) -> Value {
        let sent = serde_json::to_value(&query).expect("a query serialises");
        let mut answer = self.answer(query).await;
        if let Value::Array(items) = &mut answer {
            items.sort_by_key(|v| normalize(v.clone(), &self.db).to_string());
        }
        self.record(name, sent, answer.clone());
        answer
    }

    fn record(&mut self, name: &str, query: Value, answer: Value) {
        self.cases.push(Case {
            name: name.to_owned(),
            query: normalize(query, &self.db),
            answer: normalize(answer, &self.db),
        });
    }
}

/// An error as the golden file holds it: in the words of the driver it was
/// recorded with (unreql), so that a recording stays comparable whatever
/// client sends the queries. Only the kinds the script meets are spelled
/// out; any other reads as `reql-client` prints it, and differs.
fn as_recorded(e: &reql_client::Error) -> String {
    match e {
        reql_client::Error::Runtime { code, message } if *code == reql_client::codes::OP_FAILED => {
            format!("runtime error; availability error; operation failed; {message}")
        }
        other => other.to_string(),
    }
}

/// The next item of a feed, or what stood in its place.
async fn next_change(feed: &mut Feed) -> Value {
    match tokio::time::timeout(Duration::from_secs(10), feed.next()).await {
        Ok(Some(Ok(v))) => v,
        Ok(Some(Err(e))) => json!({ "error": as_recorded(&e) }),
        Ok(None) => json!("<ended>"),
        Err(_) => json!("<nothing within 10 s>"),
    }
}

fn id<T>(parse: fn(&str) -> Result<T, domain::ValidationError>, raw: &str) -> T {
    parse(raw).expect("a valid id")
}

async fn connect(server: &Database, db: &str) -> DbSession {
    server.open_session(db).await.expect("connect")
}

/// The scripted session: every builder of `store::reql`, in the order a
/// deployment meets them, with the error cases.
async fn run_script(server: &Database) -> Vec<Case> {
    let db = format!("golden_{:08x}", rand::random::<u32>());
    let mut s = Script {
        session: connect(server, &db).await,
        db: db.clone(),
        cases: Vec::new(),
    };

    // Schema set-up on an empty server.
    s.case("db_config_named, before", reql::db_config_named(&db))
        .await;
    s.case("db_create", reql::db_create(&db)).await;
    s.case("db_create, again", reql::db_create(&db)).await;
    let dbs = s.case("db_config_named", reql::db_config_named(&db)).await;
    let db_id = dbs[0]["id"].as_str().expect("the database's id").to_owned();
    s.case("table_config_of, empty", reql::table_config_of(&db))
        .await;
    s.case("table_create boards", reql::table_create(&db, "boards"))
        .await;
    s.case("table_create players", reql::table_create(&db, "players"))
        .await;
    s.case(
        "table_create boards, again",
        reql::table_create(&db, "boards"),
    )
    .await;
    s.case("table_create leases", reql::table_create(&db, "leases"))
        .await;
    s.case("table_create periods", reql::table_create(&db, "periods"))
        .await;
    s.case("table_create ranks", reql::table_create(&db, "ranks"))
        .await;
    s.case("table_wait boards", reql::table_wait(&db, "boards"))
        .await;
    s.case("table_wait players", reql::table_wait(&db, "players"))
        .await;
    s.case(
        "create_board_score_index",
        reql::create_board_score_index(&db),
    )
    .await;
    s.case("create_board_index", reql::create_board_index(&db))
        .await;
    s.case("create_board_index, again", reql::create_board_index(&db))
        .await;
    for table in ["boards", "players"] {
        s.case(
            &format!("create_simple_index {table} slot"),
            reql::create_simple_index(&db, table, store::SLOT_INDEX),
        )
        .await;
        s.case(&format!("index_wait {table}"), reql::index_wait(&db, table))
            .await;
    }
    for (table, index) in [
        ("boards", store::RESET_DUE_INDEX),
        ("players", store::BOARD_PREV_INDEX),
        ("periods", store::PERIOD_INDEX),
        ("players", store::BOARD_RANK_INDEX),
        ("ranks", store::RANKS_BOARD_INDEX),
    ] {
        s.case(
            &format!("create_index {table} {index}"),
            reql::create_index(&db, table, index),
        )
        .await;
        s.case(
            &format!("index_wait {table} {index}"),
            reql::index_wait(&db, table),
        )
        .await;
    }
    s.case("players_index_wait", reql::players_index_wait(&db))
        .await;
    s.unordered("table_config_of", reql::table_config_of(&db))
        .await;
    s.case("table_count_of_db_id", reql::table_count_of_db_id(&db_id))
        .await;
    s.case("ping, empty", reql::ping()).await;

    // Writes.
    let b1: BoardId = id(BoardId::parse, "b1");
    let b2: BoardId = id(BoardId::parse, "b2");
    let ann: PlayerId = id(PlayerId::parse, "ann");
    let bob: PlayerId = id(PlayerId::parse, "bob");
    let cat: PlayerId = id(PlayerId::parse, "cat");
    s.case(
        "insert_board",
        reql::insert_board(json!({"id": "b1", "name": "Board one"})),
    )
    .await;
    s.case(
        "insert_board, duplicate",
        reql::insert_board(json!({"id": "b1", "name": "Again"})),
    )
    .await;
    let generated = s
        .case(
            "insert_board, generated id",
            reql::insert_board(json!({"name": ""})),
        )
        .await;
    // Its place in id order is random: remove it again.
    let generated = generated[0]["generated_keys"][0]
        .as_str()
        .expect("a generated key")
        .to_owned();
    s.case(
        "delete_board, generated id",
        reql::delete_board(&id(BoardId::parse, &generated)),
    )
    .await;
    s.case(
        "insert_board b2",
        reql::insert_board(json!({"id": "b2", "name": "Board two"})),
    )
    .await;
    for (board, player, name) in [(&b1, &ann, "Ann"), (&b1, &bob, "Bob"), (&b1, &cat, "Cat")] {
        s.case(
            &format!("insert_player {player}"),
            reql::insert_player(json!({
                "id": reql::player_key(board, player),
                "board": board.as_str(),
                "player": player.as_str(),
                "name": name,
                "score": 0,
            })),
        )
        .await;
    }
    s.case(
        "insert_player on b2",
        reql::insert_player(json!({
            "id": reql::player_key(&b2, &ann),
            "board": "b2",
            "player": "ann",
            "name": "Ann",
            "score": 0,
        })),
    )
    .await;
    let delta = |n| ScoreDelta::new(n).expect("a valid delta");
    s.case(
        "score_update +5",
        reql::score_update(&b1, &ann, delta(5), None),
    )
    .await;
    s.case(
        "score_update -2",
        reql::score_update(&b1, &ann, delta(-2), None),
    )
    .await;
    s.case(
        "score_update bob +3",
        reql::score_update(&b1, &bob, delta(3), None),
    )
    .await;
    s.case(
        "score_update past the range",
        reql::score_update(&b1, &ann, delta(MAX_SCORE), None),
    )
    .await;
    s.case(
        "score_update, no such player",
        reql::score_update(&b1, &id(PlayerId::parse, "nobody"), delta(1), None),
    )
    .await;
    // Keyed score-adds, at fixed times so the recording is repeatable.
    let k1 = reql::IdempotencyKey::parse("key-1").expect("a valid key");
    let k2 = reql::IdempotencyKey::parse("key-2").expect("a valid key");
    let k3 = reql::IdempotencyKey::parse("key-3").expect("a valid key");
    let at = |key, now_millis| Some(reql::Idempotency { key, now_millis });
    const T0: i64 = 1_700_000_000_000;
    s.case(
        "score_update keyed, first",
        reql::score_update(&b1, &ann, delta(4), at(&k1, T0)),
    )
    .await;
    s.case(
        "score_update keyed, replay",
        reql::score_update(&b1, &ann, delta(4), at(&k1, T0 + 1000)),
    )
    .await;
    s.case(
        "score_update keyed, other key",
        reql::score_update(&b1, &ann, delta(2), at(&k2, T0 + 2000)),
    )
    .await;
    s.case(
        "score_update keyed, past the range",
        reql::score_update(&b1, &ann, delta(MAX_SCORE), at(&k3, T0 + 2500)),
    )
    .await;
    s.case(
        "score_update keyed, after the window",
        reql::score_update(
            &b1,
            &ann,
            delta(1),
            at(&k1, T0 + 1000 + reql::IDEMPOTENCY_WINDOW_MS),
        ),
    )
    .await;
    s.case(
        "score_update keyed, no such player",
        reql::score_update(&b1, &id(PlayerId::parse, "nobody"), delta(1), at(&k1, T0)),
    )
    .await;
    // The same without reading the board, as the store sends it first.
    s.case(
        "score_update_unread +1",
        reql::score_update_unread(&b1, &ann, delta(1), None),
    )
    .await;
    s.case(
        "score_update_unread past the range",
        reql::score_update_unread(&b1, &ann, delta(MAX_SCORE), None),
    )
    .await;
    s.case(
        "score_update_unread, no such player",
        reql::score_update_unread(&b1, &id(PlayerId::parse, "nobody"), delta(1), None),
    )
    .await;
    let k4 = reql::IdempotencyKey::parse("key-4").expect("a valid key");
    s.case(
        "score_update_unread keyed, first",
        reql::score_update_unread(&b1, &ann, delta(3), at(&k4, T0 + 3000)),
    )
    .await;
    s.case(
        "score_update_unread keyed, replay",
        reql::score_update_unread(&b1, &ann, delta(3), at(&k4, T0 + 3500)),
    )
    .await;

    // Reads.
    s.case("get_board", reql::get_board(&b1)).await;
    s.case(
        "get_board, missing",
        reql::get_board(&id(BoardId::parse, "none")),
    )
    .await;
    s.case("get_player", reql::get_player(&b1, &ann)).await;
    s.case(
        "get_player, missing",
        reql::get_player(&b2, &id(PlayerId::parse, "bob")),
    )
    .await;
    s.case("top_players_query 5", reql::top_players_query("b1", 5))
        .await;
    s.case("top_players_query 2", reql::top_players_query("b1", 2))
        .await;
    s.case(
        "top_players_query, beyond 2^31",
        reql::top_players_query("b1", usize::MAX),
    )
    .await;
    s.case("snapshot", reql::snapshot(&b1)).await;
    s.case(
        "snapshot, missing board",
        reql::snapshot(&id(BoardId::parse, "none")),
    )
    .await;
    rules_and_ranks(&mut s).await;
    s.case("boards_page, first", reql::boards_page(None, 1000))
        .await;
    s.case("boards_page, one", reql::boards_page(None, 1)).await;
    s.case("boards_page, after b1", reql::boards_page(Some("b1"), 1000))
        .await;
    s.case(
        "boards_page, beyond 2^31",
        reql::boards_page(None, usize::MAX),
    )
    .await;
    s.case("ping", reql::ping()).await;

    leases_and_slots(&mut s, server, &b1).await;

    // The changefeed: ready, then one change per write, in order.
    let feed_session = connect(server, &db).await;
    let feed_query = reql::table_changes(store::PLAYERS);
    let feed_sent = serde_json::to_value(&feed_query).expect("a query serialises");
    let mut feed = feed_session.feed(&feed_query).expect("a feed opens");
    let mut feed_items = Vec::new();
    feed_items.push(next_change(&mut feed).await);
    s.case(
        "score_update cat +1",
        reql::score_update(&b1, &cat, delta(1), None),
    )
    .await;
    feed_items.push(next_change(&mut feed).await);
    s.case("delete_player", reql::delete_player(&b1, &cat))
        .await;
    feed_items.push(next_change(&mut feed).await);
    s.record("table_changes players", feed_sent, json!(feed_items));
    drop(feed);

    // Deletions.
    s.case("delete_player, missing", reql::delete_player(&b1, &cat))
        .await;
    s.case("delete_board", reql::delete_board(&b1)).await;
    s.case("delete_board_players", reql::delete_board_players(&b1))
        .await;
    s.case("delete_board, missing", reql::delete_board(&b1))
        .await;

    // The catalog repair's deletions.
    s.case("table_create extra", reql::table_create(&db, "extra"))
        .await;
    let rows = s.answer(reql::table_config_of(&db)).await;
    let extra = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["name"] == "extra"))
        .and_then(|row| row["id"].as_str())
        .expect("the extra table's id")
        .to_owned();
    s.case("delete_table_config", reql::delete_table_config(&extra))
        .await;
    s.case(
        "delete_table_config, missing",
        reql::delete_table_config(&extra),
    )
    .await;
    s.case("delete_db_config", reql::delete_db_config(&db_id))
        .await;
    s.case("db_config_named, after", reql::db_config_named(&db))
        .await;
    s.cases
}

/// A board with rules (ascending, `best`, top 2), submissions under each
/// operator, ranks, around-me and pages on it, and on b1 (no rules).
async fn rules_and_ranks(s: &mut Script) {
    let b1: BoardId = id(BoardId::parse, "b1");
    let laps: BoardId = id(BoardId::parse, "laps");
    s.case(
        "insert_board with rules",
        reql::insert_board(json!({
            "id": "laps",
            "name": "Laps",
            "rules": {"order": "asc", "operator": "best", "top": 2},
        })),
    )
    .await;
    let mut players = Vec::new();
    for p in ["ann", "bob", "cat", "dan"] {
        let pid: PlayerId = id(PlayerId::parse, p);
        // No score: not ranked until the first submission.
        s.case(
            &format!("insert_player laps {p}"),
            reql::insert_player(json!({
                "id": reql::player_key(&laps, &pid),
                "board": "laps",
                "player": p,
                "name": p,
            })),
        )
        .await;
        players.push(pid);
    }
    let k = reql::IdempotencyKey::parse("lap-1").expect("a valid key");
    let keyed = Some(reql::Idempotency {
        key: &k,
        now_millis: 1_700_000_000_000,
    });
    for (i, (p, value)) in [(0, 70), (1, 65), (2, 65), (0, 72), (0, 60)]
        .into_iter()
        .enumerate()
    {
        s.case(
            &format!("score_submit best asc #{i}"),
            reql::score_submit(&laps, &players[p], value, None),
        )
        .await;
    }
    s.case(
        "score_submit keyed",
        reql::score_submit(&laps, &players[3], 90, keyed),
    )
    .await;
    s.case(
        "score_submit keyed, replay",
        reql::score_submit(&laps, &players[3], 50, keyed),
    )
    .await;
    s.case(
        "score_submit, no such player",
        reql::score_submit(&laps, &id(PlayerId::parse, "nobody"), 1, None),
    )
    .await;
    s.case("snapshot with rules", reql::snapshot(&laps)).await;
    for n in [0, 1, 3] {
        s.case(
            &format!("around bob n={n}"),
            reql::around(&laps, &players[1], n, None),
        )
        .await;
    }
    s.case(
        "around on b1",
        reql::around(&b1, &id(PlayerId::parse, "bob"), 2, None),
    )
    .await;
    s.case(
        "around, no such player",
        reql::around(&laps, &id(PlayerId::parse, "nobody"), 1, None),
    )
    .await;
    s.case(
        "around, no such board",
        reql::around(&id(BoardId::parse, "none"), &players[0], 1, None),
    )
    .await;
    let after = |score: i64, player: &str| PageStart::After(score, player.to_owned());
    s.case("page, first", reql::page(&laps, PageStart::Top, 2, None))
        .await;
    s.case(
        "page, after bob",
        reql::page(&laps, after(65, "bob"), 2, None),
    )
    .await;
    s.case(
        "page, stale cursor",
        reql::page(&laps, after(66, "zed"), 5, None),
    )
    .await;
    s.case("page on b1", reql::page(&b1, after(3, "bob"), 10, None))
        .await;
    s.case(
        "page at rank 2",
        reql::page(&laps, PageStart::Rank(2), 2, None),
    )
    .await;
    s.case(
        "page at a rank past the end",
        reql::page(&laps, PageStart::Rank(40), 2, None),
    )
    .await;
    s.case(
        "page, no such board",
        reql::page(&id(BoardId::parse, "none"), PageStart::Top, 1, None),
    )
    .await;
    s.case(
        "players_of",
        reql::players_of(
            &laps,
            &[
                players[2].clone(),
                id(PlayerId::parse, "nobody"),
                players[0].clone(),
            ],
            None,
        ),
    )
    .await;
    s.case("rank_of, no copy", reql::rank_of(&laps, None, None))
        .await;
    s.case(
        "delete_board_players laps",
        reql::delete_board_players(&laps),
    )
    .await;
    s.case("delete_board laps", reql::delete_board(&laps)).await;
    digests(s).await;
    resets(s).await;
}

/// A board with a rank digest: ranks, pages and neighbours read through
/// it, the keeper's reads of the index (keys and counts of spans), and a
/// leaf grown past the cap.
async fn digests(s: &mut Script) {
    use reql_terms::r;
    use store::ranks::{self, RankKey};
    let deep: BoardId = id(BoardId::parse, "deep");
    s.case(
        "insert_board deep",
        reql::insert_board(json!({"id": "deep", "name": "Deep", "rules": {"order": "desc"}})),
    )
    .await;
    // Twelve players, scores 10, 10, 9, 9, ..., 5, 5: ties everywhere.
    let docs: Vec<Value> = (0..12)
        .map(|i| {
            json!({
                "id": format!("deep:p{i:02}"),
                "board": "deep",
                "player": format!("p{i:02}"),
                "name": format!("P{i}"),
                "score": 10 - i / 2,
            })
        })
        .collect();
    s.case("insert_player, a batch", reql::insert_player(json!(docs)))
        .await;
    let walk = reql::Walk::Down;
    let top = RankKey::top(walk);
    s.case(
        "span_keys from the top",
        ranks::span_keys("deep", walk, &top, Some(&RankKey(8, "p04".into())), 100),
    )
    .await;
    s.case(
        "span_keys of a middle span, limited",
        ranks::span_keys(
            "deep",
            walk,
            &RankKey(9, "p03".into()),
            Some(&RankKey::bottom(walk)),
            3,
        ),
    )
    .await;
    s.case(
        "span_counts",
        ranks::span_counts(
            "deep",
            walk,
            &[
                (top.clone(), RankKey(9, "p02".into())),
                (RankKey(9, "p02".into()), RankKey(6, "p09".into())),
                (RankKey(6, "p09".into()), RankKey::bottom(walk)),
            ],
        ),
    )
    .await;
    s.case("read_digest, none", ranks::read_digest("deep"))
        .await;
    s.case(
        "around p07, no digest",
        reql::around(&deep, &id(PlayerId::parse, "p07"), 1, None),
    )
    .await;
    // Two chunks: [top, (9,p02), (8,p05)] and [(7,p07), (6,p09)].
    s.case(
        "write_digest chunks",
        ranks::write_digest(vec![
            json!({"id": "deep#0", "board": "deep", "v": 1, "l": [[[9_007_199_254_740_992_i64, ""], 0], [[9, "p02"], 3], [[8, "p05"], 4]]}),
            json!({"id": "deep#3", "board": "deep", "v": 1, "l": [[[7, "p07"], 0], [[6, "p09"], 2]]}),
        ]),
    )
    .await;
    s.case(
        "write_digest root",
        ranks::write_digest(vec![json!({
            "id": "deep", "board": "deep", "v": 1, "n": 12, "asc": false,
            "c": [[[9_007_199_254_740_992_i64, ""], 0, "deep#0", 1], [[7, "p07"], 6, "deep#3", 1]],
        })]),
    )
    .await;
    s.case("read_digest", ranks::read_digest("deep")).await;
    for p in ["p00", "p04", "p07", "p11"] {
        s.case(
            &format!("around {p} through the digest"),
            reql::around(&deep, &id(PlayerId::parse, p), 2, Some(1)),
        )
        .await;
    }
    for rank in [1, 4, 7, 11, 13] {
        s.case(
            &format!("page at rank {rank} through the digest"),
            reql::page(&deep, PageStart::Rank(rank), 3, Some(1)),
        )
        .await;
    }
    s.case(
        "page after (8, p05)",
        reql::page(&deep, PageStart::After(8, "p05".into()), 3, None),
    )
    .await;
    s.case(
        "players_of, three of a board with a digest",
        reql::players_of(
            &deep,
            &["p10", "p01", "p06"].map(|p| id(PlayerId::parse, p)),
            Some(2),
        ),
    )
    .await;
    let live = |from: RankKey, score: i64, player: &str| {
        ranks::live_count(
            "deep",
            walk,
            &from,
            r.expr(score),
            r.expr(player.to_owned()),
        )
    };
    s.case(
        "rank_of between two players, the copy current",
        reql::rank_of(
            &deep,
            Some(1),
            Some(live(RankKey(8, "p05".into()), 8, "p99")),
        ),
    )
    .await;
    s.case(
        "rank_of, the copy outdated",
        reql::rank_of(
            &deep,
            Some(7),
            Some(live(RankKey(8, "p05".into()), 8, "p99")),
        ),
    )
    .await;
    s.case(
        "root_if_changed, the same",
        ranks::root_if_changed("deep", Some(1)),
    )
    .await;
    s.case(
        "root_if_changed, another",
        ranks::root_if_changed("deep", Some(2)),
    )
    .await;
    s.case(
        "root_if_changed, no copy",
        ranks::root_if_changed("deep", None),
    )
    .await;
    s.case(
        "root_if_changed, no digest",
        ranks::root_if_changed("none", Some(1)),
    )
    .await;
    s.case("ranked_count", ranks::ranked_count("deep")).await;
    s.case("ranked_count, no digest", ranks::ranked_count("none"))
        .await;
    s.case("chunk_doc", ranks::chunk_doc("deep#3")).await;
    s.case("chunk_doc, none", ranks::chunk_doc("deep#9")).await;
    s.case("live_count from the top", live(top.clone(), 9, "p03"))
        .await;
    s.case(
        "live_count in a leaf",
        live(RankKey(7, "p07".into()), 6, "p10"),
    )
    .await;
    for (skip, limit) in [(0, 3), (2, 2), (5, 3)] {
        s.case(
            &format!("page_from (7, p07), skip {skip}, limit {limit}"),
            ranks::page_from("deep", walk, &RankKey(7, "p07".into()), skip, limit),
        )
        .await;
    }
    s.case(
        "reach from (7, p07)",
        ranks::reach("deep", walk, &RankKey(7, "p07".into())),
    )
    .await;
    s.case(
        "page_from the top, lower scores first",
        ranks::page_from("deep", reql::Walk::Up, &RankKey::top(reql::Walk::Up), 1, 2),
    )
    .await;
    // A leaf grown far past the cap: the live count stops at the cap + 1.
    let many: Vec<Value> = (0..300)
        .map(|i| {
            json!({
                "id": format!("deep:q{i:03}"),
                "board": "deep",
                "player": format!("q{i:03}"),
                "name": "Q",
                "score": 8,
            })
        })
        .collect();
    s.case("insert_player, 300", reql::insert_player(json!(many)))
        .await;
    s.case(
        "live_count in a leaf past the cap",
        live(top.clone(), 8, "p04"),
    )
    .await;
    s.case("reach past the cap", ranks::reach("deep", walk, &top))
        .await;
    s.case(
        "page at rank 300, past the cap",
        reql::page(&deep, PageStart::Rank(300), 1, Some(1)),
    )
    .await;
    s.case(
        "delete_digest_docs",
        ranks::delete_digest_docs(vec!["deep#3".into()]),
    )
    .await;
    s.case(
        "around p11, its chunk gone",
        reql::around(&deep, &id(PlayerId::parse, "p11"), 0, Some(1)),
    )
    .await;
    s.case("delete_digest", ranks::delete_digest("deep")).await;
    s.case("read_digest, deleted", ranks::read_digest("deep"))
        .await;
    s.case(
        "delete_board_players deep",
        reql::delete_board_players(&deep),
    )
    .await;
    s.case("delete_board deep", reql::delete_board(&deep)).await;
}

/// A board that resets: due boards, the switch (and a second one that
/// changes nothing), a write landing in the new period, the players' move,
/// the archive and its reads, and the reset's end.
async fn resets(s: &mut Script) {
    let weekly: BoardId = id(BoardId::parse, "weekly");
    // Periods in the past, so that the board is due whatever the clock.
    s.case(
        "insert_board that resets",
        reql::insert_board(json!({
            "id": "weekly",
            "name": "Weekly",
            "rules": {"reset": "weekly"},
            "period": {"n": 1, "start": 1_000, "end": 2_000},
        })),
    )
    .await;
    for (p, score) in [("ann", 3), ("bob", 8), ("cat", 8)] {
        let pid: PlayerId = id(PlayerId::parse, p);
        s.case(
            &format!("insert_player weekly {p}"),
            reql::insert_player(json!({
                "id": reql::player_key(&weekly, &pid),
                "board": "weekly",
                "player": p,
                "name": p,
                "score": score,
                "period": 1,
            })),
        )
        .await;
    }
    s.case("due_resets", reql::due_resets()).await;
    const WEEK: i64 = 604_800_000;
    s.case(
        "switch_period 1",
        reql::switch_period(
            "weekly",
            1,
            2_000,
            4_102_444_800_000,
            4_102_444_800_000 + WEEK,
        ),
    )
    .await;
    s.case(
        "switch_period 1, again",
        reql::switch_period(
            "weekly",
            1,
            2_000,
            4_102_444_800_000,
            4_102_444_800_000 + WEEK,
        ),
    )
    .await;
    s.case("due_resets, archiving", reql::due_resets()).await;
    let delta = |n| ScoreDelta::new(n).expect("a valid delta");
    // A player of a board that resets has a period: the term that does not
    // read the board refuses it and writes nothing.
    s.case(
        "score_update_unread, the board resets",
        reql::score_update_unread(&weekly, &id(PlayerId::parse, "ann"), delta(2), None),
    )
    .await;
    s.case(
        "score_update_unread keyed, the board resets",
        reql::score_update_unread(
            &weekly,
            &id(PlayerId::parse, "ann"),
            delta(2),
            Some(reql::Idempotency {
                key: &reql::IdempotencyKey::parse("key-w").expect("a valid key"),
                now_millis: 1_700_000_000_000,
            }),
        ),
    )
    .await;
    s.case(
        "score_update in the new period",
        reql::score_update(&weekly, &id(PlayerId::parse, "ann"), delta(2), None),
    )
    .await;
    // A write that read the board before its reset (period 1 in force) but
    // reaches a player the reset already moved to period 2: the player stays
    // in period 2 and the write counts there.
    s.case(
        "insert_board, a reset not yet seen",
        reql::insert_board(json!({
            "id": "late",
            "name": "Late",
            "rules": {"reset": "weekly"},
            "period": {"n": 1, "start": 1_000, "end": 4_102_444_800_000_i64},
        })),
    )
    .await;
    s.case(
        "insert_player late ann, moved on",
        reql::insert_player(json!({
            "id": "late:ann",
            "board": "late",
            "player": "ann",
            "name": "ann",
            "score": 5,
            "period": 2,
            "prev": {"n": 1, "score": 9},
        })),
    )
    .await;
    // A board two periods behind its schedule (its resets are late): which
    // period a write belongs to is not known, and the write is refused.
    // One a period behind counts in the next period, up to its end.
    for (board, next_end) in [("behind", 3_000_i64), ("due", 4_102_444_800_000)] {
        s.case(
            &format!("insert_board {board}"),
            reql::insert_board(json!({
                "id": board,
                "name": board,
                "rules": {"reset": "weekly"},
                "period": {"n": 1, "start": 1_000, "end": 2_000, "next_end": next_end},
            })),
        )
        .await;
        s.case(
            &format!("insert_player {board} ann"),
            reql::insert_player(json!({
                "id": format!("{board}:ann"),
                "board": board,
                "player": "ann",
                "name": "ann",
                "score": 4,
                "period": 1,
            })),
        )
        .await;
        s.case(
            &format!("score_update on {board}"),
            reql::score_update(
                &id(BoardId::parse, board),
                &id(PlayerId::parse, "ann"),
                delta(3),
                None,
            ),
        )
        .await;
    }
    s.case(
        "score_update, its player already moved on",
        reql::score_update(
            &id(BoardId::parse, "late"),
            &id(PlayerId::parse, "ann"),
            delta(2),
            None,
        ),
    )
    .await;
    s.case("move_players 1", reql::move_players("weekly", 1, true))
        .await;
    s.case(
        "move_players 1, again",
        reql::move_players("weekly", 1, true),
    )
    .await;
    s.case(
        "period_standings 1",
        reql::period_standings("weekly", 1, reql::Walk::Down, 2),
    )
    .await;
    let archive = json!({"id": "weekly:1", "board": "weekly", "number": 1});
    s.case("insert_period 1", reql::insert_period(archive.clone()))
        .await;
    s.case("insert_period 1, again", reql::insert_period(archive))
        .await;
    s.case("periods", reql::periods(&weekly, 100)).await;
    s.case("period 1", reql::period(&weekly, 1)).await;
    s.case("period 2, none", reql::period(&weekly, 2)).await;
    s.case("finish_reset 1", reql::finish_reset("weekly", 1))
        .await;
    s.case("finish_reset 1, again", reql::finish_reset("weekly", 1))
        .await;
    s.case("snapshot of a board that resets", reql::snapshot(&weekly))
        .await;
}

/// The worker's leases (on the database's clock) and the boards' slots:
/// taking a free, a held and an expired lease, renewing, handing back, the
/// slot migration, and a shard's own changefeed.
async fn leases_and_slots(s: &mut Script, server: &Database, b1: &BoardId) {
    s.case("seed_leases 0..4", reql::seed_leases(0..4)).await;
    // One duplicate only: with several, which one `first_error` names
    // depends on the real server's internal hash order.
    s.case("seed_leases 3..6, one there", reql::seed_leases(3..6))
        .await;
    s.case("join_layout w1 16", reql::join_layout("w1", 16, 5000))
        .await;
    s.case(
        "join_layout w1 16, again",
        reql::join_layout("w1", 16, 5000),
    )
    .await;
    s.case("join_layout w2 16", reql::join_layout("w2", 16, 5000))
        .await;
    s.case(
        "join_layout w3 8, refused",
        reql::join_layout("w3", 8, 5000),
    )
    .await;
    s.case("take_lease 0 w1", reql::take_lease(0, "w1", 5000))
        .await;
    s.case("take_lease 0 w2, held", reql::take_lease(0, "w2", 5000))
        .await;
    s.case(
        "renew_leases [0, 1] w1",
        reql::renew_leases(&[0, 1], "w1", 5000),
    )
    .await;
    s.case(
        "renew_leases [0] w2, not its own",
        reql::renew_leases(&[0], "w2", 5000),
    )
    .await;
    s.case(
        "release_leases [0] w2, not its own",
        reql::release_leases(&[0], "w2"),
    )
    .await;
    s.case("release_leases [0] w1", reql::release_leases(&[0], "w1"))
        .await;
    s.case("take_lease 0 w2, free", reql::take_lease(0, "w2", 5000))
        .await;
    // A lease taken for no time has expired by the next query.
    s.case("take_lease 1 w1, 0 ms", reql::take_lease(1, "w1", 0))
        .await;
    s.case("take_lease 1 w2, expired", reql::take_lease(1, "w2", 5000))
        .await;
    s.case(
        "renew_leases [1] w1, expired and taken",
        reql::renew_leases(&[1], "w1", 5000),
    )
    .await;
    s.case(
        "take_lease 9, no such shard",
        reql::take_lease(9, "w1", 5000),
    )
    .await;
    let table = s.answer(reql::lease_table()).await;
    let mut rows = table[0]["rows"].as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|row| row["id"].to_string());
    let sent = serde_json::to_value(reql::lease_table()).expect("a query serialises");
    s.record(
        "lease_table",
        sent,
        json!({"now": table[0]["now"], "rows": rows}),
    );
    s.case("leave_layout w2", reql::leave_layout("w2")).await;
    s.case("leave_layout w2, again", reql::leave_layout("w2"))
        .await;
    // A membership for no time has expired by the next query: with no live
    // member left, another layout takes over.
    s.case("join_layout w1 16, 0 ms", reql::join_layout("w1", 16, 0))
        .await;
    s.case(
        "join_layout w3 8, every member expired",
        reql::join_layout("w3", 8, 5000),
    )
    .await;
    s.case(
        "join_layout w1 16, refused now",
        reql::join_layout("w1", 16, 5000),
    )
    .await;
    s.case(
        "layout document",
        reql_terms::r.table(store::LEASES).get(reql::LAYOUT_ID),
    )
    .await;

    // Slots.
    s.case("slot_migration_marker, none", reql::slot_migration_marker())
        .await;
    let slot = domain::shard::slot_of(b1.as_str());
    s.case("set_board_slot b1", reql::set_board_slot("b1", slot))
        .await;
    s.case("set_board_slot b1, again", reql::set_board_slot("b1", slot))
        .await;
    s.case(
        "set_board_slot, no such board",
        reql::set_board_slot("zz", 1),
    )
    .await;
    s.case("set_players_slot b1", reql::set_players_slot("b1", slot))
        .await;
    s.case(
        "set_players_slot b1, again",
        reql::set_players_slot("b1", slot),
    )
    .await;
    s.case("mark_slot_migration", reql::mark_slot_migration())
        .await;
    s.case("slot_migration_marker", reql::slot_migration_marker())
        .await;
    s.case(
        "board_ids_in_slots, b1's",
        reql::board_ids_in_slots(slot..slot + 1),
    )
    .await;
    let other = (slot + 1) % domain::shard::SLOTS;
    s.case(
        "board_ids_in_slots, another",
        reql::board_ids_in_slots(other..other + 1),
    )
    .await;

    // A shard's feed: only its players' changes.
    let feed_session = connect(server, &s.db).await;
    let feed_query = reql::slot_changes(store::PLAYERS, slot..slot + 1);
    let feed_sent = serde_json::to_value(&feed_query).expect("a query serialises");
    let mut feed = feed_session.feed(&feed_query).expect("a feed opens");
    let mut items = vec![next_change(&mut feed).await];
    let bob: PlayerId = id(PlayerId::parse, "bob");
    let ann: PlayerId = id(PlayerId::parse, "ann");
    let delta = |n| ScoreDelta::new(n).expect("a valid delta");
    // A player of b2 (no slot) changes first: the feed does not show it.
    let b2: BoardId = id(BoardId::parse, "b2");
    s.case(
        "score_update b2 ann +1",
        reql::score_update(&b2, &ann, delta(1), None),
    )
    .await;
    s.case(
        "score_update bob +1",
        reql::score_update(b1, &bob, delta(1), None),
    )
    .await;
    items.push(next_change(&mut feed).await);
    s.record("slot_changes players", feed_sent, json!(items));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stores_queries_get_the_answers_rethinkdb_gave() {
    let dir = TempDir::new("golden").unwrap();
    let server = Database::start(dir.path()).unwrap();
    let cases = run_script(&server).await;

    // CONFORMANCE_DUMP=FILE writes this server's answers there, to read a
    // divergence whole.
    if let Ok(path) = std::env::var("CONFORMANCE_DUMP") {
        let dump: Vec<Value> = cases
            .iter()
            .map(|c| json!({ "name": c.name, "answer": c.answer }))
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&dump).unwrap()).unwrap();
    }
    if std::env::var("RECORD_GOLDEN").is_ok_and(|v| v == "1") {
        assert!(
            ServerKind::from_env().is_real(),
            "RECORD_GOLDEN=1 records a real server's answers: run scripts/record-golden"
        );
        let file: Vec<Value> = cases
            .iter()
            .map(|c| json!({ "name": c.name, "query": c.query, "answer": c.answer }))
            .collect();
        let text = serde_json::to_string_pretty(&json!({
            "recorded_from": "RethinkDB 2.4.4",
            "cases": file,
        }))
        .unwrap();
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(golden_path(), text + "\n").unwrap();
        eprintln!(
            "recorded {} cases to {}",
            cases.len(),
            golden_path().display()
        );
        return;
    }

    let text = std::fs::read_to_string(golden_path()).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; record it with scripts/record-golden",
            golden_path().display()
        )
    });
    let golden: Value = serde_json::from_str(&text).unwrap();
    let golden = golden["cases"].as_array().expect("cases");
    let mut differences = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let Some(want) = golden.get(i) else {
            differences.push(format!("{}: not in the recording", case.name));
            continue;
        };
        if want["name"] != case.name.as_str() || want["query"] != case.query {
            differences.push(format!(
                "{}: the query is not the one recorded ({}); record again with scripts/record-golden",
                case.name, want["name"]
            ));
        } else if want["answer"] != case.answer {
            differences.push(format!(
                "{}:\n  RethinkDB answered {}\n  this server answered {}",
                case.name, want["answer"], case.answer
            ));
        }
    }
    if golden.len() > cases.len() {
        differences.push(format!(
            "{} recorded cases were not sent",
            golden.len() - cases.len()
        ));
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ from RethinkDB 2.4.4's:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
}
