//! The worker under a burst: many score-adds on one board as fast as the
//! origin takes them, counted as events at one subscriber. The worker must
//! coalesce them to at most one publish per interval (plus the first, sent
//! at once, and the last, after the burst), and the last event must be the
//! final board.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::check;
use crate::cli::Config;
use crate::harness::{score_add_requests, Bench, HttpClient};
use crate::load::{self, Limit, LoadResult};
use crate::report::{Report, Table, Target};
use crate::stats::{fmt_rate, fmt_us};

const BOARD: &str = "burst";
/// Players the burst spreads over: more than the top five, so the top
/// changes all the time and almost every change is worth publishing.
const PLAYERS: usize = 10;

/// What the burst measured.
#[derive(Debug, Clone, Serialize)]
pub struct BurstResult {
    /// The burst's score-adds, sent as fast as the origin takes them.
    pub score_adds: LoadResult,
    /// How long the burst took, first request to last answer.
    pub burst_seconds: f64,
    /// The worker's `PUBLISH_INTERVAL_MS`.
    pub interval_ms: u64,
    /// Events the subscriber got after the initial snapshot.
    pub publishes: usize,
    /// ceil(burst / interval) + 2: one per interval, the first at once and
    /// the last after the burst.
    pub allowed: usize,
    /// Publishes per second while the burst lasted.
    pub publish_rate: f64,
    /// Score-adds per publish.
    pub coalescing: f64,
    /// Whether the last event showed the board as the database holds it.
    pub last_is_final: bool,
    /// From the burst's last answer to the final event's arrival.
    pub settle_us: f64,
}

/// Runs the burst scenario: tables, JSON section and targets.
pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let players = bench.board(BOARD, PLAYERS).await?;
    let requests = score_add_requests(bench.origin_port(), BOARD, &players);
    let mut sub = bench.subscribe(BOARD).await?;
    sub.next(Duration::from_secs(10)).await?;
    // Let the set-up's own publishes (one per player created) go out first.
    let interval = Duration::from_millis(config.publish_interval_ms);
    let _ = sub.drain(interval * 4).await;

    let clients =
        HttpClient::many(config.burst_concurrency, bench.origin_port(), requests, 200).await?;
    let started = Instant::now();
    let score_adds = load::run(clients, Limit::Count(config.burst_adds)).await;
    let ended = Instant::now();
    check(config, "burst score-add", &score_adds)?;
    let burst = ended - started;

    // Read events until the stream has been quiet for a while: the last
    // publish comes at most one interval after the burst.
    let quiet = (interval * 10).max(Duration::from_millis(500));
    let mut events = Vec::new();
    let mut last_at = ended;
    while let Ok(event) = sub.next(quiet).await {
        last_at = Instant::now();
        events.push(event);
    }
    let publishes = events.len();
    let final_board = bench.board_json(BOARD).await?;
    let last_is_final = events
        .last()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
        .is_some_and(|data| data == final_board);
    let allowed = (burst.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 2;
    let result = BurstResult {
        burst_seconds: burst.as_secs_f64(),
        interval_ms: config.publish_interval_ms,
        publishes,
        allowed,
        publish_rate: publishes as f64 / burst.as_secs_f64(),
        coalescing: score_adds.ops as f64 / publishes.max(1) as f64,
        last_is_final,
        settle_us: last_at.saturating_duration_since(ended).as_secs_f64() * 1e6,
        score_adds,
    };
    anyhow::ensure!(publishes > 0, "the burst produced no event");

    let mut table = Table::new(
        "Burst on one board: worker publishes, counted at a subscriber",
        &[
            "score-adds",
            "burst",
            "score-add rate",
            "publishes",
            "allowed",
            "publish rate",
            "adds per publish",
            "last = final",
            "settle",
        ],
    );
    table.row(vec![
        result.score_adds.ops.to_string(),
        format!("{:.2} s", result.burst_seconds),
        fmt_rate(result.score_adds.throughput),
        publishes.to_string(),
        allowed.to_string(),
        fmt_rate(result.publish_rate),
        format!("{:.0}", result.coalescing),
        if last_is_final { "yes" } else { "NO" }.to_owned(),
        fmt_us(result.settle_us),
    ]);
    report.table(table);
    report.target(Target::ratio(
        "burst publishes ≤ burst/interval + 2",
        format!(
            "{publishes} publishes / {allowed} allowed ({:.2} s burst, {} ms interval)",
            result.burst_seconds, config.publish_interval_ms
        ),
        publishes as f64 / allowed as f64,
        1.0,
    ));
    report.target(Target::ratio(
        "burst's last event is the final board",
        if last_is_final {
            "equal".to_owned()
        } else {
            format!("last event differs from {final_board}")
        },
        if last_is_final { 0.0 } else { f64::INFINITY },
        0.0,
    ));
    report.section("burst", &result);
    anyhow::ensure!(
        last_is_final || !config.strict(),
        "the last event is not the final board"
    );
    Ok(())
}
