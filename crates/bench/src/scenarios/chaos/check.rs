//! The campaign's checker: pure functions over what was recorded (every
//! client's history, every subscriber's events, the database afterwards, the
//! workers' publish logs, the processes' logs). Each returns the anomalies
//! it finds; a correct run finds none.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// Unix milliseconds.
pub type Ms = u64;

/// What a board's rules make of its scores, as the model needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Operator {
    /// `incr`: a write adds to the score.
    Incr,
    /// `set`: a write replaces the score.
    Set,
    /// `best`: a write keeps the better of the two scores.
    Best,
}

/// One board of the workload.
#[derive(Debug, Clone, Serialize)]
pub struct BoardModel {
    /// The board's id.
    pub id: String,
    /// How its writes combine with the score.
    pub operator: Operator,
    /// Lower is better.
    pub asc: bool,
    /// Whether the board resets every few seconds during the run.
    pub resets: bool,
}

impl BoardModel {
    /// Which way a player's shown score may move within a period: the
    /// workload adds only positive values, and submits to `set` and `best`
    /// boards ever better values, one writer per player.
    fn grows(&self) -> bool {
        self.operator == Operator::Incr || !self.asc
    }

    fn better(&self, a: i64, b: i64) -> bool {
        if self.asc {
            a < b
        } else {
            a > b
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Answered 200.
    Ok,
    /// Answered with a definite refusal (a 4xx): nothing was written.
    Failed(u16),
    /// Never answered: it may or may not have been applied.
    Unknown,
}

/// One try of an operation.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// When the request was sent.
    pub at: Ms,
    /// How long until its answer or failure, in milliseconds.
    pub took_ms: u64,
    /// `None`: no answer (refused, reset or timed out).
    pub status: Option<u16>,
    /// Whether the answer carried `Retry-After`.
    pub retry_after: bool,
}

/// One keyed write, from its invocation to its completion.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// The board's id.
    pub board: String,
    /// The player's id.
    pub player: String,
    /// The `value` sent: added on `incr` boards, submitted on the others.
    pub value: i64,
    /// The `Idempotency-Key`, the same on every attempt.
    pub key: String,
    /// When the first attempt was sent.
    pub invoked: Ms,
    /// When the client stopped trying.
    pub completed: Ms,
    /// How it ended.
    pub outcome: Outcome,
    /// Every try, in order.
    pub attempts: Vec<Attempt>,
}

/// One period of a board as the database holds it afterwards.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeriodState {
    /// The period's number, from 1 (0 on a board that never resets).
    pub number: u64,
    /// When it started.
    pub start: Ms,
    /// `None` for the period in force.
    pub end: Option<Ms>,
    /// Each player's score; a player without one is absent.
    pub scores: BTreeMap<String, i64>,
}

/// A board afterwards: its archived periods and the one in force (a board
/// that never resets has just the one).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinalBoard {
    /// Every period, oldest first, the one in force last.
    pub periods: Vec<PeriodState>,
}

/// One event a subscriber received.
#[derive(Debug, Clone, Serialize)]
pub struct SubEvent {
    /// When it arrived.
    pub at: Ms,
    /// The SSE event name (`update`, ...).
    pub event: String,
    /// The event's data parsed as JSON (`null` if it is not).
    pub data: serde_json::Value,
}

/// One line of a worker's publish log.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
pub struct PublishRecord {
    /// The publishing worker's id.
    pub worker: String,
    /// The shard of the board published.
    pub shard: u16,
    /// The epoch of the tenure the worker believed it held; `None` if it
    /// held none.
    pub epoch: Option<u64>,
    /// The board published.
    pub board: String,
    /// When the publish began.
    pub t0: Ms,
    /// When it was last polled: the last moment it may have sent anything
    /// (a publish dropped after its tenure ran out is not polled again).
    pub t1: Ms,
}

/// Something the system promised and did not do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// A short fixed name of what went wrong, e.g. `board-missing`.
    pub kind: &'static str,
    /// The specifics: which board, player, key or line.
    pub detail: String,
}

fn anomaly(kind: &'static str, detail: String) -> Anomaly {
    Anomaly { kind, detail }
}

/// Checks 1 and 2: every acknowledged write counted exactly once, each
/// write of unknown outcome at most once, each in the period it was applied
/// in, and every final score the model's replay of the history.
pub fn scores(
    boards: &[BoardModel],
    ops: &[Op],
    finals: &BTreeMap<String, FinalBoard>,
) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let mut by_player: BTreeMap<(&str, &str), Vec<&Op>> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|o| !matches!(o.outcome, Outcome::Failed(_)))
    {
        by_player
            .entry((&op.board, &op.player))
            .or_default()
            .push(op);
    }
    for board in boards {
        let Some(state) = finals.get(&board.id) else {
            found.push(anomaly("board-missing", board.id.clone()));
            continue;
        };
        for ((_, player), ops) in by_player.range((board.id.as_str(), "")..) {
            if ops.first().is_none_or(|o| o.board != board.id) {
                break;
            }
            let who = format!("{}/{}", board.id, player);
            match board.operator {
                Operator::Incr => incr(&who, player, ops, state, &mut found),
                Operator::Set | Operator::Best => {
                    replace(board, &who, player, ops, state, &mut found)
                }
            }
        }
    }
    found
}

fn incr(who: &str, player: &str, ops: &[&Op], state: &FinalBoard, found: &mut Vec<Anomaly>) {
    let sum = |pick: &dyn Fn(&Op) -> bool| -> i64 {
        ops.iter().filter(|o| pick(o)).map(|o| o.value).sum()
    };
    let acked = sum(&|o| o.outcome == Outcome::Ok);
    let unknown = sum(&|o| o.outcome == Outcome::Unknown);
    let observed: i64 = state
        .periods
        .iter()
        .map(|p| p.scores.get(player).copied().unwrap_or(0))
        .sum();
    if observed < acked {
        found.push(anomaly(
            "lost-write",
            format!("{who}: {observed} counted over all periods, {acked} acknowledged"),
        ));
    } else if observed > acked + unknown {
        found.push(anomaly(
            "doubled-write",
            format!(
                "{who}: {observed} counted over all periods, {acked} acknowledged and {unknown} unknown"
            ),
        ));
    }
    if state.periods.len() < 2 {
        return;
    }
    // A write is applied between its invocation and its completion: it can
    // only count in a period that overlaps that span.
    let overlaps =
        |op: &Op, p: &PeriodState| op.invoked < p.end.unwrap_or(Ms::MAX) && op.completed >= p.start;
    for period in &state.periods {
        let certain: i64 = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter(|o| {
                overlaps(o, period) && state.periods.iter().filter(|p| overlaps(o, p)).count() == 1
            })
            .map(|o| o.value)
            .sum();
        let possible: i64 = ops
            .iter()
            .filter(|o| overlaps(o, period))
            .map(|o| o.value)
            .sum();
        let got = period.scores.get(player).copied().unwrap_or(0);
        if got < certain || got > possible {
            found.push(anomaly(
                "wrong-period",
                format!(
                    "{who}: period {} holds {got}, its writes make {certain} to {possible}",
                    period.number
                ),
            ));
        }
    }
}

fn replace(
    board: &BoardModel,
    who: &str,
    player: &str,
    ops: &[&Op],
    state: &FinalBoard,
    found: &mut Vec<Anomaly>,
) {
    let Some(current) = state.periods.last() else {
        return;
    };
    let got = current.scores.get(player).copied();
    let mut ops: Vec<&&Op> = ops.iter().collect();
    ops.sort_by_key(|o| o.invoked);
    let acked: Vec<i64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .map(|o| o.value)
        .collect();
    let Some(&last) = acked.last() else {
        return;
    };
    let expected = match board.operator {
        Operator::Best => acked
            .iter()
            .copied()
            .reduce(|a, b| if board.better(b, a) { b } else { a })
            .unwrap_or(last),
        _ => last,
    };
    // A write of unknown outcome may have landed: after the last
    // acknowledged one for `set`, or anywhere for `best` if better.
    let last_ok_at = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .map(|o| o.invoked)
        .max()
        .unwrap_or(0);
    let allowed: BTreeSet<i64> = std::iter::once(expected)
        .chain(
            ops.iter()
                .filter(|o| o.outcome == Outcome::Unknown)
                .filter(|o| match board.operator {
                    Operator::Best => board.better(o.value, expected),
                    _ => o.invoked > last_ok_at,
                })
                .map(|o| o.value),
        )
        .collect();
    if got.is_none_or(|g| !allowed.contains(&g)) {
        found.push(anomaly(
            "lost-write",
            format!("{who}: score {got:?}, the history allows {allowed:?}"),
        ));
    }
}

/// Check 3: no subscriber sees a board older than one it has already seen,
/// except across a `reset` or `deleted` event.
pub fn staleness(board: &BoardModel, subscriber: &str, events: &[SubEvent]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let mut last: Option<(u64, BTreeMap<String, i64>)> = None;
    for e in events {
        match e.event.as_str() {
            "reset" | "deleted" => last = None,
            "update" => {
                let period = e.data["period"]["number"].as_u64().unwrap_or(0);
                let scores = shown_scores(&e.data);
                if let Some((last_period, last_scores)) = &last {
                    let older = period < *last_period
                        || (period == *last_period
                            && scores.iter().any(|(p, &s)| {
                                last_scores.get(p).is_some_and(|&l| {
                                    if board.grows() {
                                        s < l
                                    } else {
                                        s > l
                                    }
                                })
                            }));
                    if older {
                        found.push(anomaly(
                            "stale-publish",
                            format!(
                                "{subscriber} on {}: period {period} {scores:?} after period {last_period} {last_scores:?}",
                                board.id
                            ),
                        ));
                    }
                }
                last = Some((period, scores));
            }
            _ => {}
        }
    }
    found
}

/// The scores a board's JSON shows, by player.
pub fn shown_scores(board: &serde_json::Value) -> BTreeMap<String, i64> {
    board["players"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?.to_owned(), p["score"].as_i64()?)))
        .collect()
}

/// Check 5: no two workers publish one shard with overlapping tenures,
/// judged from their epochs: each epoch is one worker's, and the span from
/// an epoch's first publish to its last ends before the next epoch's first
/// publish begins.
pub fn tenures(records: &[PublishRecord]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let mut spans: BTreeMap<(u16, u64), (BTreeSet<&str>, Ms, Ms)> = BTreeMap::new();
    for r in records {
        let Some(epoch) = r.epoch else {
            found.push(anomaly(
                "publish-without-lease",
                format!(
                    "{} published {} (shard {}) holding no lease",
                    r.worker, r.board, r.shard
                ),
            ));
            continue;
        };
        let span = spans
            .entry((r.shard, epoch))
            .or_insert((BTreeSet::new(), Ms::MAX, 0));
        span.0.insert(&r.worker);
        span.1 = span.1.min(r.t0);
        span.2 = span.2.max(r.t1);
    }
    for ((shard, epoch), (workers, _, _)) in &spans {
        if workers.len() > 1 {
            found.push(anomaly(
                "shared-epoch",
                format!("shard {shard} epoch {epoch} published by {workers:?}"),
            ));
        }
    }
    let all: Vec<_> = spans.iter().collect();
    for pair in all.windows(2) {
        let (((s1, e1), (w1, _, end1)), ((s2, e2), (w2, start2, _))) = (pair[0], pair[1]);
        if s1 == s2 && w1 != w2 && end1 > start2 {
            found.push(anomaly(
                "overlapping-tenures",
                format!(
                    "shard {s1}: epoch {e1} ({w1:?}) published until {end1}, epoch {e2} ({w2:?}) from {start2}"
                ),
            ));
        }
    }
    found
}

/// Check 6: no 5xx but 503 with `Retry-After`. The one exception is
/// Pushpin's own 502 for a request in flight at an origin killed with
/// `kill -9` (`origin_kills`: when each such fault was held, in ms): Pushpin
/// does not send a request again once it has gone to an origin, so the
/// client learns that the outcome is unknown, and retries with its key.
/// Those are counted apart ([`proxied_502s`]); a 502 at any other time is
/// an anomaly.
pub fn statuses(ops: &[Op], origin_kills: &[(Ms, Ms)]) -> Vec<Anomaly> {
    ops.iter()
        .flat_map(|op| op.attempts.iter().map(move |a| (op, a)))
        .filter(|(_, a)| {
            a.status
                .is_some_and(|s| s >= 500 && !(s == 503 && a.retry_after))
                && !killed_in_flight(a, origin_kills)
        })
        .map(|(op, a)| {
            anomaly(
                "bad-5xx",
                format!(
                    "{}/{} key {}: {} (Retry-After: {})",
                    op.board,
                    op.player,
                    op.key,
                    a.status.unwrap_or(0),
                    a.retry_after
                ),
            )
        })
        .collect()
}

/// A 502 for a request under way when an origin was killed.
fn killed_in_flight(a: &Attempt, origin_kills: &[(Ms, Ms)]) -> bool {
    a.status == Some(502)
        && origin_kills
            .iter()
            .any(|(t0, t1)| a.at <= *t1 && a.at + a.took_ms >= *t0)
}

/// How many answers were Pushpin's 502 for a request in flight at an
/// origin killed with `kill -9` (see [`statuses`]).
pub fn proxied_502s(ops: &[Op], origin_kills: &[(Ms, Ms)]) -> usize {
    ops.iter()
        .flat_map(|op| op.attempts.iter())
        .filter(|a| killed_in_flight(a, origin_kills))
        .count()
}

/// Check 6: no panic in any process's log.
pub fn panics(name: &str, log: &str) -> Vec<Anomaly> {
    log.lines()
        .filter(|l| l.contains("panicked at"))
        .map(|l| anomaly("panic", format!("{name}: {l}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn board(id: &str, operator: Operator, resets: bool) -> BoardModel {
        BoardModel {
            id: id.into(),
            operator,
            asc: false,
            resets,
        }
    }

    fn op(key: &str, value: i64, invoked: Ms, completed: Ms, outcome: Outcome) -> Op {
        Op {
            board: "b".into(),
            player: "p".into(),
            value,
            key: key.into(),
            invoked,
            completed,
            outcome,
            attempts: vec![Attempt {
                at: invoked,
                took_ms: completed - invoked,
                status: Some(200),
                retry_after: false,
            }],
        }
    }

    fn finals(periods: &[(u64, Ms, Option<Ms>, i64)]) -> BTreeMap<String, FinalBoard> {
        let periods = periods
            .iter()
            .map(|&(number, start, end, score)| PeriodState {
                number,
                start,
                end,
                scores: [("p".to_owned(), score)].into(),
            })
            .collect();
        [("b".to_owned(), FinalBoard { periods })].into()
    }

    fn kinds(found: &[Anomaly]) -> Vec<&'static str> {
        found.iter().map(|a| a.kind).collect()
    }

    /// Three acknowledged adds of 1, 2 and 4, one in each of three periods
    /// (the last in force), and one of 8 whose outcome is unknown.
    fn history() -> Vec<Op> {
        vec![
            op("k1", 1, 100, 110, Outcome::Ok),
            op("k2", 2, 1100, 1110, Outcome::Ok),
            op("k3", 4, 2100, 2110, Outcome::Ok),
            op("k4", 8, 2200, 2300, Outcome::Unknown),
        ]
    }

    #[test]
    fn a_correct_history_has_no_anomaly() {
        let boards = [board("b", Operator::Incr, true)];
        let periods = [
            (1, 0, Some(1000), 1),
            (2, 1000, Some(2000), 2),
            (3, 2000, None, 4),
        ];
        assert!(scores(&boards, &history(), &finals(&periods)).is_empty());
        // The unknown write may have landed, once.
        let periods = [
            (1, 0, Some(1000), 1),
            (2, 1000, Some(2000), 2),
            (3, 2000, None, 12),
        ];
        assert!(scores(&boards, &history(), &finals(&periods)).is_empty());
    }

    #[test]
    fn a_lost_write_is_reported() {
        let boards = [board("b", Operator::Incr, true)];
        let periods = [
            (1, 0, Some(1000), 1),
            (2, 1000, Some(2000), 0),
            (3, 2000, None, 4),
        ];
        let found = scores(&boards, &history(), &finals(&periods));
        assert!(kinds(&found).contains(&"lost-write"), "{found:?}");
    }

    #[test]
    fn a_doubled_write_is_reported() {
        let boards = [board("b", Operator::Incr, true)];
        // k2 counted twice, and the unknown k4 too.
        let periods = [
            (1, 0, Some(1000), 1),
            (2, 1000, Some(2000), 4),
            (3, 2000, None, 12),
        ];
        let found = scores(&boards, &history(), &finals(&periods));
        assert!(kinds(&found).contains(&"doubled-write"), "{found:?}");
    }

    #[test]
    fn a_write_counted_in_another_period_is_reported() {
        let boards = [board("b", Operator::Incr, true)];
        let periods = [
            (1, 0, Some(1000), 3),
            (2, 1000, Some(2000), 0),
            (3, 2000, None, 4),
        ];
        let found = scores(&boards, &history(), &finals(&periods));
        assert_eq!(kinds(&found), ["wrong-period", "wrong-period"], "{found:?}");
    }

    #[test]
    fn set_and_best_boards_keep_the_last_and_the_best() {
        let set = [board("b", Operator::Set, false)];
        let ops = vec![
            op("k1", 5, 100, 110, Outcome::Ok),
            op("k2", 7, 200, 210, Outcome::Ok),
        ];
        assert!(scores(&set, &ops, &finals(&[(0, 0, None, 7)])).is_empty());
        let found = scores(&set, &ops, &finals(&[(0, 0, None, 5)]));
        assert_eq!(kinds(&found), ["lost-write"]);
        let best = [BoardModel {
            asc: true,
            ..board("b", Operator::Best, false)
        }];
        assert!(scores(&best, &ops, &finals(&[(0, 0, None, 5)])).is_empty());
        assert_eq!(
            kinds(&scores(&best, &ops, &finals(&[(0, 0, None, 7)]))),
            ["lost-write"]
        );
    }

    fn update(at: Ms, period: u64, score: i64) -> SubEvent {
        SubEvent {
            at,
            event: "update".into(),
            data: json!({"period": {"number": period}, "players": [{"id": "p", "score": score}]}),
        }
    }

    #[test]
    fn a_stale_publish_is_reported() {
        let b = board("b", Operator::Incr, true);
        let fine = [update(1, 1, 3), update(2, 1, 5), update(3, 2, 0)];
        assert!(staleness(&b, "s", &fine).is_empty());
        let stale = [update(1, 1, 3), update(2, 1, 5), update(3, 1, 3)];
        assert_eq!(kinds(&staleness(&b, "s", &stale)), ["stale-publish"]);
        let old_period = [update(1, 2, 1), update(2, 1, 9)];
        assert_eq!(kinds(&staleness(&b, "s", &old_period)), ["stale-publish"]);
        // A reset starts the board again.
        let reset = SubEvent {
            at: 3,
            event: "reset".into(),
            data: json!({}),
        };
        assert!(staleness(&b, "s", &[update(1, 1, 5), reset, update(4, 1, 0)]).is_empty());
    }

    fn publish(worker: &str, shard: u16, epoch: Option<u64>, t0: Ms, t1: Ms) -> PublishRecord {
        PublishRecord {
            worker: worker.into(),
            shard,
            epoch,
            board: "b".into(),
            t0,
            t1,
        }
    }

    #[test]
    fn overlapping_tenures_are_reported() {
        let handover = [
            publish("w1", 3, Some(1), 0, 10),
            publish("w1", 3, Some(1), 50, 60),
            publish("w2", 3, Some(2), 70, 80),
            publish("w1", 4, Some(1), 75, 90),
        ];
        assert!(tenures(&handover).is_empty());
        let overlap = [
            publish("w1", 3, Some(1), 0, 10),
            publish("w2", 3, Some(2), 40, 50),
            publish("w1", 3, Some(1), 45, 60),
        ];
        assert_eq!(kinds(&tenures(&overlap)), ["overlapping-tenures"]);
        let shared = [
            publish("w1", 3, Some(1), 0, 10),
            publish("w2", 3, Some(1), 20, 30),
        ];
        assert_eq!(kinds(&tenures(&shared)), ["shared-epoch"]);
        let unleased = [publish("w1", 3, None, 0, 10)];
        assert_eq!(kinds(&tenures(&unleased)), ["publish-without-lease"]);
    }

    #[test]
    fn only_503_with_retry_after_is_a_fine_5xx() {
        let mut ok = op("k1", 1, 0, 10, Outcome::Ok);
        ok.attempts.insert(
            0,
            Attempt {
                at: 0,
                took_ms: 3,
                status: Some(503),
                retry_after: true,
            },
        );
        assert!(statuses(std::slice::from_ref(&ok), &[]).is_empty());
        ok.attempts[0].status = Some(500);
        assert_eq!(
            kinds(&statuses(std::slice::from_ref(&ok), &[])),
            ["bad-5xx"]
        );
        // Pushpin's 502 while an origin is killed is counted apart; at any
        // other time it is an anomaly.
        ok.attempts[0].status = Some(502);
        assert!(statuses(std::slice::from_ref(&ok), &[(1, 50)]).is_empty());
        assert_eq!(proxied_502s(std::slice::from_ref(&ok), &[(1, 50)]), 1);
        assert_eq!(kinds(&statuses(&[ok], &[(100, 200)])), ["bad-5xx"]);
        assert_eq!(
            kinds(&panics(
                "web",
                "x\nthread 'main' panicked at src/x.rs:1:1\n"
            )),
            ["panic"]
        );
    }
}
