//! Every ReQL query the store sends, as a function that builds it.
//!
//! [`Store`](crate::Store) runs these and nothing else, so the benchmark can
//! measure the real queries and the conformance test
//! (`crates/testkit/tests/conformance.rs`) can check each one's answer
//! against what a real RethinkDB 2.4.4 recorded.

use domain::{BoardId, Order, PlayerId, ScoreDelta, MAX_SCORE, TOP_N};
use reql_terms::{func, r, term, Term};
use serde_json::Value;

use std::ops::Range;

use crate::ranks;
use crate::{
    SchemaOptions, BOARDS, BOARD_INDEX, BOARD_PREV_INDEX, BOARD_RANK_INDEX, BOARD_SCORE_INDEX,
    LEASES, PERIODS, PERIOD_INDEX, PLAYERS, RESET_DUE_INDEX, SLOT_INDEX,
};

/// RethinkDB's system database.
pub const SYSTEM_DB: &str = "rethinkdb";

/// Marks the error raised inside the score update, so it can be told apart
/// from any other write error in `first_error`.
pub const OUT_OF_RANGE: &str = "leaderboard: score out of range";
/// Marks the error a write is refused with when it would move its player
/// on from a period whose archive is not written yet (see `period_move`).
pub const ARCHIVE_PENDING: &str = "leaderboard: the last period is not archived yet";
/// The error a write raises when, by the database's clock, the board is more
/// than one period past the one it is in (its resets are behind): which
/// period the write belongs to is not known yet. It is answered 503, to be
/// sent again once the board has caught up.
pub const RESET_BEHIND: &str = "leaderboard: the board's resets are behind";
/// The error [`score_update_unread`] refuses a player of a board that
/// resets with.
pub const BOARD_RESETS: &str = "leaderboard: the board resets";

/// A `limit` argument as RethinkDB accepts it: it refuses integers at or
/// above 2^31 ("Integer too large"), so larger asks are clamped, which a
/// limit means anyway.
pub fn limit_arg(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A player's primary key: players are scoped to their board, so two boards
/// can both have a player `alice`. Ids cannot hold `:`, so the key is
/// unambiguous, and with ids of at most 63 characters it stays within
/// RethinkDB's 127-byte key limit.
pub fn player_key(board: &BoardId, player: &PlayerId) -> String {
    format!("{board}:{player}")
}

// ------------------------------------------------------------------ reads

/// The readiness probe: a count of the players table.
pub fn ping() -> Term {
    r.table(PLAYERS).count()
}

/// The top `n` players of a board, read from the `[board, score]` index in
/// descending order: O(log N + n) whatever the table's size. Equal scores
/// come out in descending player-id order, the index's own tie-break, so every
/// reader sees the same order.
pub fn top_players_query(board: &str, n: usize) -> Term {
    in_rank_order(board, Walk::Down)
        .limit(limit_arg(n))
        .without([IDEMPOTENCY_FIELD])
}

/// A board and its top players under its own rules, in one round trip:
/// `{board: <row or null>, players: [...]}`. The board's `rules.order`
/// picks the direction the `[board, score]` index is read in (one index
/// serves both orders) and `rules.top` how many; a board without rules
/// reads as `desc`, 5.
pub fn snapshot(board: &BoardId) -> Term {
    let id = board.as_str().to_owned();
    r.table(BOARDS).get(id.clone()).do_(func!(|doc| {
        let top = doc.clone().g("rules").g("top").default(TOP_N as u64);
        let players = by_order(doc.clone(), |dir| {
            ranked(&id, dir).limit(top.clone()).coerce_to("array")
        });
        term!({
            "board": doc.clone(),
            "players": r.branch(doc, players, term!([])),
        })
    }))
}

/// Which way the `[board, score]` index is walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Lower scores first; equal scores in ascending player id order.
    Up,
    /// Higher scores first; equal scores in descending player id order.
    Down,
}

impl Walk {
    /// Rank order under a board's order: the best first.
    pub fn of(order: Order) -> Self {
        match order {
            Order::Desc => Walk::Down,
            Order::Asc => Walk::Up,
        }
    }

    /// The opposite direction.
    pub fn reverse(self) -> Self {
        match self {
            Walk::Up => Walk::Down,
            Walk::Down => Walk::Up,
        }
    }
}

/// `if_asc` or `if_desc` built for the order stored in the board document
/// `doc` (a term), chosen by the server: `r.branch` evaluates one branch.
fn by_order(doc: Term, build: impl Fn(Walk) -> Term) -> Term {
    r.branch(
        doc.g("rules").g("order").default("desc").eq("asc"),
        build(Walk::of(Order::Asc)),
        build(Walk::of(Order::Desc)),
    )
}

/// A board's players in `walk` order, straight from the `[board, score]`
/// index (a stream: nothing is sorted in memory). The players' recent
/// idempotency keys stay in the database: a board read would otherwise carry
/// up to 64 of them per player.
pub fn ranked(board: &str, walk: Walk) -> Term {
    in_rank_order(board, walk).without([IDEMPOTENCY_FIELD])
}

/// A board's whole `[board, score]` index range, walked in `walk` order.
fn in_rank_order(board: &str, walk: Walk) -> Term {
    let index = match walk {
        Walk::Up => r.asc(BOARD_SCORE_INDEX),
        Walk::Down => r.desc(BOARD_SCORE_INDEX),
    };
    r.table(PLAYERS)
        .between(
            term!([board.to_owned(), r.minval()]),
            term!([board.to_owned(), r.maxval()]),
        )
        .opt("index", BOARD_SCORE_INDEX)
        .order_by_index(index)
}

/// A player and up to `n` players on each side, with the board's digest
/// root as [`ranks::root_if_changed`] gives it for the version `known`:
/// `{board, player, root, above, below}`, or `{board: null}` /
/// `{board, player: null}`, or `{board, player}` for a player not ranked
/// yet. The player's rank is counted next, from its leaf (see
/// `crate::rank_reads`).
pub fn around(board: &BoardId, player: &PlayerId, n: usize, known: Option<u64>) -> Term {
    let id = board.as_str().to_owned();
    let key = player_key(board, player);
    let neighbours = n > 0;
    let n = limit_arg(n);
    r.table(BOARDS).get(id.clone()).do_(func!(|doc| {
        let me = r.table(PLAYERS).get(key.clone());
        let body = me.clone().do_(func!(|p| {
            let score = p.clone().g("score");
            let pid = p.clone().g("player");
            // Each side is a range read, which visits every hash shard of
            // the table even when it may return nothing: a player's own
            // rank (`n` = 0) sends none.
            let side = |walk: Walk| {
                if neighbours {
                    ranks::after_key(&id, walk, score.clone(), pid.clone())
                        .limit(n)
                        .coerce_to("array")
                } else {
                    term!([])
                }
            };
            by_order(doc.clone(), |walk| {
                term!({
                    "board": doc.clone(),
                    "player": p.clone().without([IDEMPOTENCY_FIELD]),
                    "root": ranks::root_if_changed(&id, known),
                    "above": side(walk.reverse()),
                    "below": side(walk),
                })
            })
        }));
        // A player with no score yet (on a `set` or `best` board) has no
        // rank.
        let unranked = me.clone().do_(func!(|p| term!({
            "board": doc.clone(),
            "player": p.without([IDEMPOTENCY_FIELD]),
        })));
        r.branch(
            doc.clone(),
            r.branch(
                me.clone(),
                r.branch(me.has_fields("score"), body, unranked),
                term!({ "board": doc.clone(), "player": r.expr(Value::Null) }),
            ),
            term!({ "board": r.expr(Value::Null) }),
        )
    }))
}

/// Where a page of a board starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    /// The top of the board.
    Top,
    /// Right after the position (score, player id) of a cursor.
    After(i64, String),
    /// At a rank (1-based).
    Rank(u64),
}

/// A page of a board in rank order: `limit` players from `start`.
/// `{board: <row or null>, players, out_of}` from the top; `{board,
/// players, root}` after a cursor (the first player's rank is counted next,
/// from its leaf); `{board, root}` from a rank (the page is read next, from
/// the rank's leaf); `root` as [`ranks::root_if_changed`] gives it for the
/// version `known`. Bounded whatever the depth.
pub fn page(board: &BoardId, start: PageStart, limit: usize, known: Option<u64>) -> Term {
    let id = board.as_str().to_owned();
    let limit_n = limit_arg(limit);
    r.table(BOARDS).get(id.clone()).do_(func!(|doc| {
        let body = match &start {
            PageStart::Top => by_order(doc.clone(), |walk| {
                term!({
                    "board": doc.clone(),
                    "players": ranked(&id, walk).limit(limit_n).coerce_to("array"),
                    "out_of": ranks::ranked_count(&id),
                })
            }),
            PageStart::After(score, player) => by_order(doc.clone(), |walk| {
                term!({
                    "board": doc.clone(),
                    "players": ranks::after_key(&id, walk, r.expr(*score), r.expr(player.clone()))
                        .limit(limit_n)
                        .coerce_to("array"),
                    "root": ranks::root_if_changed(&id, known),
                })
            }),
            PageStart::Rank(_) => term!({
                "board": doc.clone(),
                "root": ranks::root_if_changed(&id, known),
            }),
        };
        r.branch(doc.clone(), body, term!({ "board": r.expr(Value::Null) }))
    }))
}

/// Given players of a board (their ids, at least one): `{board: <row or
/// null>, players: [...], root}`, the players that exist, in no particular
/// order, and the board's digest root as [`ranks::root_if_changed`] gives
/// it. Their ranks are counted next, one query each, in parallel: one query
/// counting them all would count them one after another.
pub fn players_of(board: &BoardId, players: &[PlayerId], known: Option<u64>) -> Term {
    let id = board.as_str().to_owned();
    let keys: Vec<String> = players.iter().map(|p| player_key(board, p)).collect();
    r.table(BOARDS).get(id.clone()).do_(func!(|doc| {
        r.branch(
            doc.clone(),
            term!({
                "board": doc.clone(),
                "players": r
                    .table(PLAYERS)
                    .get_all(keys.clone())
                    .without([IDEMPOTENCY_FIELD])
                    .coerce_to("array"),
                "root": ranks::root_if_changed(&id, known),
            }),
            term!({ "board": r.expr(Value::Null) }),
        )
    }))
}

/// A board and its digest root as [`ranks::root_if_changed`] gives it for
/// the version `known`, with `live` (a count, when the caller could place
/// the key from its copy of the digest): `{board, root, live}`, or null if
/// there is no board.
pub fn rank_of(board: &BoardId, known: Option<u64>, live: Option<Term>) -> Term {
    let id = board.as_str().to_owned();
    r.table(BOARDS).get(id.clone()).do_(func!(|doc| {
        let body = term!({
            "board": doc.clone(),
            "root": ranks::root_if_changed(&id, known),
            "live": live.clone().unwrap_or_else(|| r.expr(Value::Null)),
        });
        r.branch(doc.clone(), body, r.expr(Value::Null))
    }))
}

/// Boards in id order, at most `limit`, after the board `after` if given.
pub fn boards_page(after: Option<&str>, limit: usize) -> Term {
    let boards = match after {
        None => r.table(BOARDS),
        Some(after) => r
            .table(BOARDS)
            .between(after.to_owned(), r.maxval())
            .opt("left_bound", "open"),
    };
    boards.order_by_index("id").limit(limit_arg(limit))
}

/// A board's row, or null.
pub fn get_board(board: &BoardId) -> Term {
    r.table(BOARDS).get(board.to_string())
}

/// A player's row, or null.
pub fn get_player(board: &BoardId, player: &PlayerId) -> Term {
    r.table(PLAYERS).get(player_key(board, player))
}

// ----------------------------------------------------------------- writes

/// Inserts a board document, returning the change.
pub fn insert_board(doc: Value) -> Term {
    r.table(BOARDS).insert(doc).opt("return_changes", true)
}

/// Inserts a player document, returning the change.
pub fn insert_player(doc: Value) -> Term {
    r.table(PLAYERS).insert(doc).opt("return_changes", true)
}

/// Deletes a board's document (not its players).
pub fn delete_board(board: &BoardId) -> Term {
    r.table(BOARDS).get(board.to_string()).delete()
}

/// Deletes every player of a board, through the `board` index.
pub fn delete_board_players(board: &BoardId) -> Term {
    r.table(PLAYERS)
        .get_all([board.to_string()])
        .opt("index", BOARD_INDEX)
        .delete()
}

/// Deletes one player of a board.
pub fn delete_player(board: &BoardId, player: &PlayerId) -> Term {
    r.table(PLAYERS).get(player_key(board, player)).delete()
}

/// The player document's field holding its recent idempotency keys:
/// `[{k, at, score, c}]`, oldest first: the key, the origin's time, the
/// score the write left and whether it changed the score.
pub const IDEMPOTENCY_FIELD: &str = "idem";

/// How long a player remembers an idempotency key: a retry with the same
/// key within this window returns the first result. Fifteen minutes, so
/// that the promised ten hold even with origins' clocks a few minutes
/// apart (the time comes from the origin, see [`Idempotency`]).
pub const IDEMPOTENCY_WINDOW_MS: i64 = 15 * 60 * 1000;

/// How many idempotency keys a player remembers: the newest, within the
/// window. Each is at most [`IdempotencyKey::MAX_LEN`] bytes, so this bounds
/// what the keys add to a player document.
pub const IDEMPOTENCY_KEYS_KEPT: usize = 64;

/// A client's `Idempotency-Key`: 1 to 128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 128;

    /// Checks a key: 1 to [`Self::MAX_LEN`] characters, each visible ASCII
    /// (`!` to `~`, no spaces or control characters).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!(
                "Idempotency-Key must be 1 to {} characters, got {}",
                Self::MAX_LEN,
                raw.len()
            ));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("Idempotency-Key must be visible ASCII characters only".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A keyed score-add: the key, and the time of the request in milliseconds
/// since the epoch, taken by the origin. The time is an argument rather than
/// `r.now()` because RethinkDB refuses a non-deterministic update function
/// unless it gives up atomicity (`nonAtomic`).
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    /// The client's key.
    pub key: &'a IdempotencyKey,
    /// The origin's time of the request, in milliseconds since the epoch.
    pub now_millis: i64,
}

/// The score-add term: one atomic update of a player's score by `delta`,
/// returning the change. The range check runs inside the update function,
/// on the document being written (no read-modify-write window); a score
/// that would leave ±`MAX_SCORE` fails the write instead. The benchmark
/// sends this same term to measure the database's own share of a score-add.
///
/// With an [`Idempotency`] key the same update also keeps the player's
/// recent keys in `idem: [{k, at, score}]`, oldest first: entries older than
/// [`IDEMPOTENCY_WINDOW_MS`] are dropped and at most
/// [`IDEMPOTENCY_KEYS_KEPT`] kept. If the key is already there the function
/// changes nothing (no changefeed event), and since it asks for
/// `return_changes: "always"` the answer still carries the document, whose
/// entry for the key holds the score the first increment produced.
pub fn score_update(
    board: &BoardId,
    player: &PlayerId,
    delta: ScoreDelta,
    idempotency: Option<Idempotency<'_>>,
) -> Term {
    let d = delta.get();
    let changes = match idempotency {
        None => Term::from(true),
        Some(_) => Term::from("always"),
    };
    let key = player_key(board, player);
    r.table(BOARDS).get(board.to_string()).do_(func!(|doc| {
        let update = |periods: Periods| {
            r.table(PLAYERS)
                .get(key.clone())
                .update(scoring(periods, add(d), idempotency))
                .opt("return_changes", changes.clone())
        };
        by_reset(
            doc.clone(),
            update(Periods::Of(doc.clone())),
            update(Periods::None),
        )
    }))
}

/// [`score_update`] without reading the board, for a board taken not to
/// reset: the update function of a board that does not reset, refusing with
/// [`BOARD_RESETS`], and writing nothing, a player that has a `period` (only
/// the players of boards that reset have one). The store sends this first
/// unless it has seen the board reset, and [`score_update`] after a refusal:
/// a score-add on an ordinary board costs the bare update, and stays right
/// whatever the store believed.
pub fn score_update_unread(
    board: &BoardId,
    player: &PlayerId,
    delta: ScoreDelta,
    idempotency: Option<Idempotency<'_>>,
) -> Term {
    let changes = match idempotency {
        None => Term::from(true),
        Some(_) => Term::from("always"),
    };
    r.table(PLAYERS)
        .get(player_key(board, player))
        .update(scoring(Periods::Unread, add(delta.get()), idempotency))
        .opt("return_changes", changes)
}

/// Adds `d` to a player's score; a player with no score yet (on a `set` or
/// `best` board) starts at 0.
fn add(d: i64) -> impl Fn(Term) -> Term + Clone {
    move |p: Term| p.g("score").default(0).add(d)
}

/// What a score write knows of its board's periods.
enum Periods {
    /// The board, read in the same query, resets: this is its document.
    Of(Term),
    /// The board, read in the same query, does not reset.
    None,
    /// The board was not read: taken not to reset, and a player that has a
    /// period is refused with [`BOARD_RESETS`].
    Unread,
}

/// `resetting` when the board `doc` resets, else `plain`: the update of a
/// board that never resets has no period to look at, and a smaller function
/// is cheaper for the database to evaluate in the write's critical section.
/// A board that is gone counts as one that does not reset.
fn by_reset(doc: Term, resetting: Term, plain: Term) -> Term {
    r.branch(
        doc.clone().type_of().eq("OBJECT"),
        r.branch(doc.has_fields("period"), resetting, plain.clone()),
        plain,
    )
}

/// `POST .../score/`: submits `value` under the board's operator, in one
/// atomic update of the player read in the same query as the board's rules
/// (which never change): `incr` adds it, `set` replaces the score, `best`
/// keeps the better of the two under the board's order. A submission that
/// leaves the score as it was changes nothing (no changefeed event, nothing
/// published); `return_changes: "always"` still returns the document.
/// Idempotency keys work as in [`score_update`].
pub fn score_submit(
    board: &BoardId,
    player: &PlayerId,
    value: i64,
    idempotency: Option<Idempotency<'_>>,
) -> Term {
    let key = player_key(board, player);
    r.table(BOARDS).get(board.to_string()).do_(func!(|doc| {
        let rules = doc.clone().g("rules");
        let operator = rules.clone().g("operator").default("incr");
        let order = rules.g("order").default("desc");
        let next = move |p: Term| {
            let s = p.clone().g("score");
            r.branch(
                operator.clone().eq("set").or(p.has_fields("score").not()),
                r.expr(value),
                r.branch(
                    operator.clone().eq("best"),
                    r.branch(
                        order.clone().eq("asc"),
                        r.branch(s.clone().gt(value), r.expr(value), s.clone()),
                        r.branch(s.clone().lt(value), r.expr(value), s.clone()),
                    ),
                    s.add(value),
                ),
            )
        };
        let update = |periods: Periods| {
            r.table(PLAYERS)
                .get(key.clone())
                .update(scoring(periods, next.clone(), idempotency))
                .opt("return_changes", "always")
        };
        by_reset(
            doc.clone(),
            update(Periods::Of(doc.clone())),
            update(Periods::None),
        )
    }))
}

/// The update function of a score write on a player of the board `doc`:
/// the new score is `next(current)`, refused with [`OUT_OF_RANGE`] beyond
/// ±`MAX_SCORE`; with an idempotency key, the key's bookkeeping (see
/// [`score_update`]).
///
/// On a board that resets, the write first brings the player into the
/// period it belongs to ([`period_move`]): `current` is then the player as
/// the new period starts it.
fn scoring(
    periods: Periods,
    next: impl Fn(Term) -> Term,
    idempotency: Option<Idempotency<'_>>,
) -> Term {
    let out_of_range = |score: Term| score.clone().gt(MAX_SCORE).or(score.lt(-MAX_SCORE));
    let guarded = |p: Term, body: Term| match periods {
        Periods::Unread => r.branch(p.has_fields("period"), r.error(BOARD_RESETS), body),
        _ => body,
    };
    match idempotency {
        None => func!(|p| {
            let (current, period) = period_move(&periods, p.clone());
            let score = next(current);
            let body = r.branch(
                out_of_range(score.clone()),
                r.error(OUT_OF_RANGE),
                term!({ "score": score }).merge(period),
            );
            guarded(p, body)
        }),
        Some(Idempotency { key, now_millis }) => {
            let key = key.as_str().to_owned();
            let cutoff = now_millis - IDEMPOTENCY_WINDOW_MS;
            let kept = limit_arg(IDEMPOTENCY_KEYS_KEPT);
            func!(|p| {
                let recent = p
                    .clone()
                    .g(IDEMPOTENCY_FIELD)
                    .default(term!([]))
                    .filter(func!(|e| e.g("at").gt(cutoff)));
                let (current, period) = period_move(&periods, p.clone());
                let score = next(current.clone());
                let entry = term!({
                    "k": key.clone(),
                    "at": now_millis,
                    "score": score.clone(),
                    "c": current.clone().has_fields("score").not().or(current.g("score").ne(score.clone())),
                });
                let list = recent.clone().append(entry);
                let bounded = r.branch(
                    list.clone().count().gt(kept),
                    list.clone().skip(list.clone().count().sub(kept)),
                    list,
                );
                let body = r.branch(
                    recent.contains(func!(|e| e.g("k").eq(key.clone()))),
                    term!({}),
                    r.branch(
                        out_of_range(score.clone()),
                        r.error(OUT_OF_RANGE),
                        term!({ "score": score, "idem": bounded }).merge(period),
                    ),
                );
                guarded(p, body)
            })
        }
    }
}

/// The database's clock in milliseconds since the epoch (see
/// [`db_now_ms`]).
fn now_ms() -> Term {
    r.now().to_epoch_time().mul(1000)
}

/// The period a write at the database's `now` belongs to on the board
/// `doc`: the board's period; the next one once its end has passed (before
/// the worker has switched the board over), until that one's end
/// (`next_end`, stored with the period); past that, none yet: the write is
/// refused with [`RESET_BEHIND`].
///
/// The bound matters on a cluster, where `r.now()` is the time a query was
/// received, not the time it is applied: a switch received before a write
/// may be applied after it. Without the bound, a write two periods past the
/// board's counted in the next one, and the switch, applied late, then
/// closed that period before the write's time.
fn write_period(doc: Term) -> Term {
    let period = doc.g("period");
    r.branch(
        now_ms().lt(period.clone().g("end")),
        period.clone().g("n"),
        r.branch(
            // Boards written before `next_end` existed have no bound.
            now_ms().lt(period.clone().g("next_end").default(NO_BOUND_MS)),
            period.g("n").add(1),
            r.error(RESET_BEHIND),
        ),
    )
}

/// Later than any time: the `next_end` of a period stored without one.
const NO_BOUND_MS: i64 = 1 << 53;

/// Brings player `p` of board `doc` into the period a write now belongs to:
/// `(current, fields)`, where `current` is the player as that period sees it
/// (its score, or, if the player's score is from an earlier period, a fresh
/// start: 0 on an `incr` board, no score on the others) and `fields` what the
/// write must also store: `period`, and `prev: {n, score}` keeping the
/// earlier period's score for its archive. On a board that does not reset,
/// `p` itself and nothing more.
fn period_move(periods: &Periods, p: Term) -> (Term, Term) {
    let Periods::Of(doc) = periods else {
        return (p, term!({}));
    };
    let doc = doc.clone();
    let by_clock = write_period(doc.clone());
    let mine = p.clone().g("period").default(by_clock.clone());
    // Never backwards: a write that read the board before a reset but reaches
    // its player after the reset moved the player on counts in the player's
    // new period (it is atomic with the move, so it counts exactly once, and
    // an archive, read after the moves, holds every write of its period).
    let target = r.branch(mine.clone().gt(by_clock.clone()), mine.clone(), by_clock);
    let moved = mine.clone().lt(target.clone());
    let fresh = r.branch(
        doc.clone()
            .g("rules")
            .g("operator")
            .default("incr")
            .eq("incr"),
        term!({ "score": 0 }),
        term!({}),
    );
    let current = r.branch(moved.clone(), fresh, p.clone());
    // A player keeps one earlier period's score, in `prev`. While that
    // period's archive is still to be written (the reset's holder was
    // stopped, or died, past the next period's end), moving the player on
    // again would erase it: the write is refused, to be sent again once the
    // reset is finished (its next holder finishes it within a lease's life).
    let unarchived = p
        .clone()
        .g("prev")
        .g("n")
        .default(-1)
        .eq(doc.g("archiving").g("n").default(-2));
    let fields = r.branch(
        moved.clone().and(unarchived),
        r.error(ARCHIVE_PENDING),
        r.branch(
            moved,
            term!({
                "period": target.clone(),
                "prev": p.pluck(["score"]).merge(term!({ "n": mine })),
            }),
            term!({ "period": target }),
        ),
    );
    (current, fields)
}

// ------------------------------------------------------------------ resets

/// The boards whose reset is due by the database's clock, or whose last
/// reset is unfinished: `{now, boards: [{id, slot, rules, period, archiving?}]}`.
/// Only boards that reset are in the index, and only due ones are read.
pub fn due_resets() -> Term {
    term!({
        "now": now_ms(),
        "boards": r
            .table(BOARDS)
            .between(r.minval(), now_ms())
            .opt("index", RESET_DUE_INDEX)
            .opt("right_bound", "closed")
            .coerce_to("array"),
    })
}

/// Switches a board from period `n` to `n + 1` (from `end` until
/// `next_end`, the period after it ending at `then`), marking period `n` as
/// being archived, if the board is still in period `n`, its end has passed
/// and no reset is unfinished. One atomic update; whoever runs it second
/// changes nothing.
///
/// `next_end` must be at least the `next_end` stored with period `n`: the
/// writes since `end` counted in period `n + 1` up to that time (see
/// [`write_period`]). It may be later (the worker was behind: the period
/// is stretched to the next reset after the switch); the writes past the
/// stored bound were refused, so none counted where they should not. A
/// switch applied after the period it starts is over is therefore sound,
/// and the board switches again at the next round.
pub fn switch_period(board: &str, n: u64, end: i64, next_end: i64, then: i64) -> Term {
    r.table(BOARDS)
        .get(board.to_owned())
        .update(func!(|doc| {
            r.branch(
                doc.clone()
                    .g("period")
                    .g("n")
                    .eq(n)
                    .and(doc.clone().has_fields("archiving").not())
                    .and(now_ms().ge(end)),
                term!({
                    "period": { "n": n + 1, "start": end, "end": next_end, "next_end": then },
                    "archiving": { "n": n, "start": doc.g("period").g("start"), "end": end },
                }),
                term!({}),
            )
        }))
        .opt("return_changes", "always")
}

/// Moves every player of `board` still in period `n` (or in none) into
/// period `n + 1`: `prev` keeps its period-`n` score, its score starts again
/// (0 on an `incr` board, none on the others). Idempotent, and the same
/// move a write makes.
pub fn move_players(board: &str, n: u64, incr: bool) -> Term {
    r.table(PLAYERS)
        .get_all([board.to_owned()]).opt("index", BOARD_INDEX)
        .replace(func!(|p| {
            let fresh = if incr {
                term!({ "score": 0 })
            } else {
                term!({})
            };
            r.branch(
                p.clone().g("period").default(n).le(n),
                p.clone()
                    .without(["score", "prev"])
                    .merge(fresh)
                    .merge(term!({
                        "period": n + 1,
                        "prev": p.clone().pluck(["score"]).merge(term!({ "n": p.clone().g("period").default(n) })),
                    })),
                p,
            )
        }))
}

/// The standings of a board's finished period `n` from the players' `prev`
/// scores: its top `top` in rank order and how many players had a score.
pub fn period_standings(board: &str, n: u64, walk: Walk, top: usize) -> Term {
    let range = r
        .table(PLAYERS)
        .between(
            term!([board.to_owned(), n, r.minval()]),
            term!([board.to_owned(), n, r.maxval()]),
        )
        .opt("index", BOARD_PREV_INDEX);
    let index = match walk {
        Walk::Up => r.asc(BOARD_PREV_INDEX),
        Walk::Down => r.desc(BOARD_PREV_INDEX),
    };
    term!({
        "top": range
            .clone()
            .order_by_index(index)
            .limit(limit_arg(top))
            .pluck(["player", "name", "prev"])
            .coerce_to("array"),
        "players": range.count(),
    })
}

/// Archives a finished period; a second insert of the same period fails as
/// a duplicate and changes nothing.
pub fn insert_period(doc: Value) -> Term {
    r.table(PERIODS).insert(doc)
}

/// Marks a board's reset of period `n` finished.
pub fn finish_reset(board: &str, n: u64) -> Term {
    r.table(BOARDS)
        .get(board.to_owned())
        .replace(func!(|doc| r.branch(
            doc.clone().g("archiving").g("n").default(-1).eq(n),
            doc.clone().without(["archiving"]),
            doc,
        )))
}

/// A board's finished periods, newest first, at most `limit`.
pub fn periods(board: &BoardId, limit: usize) -> Term {
    r.table(PERIODS)
        .between(
            term!([board.to_string(), r.minval()]),
            term!([board.to_string(), r.maxval()]),
        )
        .opt("index", PERIOD_INDEX)
        .order_by_index(r.desc(PERIOD_INDEX))
        .limit(limit_arg(limit))
}

/// One finished period of a board, or null.
pub fn period(board: &BoardId, n: u64) -> Term {
    r.table(PERIODS).get(format!("{board}:{n}"))
}

// ---------------------------------------------------------------- schema

/// `rethinkdb.db_config` rows of databases named `db` (more than one only
/// after concurrent creations on a cluster).
pub fn db_config_named(db: &str) -> Term {
    r.db(SYSTEM_DB)
        .table("db_config")
        .filter(term!({ "name": db.to_owned() }))
}

/// How many tables the database with this id holds.
pub fn table_count_of_db_id(id: &str) -> Term {
    r.db(SYSTEM_DB)
        .table("table_config")
        .opt("identifier_format", "uuid")
        .filter(term!({ "db": id.to_owned() }))
        .count()
}

/// `{id, name, indexes}` of every table of `db`, from `rethinkdb.table_config`,
/// which shows a name held twice as two rows (`tableList` shows it once).
pub fn table_config_of(db: &str) -> Term {
    r.db(SYSTEM_DB)
        .table("table_config")
        .filter(term!({ "db": db.to_owned() }))
        .pluck(["id", "name", "indexes"])
}

/// Drops the table with this id: RethinkDB's documented repair of a name
/// held by two tables.
pub fn delete_table_config(id: &str) -> Term {
    r.db(SYSTEM_DB)
        .table("table_config")
        .get(id.to_owned())
        .delete()
}

/// Drops the database with this id and its tables.
pub fn delete_db_config(id: &str) -> Term {
    r.db(SYSTEM_DB)
        .table("db_config")
        .get(id.to_owned())
        .delete()
}

/// Creates the database `db`.
pub fn db_create(db: &str) -> Term {
    r.db_create(db.to_owned())
}

/// Creates `table` in `db` with the server's default layout.
pub fn table_create(db: &str, table: &str) -> Term {
    r.db(db.to_owned()).table_create(table.to_owned())
}

/// Creates a table with `layout`'s replicas and shards. The default layout
/// is exactly [`table_create`], with no options: the term recorded in the
/// conformance golden file, and what a single server accepts.
pub fn table_create_laid_out(db: &str, table: &str, layout: SchemaOptions) -> Term {
    if layout == SchemaOptions::default() {
        return table_create(db, table);
    }
    r.db(db.to_owned())
        .table_create(table.to_owned())
        .opt("replicas", u32::from(layout.replicas))
        .opt("shards", u32::from(layout.shards))
}

/// Sets a table's replicas and shards (RethinkDB moves the data itself).
pub fn table_reconfigure(db: &str, table: &str, layout: SchemaOptions) -> Term {
    r.db(db.to_owned())
        .table(table.to_owned())
        .reconfigure()
        .opt("replicas", i64::from(layout.replicas))
        .opt("shards", i64::from(layout.shards))
}

/// Waits until a table is ready for reads and writes.
pub fn table_wait(db: &str, table: &str) -> Term {
    r.db(db.to_owned()).table(table.to_owned()).wait()
}

/// Creates the players' compound `[board, score]` index.
pub fn create_board_score_index(db: &str) -> Term {
    r.db(db.to_owned()).table(PLAYERS).index_create_fn(
        BOARD_SCORE_INDEX,
        func!(|doc| [doc.clone().g("board"), doc.g("score")]),
    )
}

/// Creates index `index` of `table`, as the schema defines it.
pub fn create_index(db: &str, table: &str, index: &str) -> Term {
    let t = r.db(db.to_owned()).table(table.to_owned());
    match index {
        BOARD_SCORE_INDEX => create_board_score_index(db),
        BOARD_RANK_INDEX => t.index_create_fn(
            BOARD_RANK_INDEX,
            func!(|doc| [doc.clone().g("board"), doc.clone().g("score"), doc.g("id")]),
        ),
        BOARD_PREV_INDEX => t.index_create_fn(
            BOARD_PREV_INDEX,
            func!(|doc| [
                doc.clone().g("board"),
                doc.clone().g("prev").g("n"),
                doc.g("prev").g("score")
            ]),
        ),
        PERIOD_INDEX => t.index_create_fn(
            PERIOD_INDEX,
            func!(|doc| [doc.clone().g("board"), doc.g("number")]),
        ),
        RESET_DUE_INDEX => t.index_create_fn(
            RESET_DUE_INDEX,
            func!(|doc| r.branch(
                doc.clone().has_fields("archiving"),
                0,
                doc.g("period").g("end")
            )),
        ),
        other => create_simple_index(db, table, other),
    }
}

/// Creates the players' simple `board` index.
pub fn create_board_index(db: &str) -> Term {
    create_simple_index(db, PLAYERS, BOARD_INDEX)
}

/// Creates a simple index on the field of the same name.
pub fn create_simple_index(db: &str, table: &str, field: &str) -> Term {
    r.db(db.to_owned())
        .table(table.to_owned())
        .index_create(field.to_owned())
}

/// Waits until every index of the players table is built.
pub fn players_index_wait(db: &str) -> Term {
    index_wait(db, PLAYERS)
}

/// Waits until every index of a table is built.
pub fn index_wait(db: &str, table: &str) -> Term {
    r.db(db.to_owned()).table(table.to_owned()).index_wait()
}

// ------------------------------------------------------------------ feeds

/// The changefeed of a whole table, with `{state: "ready"}` once it is open.
pub fn table_changes(table: &'static str) -> Term {
    r.table(table).changes().opt("include_states", true)
}

/// The documents of `table` whose `slot` is in `slots`, through the `slot`
/// index: `getAll(slot, ..., {index: "slot"})`.
fn in_slots(table: &'static str, slots: Range<u16>) -> Term {
    let keys: Vec<u16> = slots.collect();
    r.table(table).get_all(keys).opt("index", SLOT_INDEX)
}

/// The changefeed of the documents of `table` in `slots` (one worker
/// shard), with `{state: "ready"}` once it is open. The server sends only
/// these documents' changes: no whole-table feed is read and filtered.
pub fn slot_changes(table: &'static str, slots: Range<u16>) -> Term {
    in_slots(table, slots).changes().opt("include_states", true)
}

/// The ids of the boards in `slots`, as a stream (no array limit).
pub fn board_ids_in_slots(slots: Range<u16>) -> Term {
    in_slots(BOARDS, slots).g("id")
}

// ------------------------------------------------------------- migration

/// Sets a board's `slot` if it is not already `slot`.
pub fn set_board_slot(board: &str, slot: u16) -> Term {
    r.table(BOARDS)
        .get(board.to_owned())
        .update(func!(|doc| r.branch(
            doc.g(SLOT_FIELD).default(r.expr(-1)).eq(slot),
            term!({}),
            term!({ "slot": slot }),
        )))
}

/// Sets the `slot` of a board's players that lack it (or hold another).
pub fn set_players_slot(board: &str, slot: u16) -> Term {
    r.table(PLAYERS)
        .get_all([board.to_owned()])
        .opt("index", BOARD_INDEX)
        .update(func!(|doc| r.branch(
            doc.g(SLOT_FIELD).default(r.expr(-1)).eq(slot),
            term!({}),
            term!({ "slot": slot }),
        )))
}

// ----------------------------------------------------------------- leases

/// The documents' field holding the slot.
pub const SLOT_FIELD: &str = "slot";

/// The lease document of a shard.
pub fn lease_id(shard: u16) -> String {
    format!("shard:{shard}")
}

/// The document holding the shard layout the live workers agree on, and
/// who they are: `{shards, members: [{id, expires}]}`.
pub const LAYOUT_ID: &str = "layout";

/// The document marking the slot migration done.
pub const SLOT_MIGRATION_ID: &str = "migration:slot";

/// The database's clock in milliseconds since the epoch. Every lease time
/// is on this one clock (`r.now()` is fixed once per query, so update
/// functions using it stay atomic), never on a worker's.
fn db_now_ms() -> Term {
    r.now().to_epoch_time().mul(1000)
}

/// Every lease and the layout with its members' heartbeats, with the
/// database's time: `{now: ms, rows: [...]}`. The table holds a row per
/// shard and a few more, so it is small.
pub fn lease_table() -> Term {
    term!({
        "now": db_now_ms(),
        "rows": r.table(LEASES).coerce_to("array"),
    })
}

/// Inserts a free lease for each shard that has none (existing ones are
/// left alone: the inserts of those fail as duplicates).
pub fn seed_leases(shards: Range<u16>) -> Term {
    let docs: Vec<Value> = shards
        .map(|k| serde_json::json!({ "id": lease_id(k), "holder": null, "epoch": 0, "expires": 0 }))
        .collect();
    r.table(LEASES).insert(docs)
}

/// Records that `worker` is alive until `ttl_ms` from now, as a member of
/// the layout of `shards` shards. One atomic update of the layout document:
/// it succeeds (inserted or replaced) when the layout is `shards` already,
/// or when no other member is still alive, which makes it `shards`; it
/// leaves the document unchanged when live members hold another layout.
/// Expired members are dropped on the way.
pub fn join_layout(worker: &str, shards: u16, ttl_ms: u64) -> Term {
    let worker = worker.to_owned();
    let me = term!({ "id": worker.clone(), "expires": db_now_ms().add(ttl_ms) });
    r.table(LEASES).get(LAYOUT_ID).replace(func!(|doc| {
        let others = doc.clone().g("members").filter(func!(|m| m
            .clone()
            .g("expires")
            .gt(db_now_ms())
            .and(m.g("id").ne(worker.clone()))));
        r.branch(
            doc.clone().type_of().eq("NULL"),
            term!({ "id": LAYOUT_ID, "shards": shards, "members": [me.clone()] }),
            r.branch(
                doc.clone()
                    .g("shards")
                    .eq(shards)
                    .or(others.clone().is_empty()),
                term!({ "id": LAYOUT_ID, "shards": shards, "members": others.append(me.clone()) }),
                doc,
            ),
        )
    }))
}

/// Removes `worker` from the layout's members, as it stops.
pub fn leave_layout(worker: &str) -> Term {
    let worker = worker.to_owned();
    r.table(LEASES).get(LAYOUT_ID).update(func!(|doc| term!({
        "members": doc.g("members").filter(func!(|m| m.g("id").ne(worker.clone()))),
    })))
}

/// Takes a shard's lease if it is free or expired: holder `worker`, the
/// epoch one higher, expiring `ttl_ms` from now. One atomic conditional
/// update; the answer's change shows who holds it afterwards.
pub fn take_lease(shard: u16, worker: &str, ttl_ms: u64) -> Term {
    let worker = worker.to_owned();
    r.table(LEASES)
        .get(lease_id(shard))
        .update(func!(|lease| {
            r.branch(
                lease
                    .clone()
                    .g("holder")
                    .type_of()
                    .eq("NULL")
                    .or(lease.clone().g("expires").le(db_now_ms())),
                term!({
                    "holder": worker.clone(),
                    "epoch": lease.g("epoch").add(1),
                    "expires": db_now_ms().add(ttl_ms),
                }),
                term!({}),
            )
        }))
        .opt("return_changes", "always")
}

/// Extends the leases `worker` holds among `shards` and that have not
/// expired, to `ttl_ms` from now; others are left as they are.
pub fn renew_leases(shards: &[u16], worker: &str, ttl_ms: u64) -> Term {
    let ids: Vec<String> = shards.iter().map(|&k| lease_id(k)).collect();
    let worker = worker.to_owned();
    r.table(LEASES)
        .get_all(ids)
        .update(func!(|lease| {
            r.branch(
                lease
                    .clone()
                    .g("holder")
                    .eq(worker.clone())
                    .and(lease.g("expires").gt(db_now_ms())),
                term!({ "expires": db_now_ms().add(ttl_ms) }),
                term!({}),
            )
        }))
        .opt("return_changes", "always")
}

/// Frees the leases `worker` holds among `shards`, so that another worker
/// can take them at once.
pub fn release_leases(shards: &[u16], worker: &str) -> Term {
    let ids: Vec<String> = shards.iter().map(|&k| lease_id(k)).collect();
    let worker = worker.to_owned();
    r.table(LEASES).get_all(ids).update(func!(|lease| r.branch(
        lease.g("holder").eq(worker.clone()),
        term!({ "holder": r.expr(Value::Null), "expires": 0 }),
        term!({}),
    )))
}

/// Reads the slot migration's marker (null until it has run).
pub fn slot_migration_marker() -> Term {
    r.table(LEASES).get(SLOT_MIGRATION_ID)
}

/// Marks the slot migration done.
pub fn mark_slot_migration() -> Term {
    r.table(LEASES)
        .insert(term!({ "id": SLOT_MIGRATION_ID, "at": db_now_ms() }))
        .opt("conflict", "replace")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn top_players_reads_the_compound_index_descending() {
        let q = serde_json::to_value(top_players_query("b1", 5)).unwrap();
        assert_eq!(
            q,
            json!([34, [[71, [[41, [[182, [[15, ["players"]], [2, ["b1", [180]]], [2, ["b1", [181]]]], {"index": "board_score"}]], {"index": [74, ["board_score"]]}], 5]], "idem"]])
        );
    }

    #[test]
    fn idempotency_keys_are_1_to_128_visible_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(128)).is_ok());
        assert!(IdempotencyKey::parse("!~azAZ09-_.:").is_ok());
        for bad in ["", "a b", "tab\t", "caf\u{e9}", &"k".repeat(129)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_stay_below_2_to_the_31() {
        assert_eq!(limit_arg(5), 5);
        assert_eq!(limit_arg(usize::MAX), i32::MAX);
        assert_eq!(limit_arg(1 << 31), i32::MAX);
    }
}
