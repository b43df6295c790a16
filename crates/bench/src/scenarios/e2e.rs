//! End-to-end latency: from a score-add's response to the update's arrival
//! at every subscriber of the board, for growing numbers of subscribers;
//! beside Pushpin's own fan-out of a raw publish to the same subscribers,
//! which is the floor the project cannot beat.
//!
//! Rounds are sequential and spaced by more than the worker's publish
//! interval, so each score-add is published at once rather than coalesced:
//! this measures latency, the burst scenario measures coalescing.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;
use testkit::{Event, PushpinOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cli::Config;
use crate::harness::Bench;
use crate::http::{Connection, Request};
use crate::report::{Report, Table, Target};
use crate::stats::{fmt_us, Samples, Summary};

const BOARD: &str = "e2e";
/// How long a round waits for its event at every subscriber.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Subscribers connecting at once; Pushpin refuses part of a larger burst
/// of new requests.
const CONNECT_CONCURRENCY: usize = 32;

/// One event at one subscriber, stamped as it was read.
struct Arrival {
    sub: usize,
    at: Instant,
    event: Event,
}

/// Subscribers of one board whose events all flow into one channel.
struct Audience {
    board: String,
    /// The id of the last event every subscriber has received: the
    /// `prev-id` a publish to them must carry.
    last_id: String,
    tx: mpsc::UnboundedSender<Arrival>,
    rx: mpsc::UnboundedReceiver<Arrival>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Audience {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Audience {
    fn new(board: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            board: board.to_owned(),
            last_id: String::new(),
            tx,
            rx,
            tasks: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Adds subscribers until there are `n`, each past its first event (the
    /// snapshot that comes with the hold), so each is subscribed to the
    /// channel when this returns. Subscriber `i` goes through Pushpin
    /// `i mod` the stack's Pushpins, so they share the audience evenly.
    async fn grow(&mut self, bench: &Bench, n: usize) -> anyhow::Result<()> {
        let board = self.board.clone();
        let board = board.as_str();
        let link = format!("/boards/{board}/?recover=1");
        let checks_before = bench.requests_logged(&link);
        let proxies = bench.proxies().len();
        // Each Pushpin follows the next link once, about a second after the
        // first reliable stream of a channel is held there, to catch a
        // publish that raced with the hold (later streams of the channel
        // cause no such check here).
        let checks_expected = if self.len() == 0 { proxies.min(n) } else { 0 };
        let subscribers: Vec<_> = futures::stream::iter(self.len()..n)
            .map(|i| async move {
                let mut sub = bench.subscribe_via(board, i % proxies).await?;
                let first = sub.next(ROUND_TIMEOUT).await?;
                anyhow::Ok((i, sub, first.id))
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .try_collect()
            .await?;
        for (sub_index, mut sub, id) in subscribers {
            self.last_id = id;
            let tx = self.tx.clone();
            self.tasks.push(tokio::spawn(async move {
                while let Ok(event) = sub.next(Duration::from_secs(3600)).await {
                    let at = Instant::now();
                    if tx
                        .send(Arrival {
                            sub: sub_index,
                            at,
                            event,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }));
        }
        // A check landing among the raw publishes, whose ids are not the
        // board's version, would resend the board and break their chain; so
        // wait until it has reached the origin (whose log has a line per
        // request), or for a generous time-out if it never comes.
        let deadline = Instant::now() + Duration::from_secs(15);
        while bench.requests_logged(&link) < checks_before + checks_expected
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// Waits until every subscriber has an event that `matches`, returning
    /// each one's arrival time, how many got none within the time-out, and
    /// the matching event's id.
    async fn gather(
        &mut self,
        matches: impl Fn(&Event) -> bool,
    ) -> (Vec<Instant>, usize, Option<String>) {
        let n = self.len();
        let mut matched_id = None;
        let mut seen = vec![false; n];
        let mut times = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
        while times.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(a)) => {
                    if a.sub < n && !seen[a.sub] && matches(&a.event) {
                        seen[a.sub] = true;
                        matched_id.get_or_insert(a.event.id);
                        times.push(a.at);
                    }
                }
                _ => break,
            }
        }
        let lost = n - times.len();
        (times, lost, matched_id)
    }

    /// Forgets events already received.
    fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// What one subscriber count measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanOut {
    /// Subscribers holding a stream.
    pub subscribers: usize,
    /// Measured score-adds, and as many raw publishes.
    pub rounds: usize,
    /// Score-add response → arrival, every arrival.
    pub e2e: Summary,
    /// Score-add response → arrival at the last subscriber, per round.
    pub e2e_last: Summary,
    /// Raw publish sent → arrival, every arrival.
    pub raw: Summary,
    /// Raw publish sent → arrival at the last subscriber, per round.
    pub raw_last: Summary,
    /// Score-add events that missed a subscriber within the round's
    /// time-out, summed over rounds.
    pub lost_e2e: usize,
    /// Raw publishes that missed a subscriber, summed over rounds.
    pub lost_raw: usize,
    /// Arrivals before the score-add's response (counted as 0 in `e2e`).
    /// A real RethinkDB can deliver the change on a changefeed before it
    /// answers the write (which, with hard durability, waits for the disk),
    /// so an event can beat the answer; the dev server in memory answers
    /// first.
    pub early: usize,
    /// Score-add sent → arrival, every arrival: the whole path, the write's
    /// own latency included, which no arrival can precede.
    pub from_send: Summary,
}

/// A connection to every Pushpin's publish endpoint: a raw publish goes to
/// all of them at once, as the worker's does, since each delivers only to
/// the streams it holds itself.
struct Publishers(Vec<(u16, Connection)>);

impl Publishers {
    async fn connect(bench: &Bench) -> anyhow::Result<Self> {
        let mut conns = Vec::new();
        for (_, port) in bench.proxies() {
            conns.push((port, Connection::connect(port).await?));
        }
        Ok(Self(conns))
    }

    /// Sends one publish body to every Pushpin concurrently; each must
    /// accept it.
    async fn publish(&mut self, body: &str) -> anyhow::Result<()> {
        let sends = self.0.iter_mut().map(|(port, conn)| {
            let request = Request::post_json(*port, "/publish/", body);
            async move { conn.send(&request).await }
        });
        for response in futures::future::join_all(sends).await {
            let response = response?;
            anyhow::ensure!(
                response.status == 200,
                "publish: {} {}",
                response.status,
                response.text()
            );
        }
        Ok(())
    }
}

/// Measures `rounds` score-adds and `rounds` raw publishes with the
/// audience as it is.
async fn measure(
    bench: &Bench,
    audience: &mut Audience,
    rounds: usize,
    pad: usize,
    spacing: Duration,
) -> anyhow::Result<FanOut> {
    let mut writer = Connection::connect(bench.origin_port()).await?;
    let mut publisher = Publishers::connect(bench).await?;
    let score_add = Request::post_json(
        bench.origin_port(),
        &format!("/boards/{}/players/p0/score-add/", audience.board),
        r#"{"value":1}"#,
    );
    let n = audience.len();
    let mut out = FanOut {
        subscribers: n,
        rounds,
        e2e: Summary::default(),
        e2e_last: Summary::default(),
        raw: Summary::default(),
        raw_last: Summary::default(),
        lost_e2e: 0,
        lost_raw: 0,
        early: 0,
        from_send: Summary::default(),
    };
    let (mut all, mut last) = (Samples::new(), Samples::new());
    let mut from_send = Samples::new();
    audience.clear();
    // Past the worker's interval since the board last changed, so the first
    // measured score-add is published at once too; round 0 only warms up
    // the connections on the way and is not measured.
    tokio::time::sleep(spacing).await;
    for round in 0..=rounds {
        let sent = Instant::now();
        let response = writer.send(&score_add).await?;
        let answered = Instant::now();
        anyhow::ensure!(
            response.status == 200,
            "score-add: {} {}",
            response.status,
            response.text()
        );
        let score = response.json()?["score"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("score-add answer without a score"))?;
        let (times, lost, id) = audience.gather(|e| has_score(e, "p0", score)).await;
        // The worker's event: its id is the board's version, the next
        // publish's `prev-id`. (A raw event carries no id line, and SSE
        // clients repeat the last id they saw, so only these count.)
        if let Some(id) = id {
            audience.last_id = id;
        }
        anyhow::ensure!(
            !times.is_empty(),
            "the update to score {score} reached no subscriber within {ROUND_TIMEOUT:?}"
        );
        if round == 0 {
            tokio::time::sleep(spacing).await;
            continue;
        }
        out.lost_e2e += lost;
        for &t in &times {
            if t < answered {
                out.early += 1;
            }
            all.record(t.saturating_duration_since(answered));
            from_send.record(t.saturating_duration_since(sent));
        }
        if let Some(&t) = times.iter().max() {
            last.record(t.saturating_duration_since(answered));
        }
        tokio::time::sleep(spacing).await;
    }
    out.e2e = all.summary();
    out.e2e_last = last.summary();
    out.from_send = from_send.summary();

    let (mut all, mut last) = (Samples::new(), Samples::new());
    let board_version = audience.last_id.clone();
    for round in 0..rounds {
        let marker = format!("{{\"round\":{round},");
        let publish = raw_publish(audience, &marker, pad, &format!("bench-{round}"));
        let sent = Instant::now();
        publisher.publish(&publish).await?;
        let (times, lost, _) = audience
            .gather(|e| e.event == "bench" && e.data.starts_with(&marker))
            .await;
        anyhow::ensure!(
            !times.is_empty(),
            "raw publish {round} reached no subscriber within {ROUND_TIMEOUT:?}"
        );
        out.lost_raw += lost;
        for &t in &times {
            all.record(t - sent);
        }
        if let Some(&t) = times.iter().max() {
            last.record(t - sent);
        }
        tokio::time::sleep(spacing).await;
    }
    restore_chain(audience, &mut publisher, &board_version).await?;
    out.raw = all.summary();
    out.raw_last = last.summary();
    Ok(out)
}

/// Puts the board's own version back at the end of the channel's `prev-id`
/// chain, with an SSE comment that clients ignore, so that the worker's next
/// publish (whose `prev-id` is that version) is delivered as usual instead
/// of sending every stream through Pushpin's recovery.
async fn restore_chain(
    audience: &mut Audience,
    publisher: &mut Publishers,
    board_version: &str,
) -> anyhow::Result<()> {
    let body = json!({"items": [{
        "channel": format!("leaderboard-{}", audience.board),
        "id": board_version,
        "prev-id": audience.last_id,
        "formats": {"http-stream": {"content": ": bench\n\n"}},
    }]});
    publisher.publish(&body.to_string()).await?;
    audience.last_id = board_version.to_owned();
    Ok(())
}

/// A publish of an event as large as a board's (`pad` bytes of data)
/// carrying `marker`, next in the channel's `prev-id` chain: the streams are
/// reliable (held with a `prev-id`), and Pushpin delivers nothing to them
/// that does not continue the chain. Returns the publish request's body.
fn raw_publish(audience: &mut Audience, marker: &str, pad: usize, id: &str) -> String {
    let filler = "x".repeat(pad.saturating_sub(marker.len() + 10));
    let content = format!("event: bench\ndata: {marker}\"pad\":\"{filler}\"}}\n\n");
    let body = json!({"items": [{
        "channel": format!("leaderboard-{}", audience.board),
        "id": id,
        "prev-id": audience.last_id,
        "formats": {"http-stream": {"content": content}},
    }]});
    audience.last_id = id.to_owned();
    body.to_string()
}

/// Whether an update event shows `player` with `score`.
fn has_score(event: &Event, player: &str, score: i64) -> bool {
    if event.event != "update" {
        return false;
    }
    let Ok(board) = serde_json::from_str::<serde_json::Value>(&event.data) else {
        return false;
    };
    board["players"].as_array().is_some_and(|players| {
        players
            .iter()
            .any(|p| p["id"] == player && p["score"].as_i64() == Some(score))
    })
}

/// Waits until the worker has published the board's set-up (it publishes
/// at most once per interval, so the last player's creation goes out up to
/// an interval later). A stream held before that would get an event whose
/// `prev-id` is older than its own and go through Pushpin's recovery.
async fn settle(config: &Config) {
    tokio::time::sleep(Duration::from_millis(config.publish_interval_ms * 4)).await;
}

fn rounds_for(config: &Config, subscribers: usize) -> usize {
    config
        .e2e_samples
        .div_ceil(subscribers)
        .max(config.e2e_min_rounds)
}

/// Creates `board` (five players) and, for each of `counts` in ascending
/// order, grows its audience to that many subscribers (spread over every
/// Pushpin of the stack) and measures end-to-end latency beside the raw
/// fan-out. Fails when nothing arrived, and in a strict run when any event
/// was lost.
pub(crate) async fn fan_out(
    bench: &mut Bench,
    config: &Config,
    board: &str,
    counts: &[usize],
) -> anyhow::Result<Vec<FanOut>> {
    bench.board(board, 5).await?;
    settle(config).await;
    let pad = bench.board_json(board).await?.to_string().len();
    let spacing = Duration::from_millis(config.publish_interval_ms + 10);
    let mut audience = Audience::new(board);
    let mut counts = counts.to_vec();
    counts.sort_unstable();
    let mut results = Vec::new();
    for n in counts {
        audience.grow(bench, n).await?;
        let rounds = rounds_for(config, n);
        let r = match measure(bench, &mut audience, rounds, pad, spacing).await {
            Ok(r) => r,
            Err(e) => {
                let log = bench.stack.pushpin.process().log_tail(40);
                return Err(e.context(format!("Pushpin's log ends with:\n{log}")));
            }
        };
        let lost = r.lost_e2e + r.lost_raw;
        anyhow::ensure!(
            r.e2e.count > 0 && r.raw.count > 0,
            "no event arrived at {n} subscribers"
        );
        anyhow::ensure!(
            lost == 0 || !config.strict(),
            "{lost} events never arrived at {n} subscribers"
        );
        results.push(r);
    }
    Ok(results)
}

/// The header of a fan-out table, after `first` (columns that say which
/// run a row is).
pub(crate) fn fan_out_header<'a>(first: &[&'a str]) -> Vec<&'a str> {
    let mut header = first.to_vec();
    header.extend([
        "subscribers",
        "rounds",
        "e2e p50",
        "e2e p99",
        "e2e last p50",
        "raw p50",
        "raw p99",
        "raw last p50",
        "p99 ratio",
        "lost",
        "early",
        "sent→event p50",
        "sent→event p99",
    ]);
    header
}

/// Runs the end-to-end scenario at each `--subscribers` count.
pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let results = fan_out(bench, config, BOARD, &config.subscribers).await?;
    let mut table = Table::new(
        "End-to-end: score-add response → event at subscribers, beside a raw publish → event",
        &fan_out_header(&[]),
    );
    for r in &results {
        let n = r.subscribers;
        let ratio = r.e2e.p99_us / r.raw.p99_us;
        table.row(fan_out_row(r, ratio));
        report.target(Target::ratio(
            &format!("e2e p99 ≤ 1.5× raw fan-out p99, {n} subscribers"),
            format!(
                "e2e {} / raw {}",
                fmt_us(r.e2e.p99_us),
                fmt_us(r.raw.p99_us)
            ),
            ratio,
            1.5,
        ));
    }
    report.table(table);
    report.section("e2e", &results);

    if config.compare_pushpin_defaults {
        let most = results.last().map_or(1, |r| r.subscribers);
        compare_message_rate(bench, config, report, most).await?;
    }
    Ok(())
}

/// One row of a fan-out table (see [`fan_out_header`]).
pub(crate) fn fan_out_row(r: &FanOut, ratio: f64) -> Vec<String> {
    vec![
        r.subscribers.to_string(),
        r.rounds.to_string(),
        fmt_us(r.e2e.p50_us),
        fmt_us(r.e2e.p99_us),
        fmt_us(r.e2e_last.p50_us),
        fmt_us(r.raw.p50_us),
        fmt_us(r.raw.p99_us),
        fmt_us(r.raw_last.p50_us),
        format!("{ratio:.2}"),
        (r.lost_e2e + r.lost_raw).to_string(),
        r.early.to_string(),
        fmt_us(r.from_send.p50_us),
        fmt_us(r.from_send.p99_us),
    ]
}

/// Pushpin's packaged `message_rate` (2,500/s, on a 25 ms tick) and
/// `message_hwm` (25,000) against the configuration this project uses
/// (`message_rate=0`, `message_hwm=100000`): fan-out to the most
/// subscribers.
async fn compare_message_rate(
    bench: &Bench,
    config: &Config,
    report: &mut Report,
    most: usize,
) -> anyhow::Result<()> {
    let spacing = Duration::from_millis(config.publish_interval_ms + 10);
    let packaged = Bench::start(
        config,
        PushpinOptions {
            message_rate: 2500,
            message_hwm: 25_000,
            ..PushpinOptions::default()
        },
    )
    .await?;
    packaged.board(BOARD, 5).await?;
    settle(config).await;
    // As large as the board's event, as in the main measurement.
    let pad = packaged.board_json(BOARD).await?.to_string().len();

    let mut table = Table::new(
        "Pushpin message_rate: this project's configuration against the packaged default",
        &["pushpin", "test", "p50", "p99", "last p50", "lost"],
    );
    let mut results = serde_json::Map::new();
    for (name, b) in [("message_rate=0", bench), ("message_rate=2500", &packaged)] {
        let mut audience = Audience::new(BOARD);
        audience.grow(b, most).await?;
        let r = measure(b, &mut audience, config.e2e_min_rounds, pad, spacing).await?;
        drop(audience);
        table.row(vec![
            name.to_owned(),
            format!("raw fan-out, {most} subscribers"),
            fmt_us(r.raw.p50_us),
            fmt_us(r.raw.p99_us),
            fmt_us(r.raw_last.p50_us),
            r.lost_raw.to_string(),
        ]);
        table.row(vec![
            name.to_owned(),
            format!("e2e, {most} subscribers"),
            fmt_us(r.e2e.p50_us),
            fmt_us(r.e2e.p99_us),
            fmt_us(r.e2e_last.p50_us),
            r.lost_e2e.to_string(),
        ]);
        results.insert(name.to_owned(), serde_json::to_value(&r)?);
    }
    report.table(table);
    report.section("pushpin_message_rate", results);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            event: name.to_owned(),
            id: String::new(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn an_update_is_matched_by_player_and_score() {
        let e = event(
            "update",
            r#"{"id":"b","name":"b","players":[{"id":"p1","name":"p1","score":9},{"id":"p0","name":"p0","score":3}]}"#,
        );
        assert!(has_score(&e, "p0", 3));
        assert!(!has_score(&e, "p0", 9));
        assert!(!has_score(&event("deleted", &e.data), "p0", 3));
    }

    #[test]
    fn rounds_cover_the_samples_but_never_too_few() {
        let mut config = Config::defaults(crate::cli::Scenario::E2e);
        config.e2e_samples = 200;
        config.e2e_min_rounds = 20;
        assert_eq!(rounds_for(&config, 1), 200);
        assert_eq!(rounds_for(&config, 100), 20);
        assert_eq!(rounds_for(&config, 1000), 20);
    }
}
