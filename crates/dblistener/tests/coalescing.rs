//! The worker's coalescing, step by step on a paused clock: a board source
//! and a proxy that the test controls stand in for the database and
//! Pushpin. (The end-to-end tests in `crates/testkit` run the same worker
//! against the real ones.)

use std::collections::{BTreeMap, BTreeSet};
use std::future::{ready, Future};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dblistener::worker::RETRY_DELAY;
use dblistener::{BoardSource, Metrics, Publish, PublishReport, Worker};
use domain::{Board, BoardId, Player, Shards, Snapshot};
use futures::channel::mpsc;
use grip::{HttpStreamFormat, Item};
use store::{BoardChange, StoreError};
use tokio::time::{sleep, Instant};

const INTERVAL: Duration = Duration::from_millis(50);
const MS: Duration = Duration::from_millis(1);

type Feed = mpsc::UnboundedSender<Result<BoardChange, StoreError>>;

/// Boards of one player each, by score; reads take `read_time` and return
/// the board as it was when the read began.
#[derive(Clone, Default)]
struct Db(Arc<Mutex<DbState>>);

#[derive(Default)]
struct DbState {
    scores: BTreeMap<String, i64>,
    feed: Option<Feed>,
    read_time: Duration,
    /// Boards whose period ended (at the epoch) and that have not reset.
    ended: BTreeSet<String>,
}

impl Db {
    fn with_board(board: &str, score: i64) -> Self {
        let db = Db::default();
        db.0.lock().unwrap().scores.insert(board.into(), score);
        db
    }

    fn notify(&self, change: Result<BoardChange, StoreError>) {
        if let Some(feed) = &self.0.lock().unwrap().feed {
            let _ = feed.unbounded_send(change);
        }
    }

    /// Sets a board's score, and the feed reports it.
    fn set(&self, board: &str, score: i64) {
        self.0.lock().unwrap().scores.insert(board.into(), score);
        self.notify(Ok(BoardChange::Touched(board.into())));
    }

    /// The feed reports a change that leaves the board as it was (a score
    /// below the top 5).
    fn touch(&self, board: &str) {
        self.notify(Ok(BoardChange::Touched(board.into())));
    }

    fn delete(&self, board: &str) {
        self.0.lock().unwrap().scores.remove(board);
        self.notify(Ok(BoardChange::Touched(board.into())));
    }
}

fn snapshot(board: &str, score: i64) -> Snapshot {
    Snapshot::new(Board {
        id: board.into(),
        name: board.into(),
        rules: domain::Rules::default(),
        period: None,
        next_reset: None,
        ends_at_ms: None,
        resetting: false,
        players: vec![Player {
            id: "p".into(),
            name: "P".into(),
            score: Some(score),
            rank: Some(1),
        }],
    })
}

impl BoardSource for Db {
    type Changes = mpsc::UnboundedReceiver<Result<BoardChange, StoreError>>;

    fn prepare(&self) -> impl Future<Output = Result<(), StoreError>> {
        ready(Ok(()))
    }

    fn open_changes(&self, _slots: Range<u16>) -> Self::Changes {
        let (tx, rx) = mpsc::unbounded();
        let _ = tx.unbounded_send(Ok(BoardChange::Ready));
        self.0.lock().unwrap().feed = Some(tx);
        rx
    }

    fn board_ids(
        &self,
        _slots: Range<u16>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> {
        ready(Ok(self.0.lock().unwrap().scores.keys().cloned().collect()))
    }

    fn read_snapshot(
        &self,
        board: &BoardId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> {
        let state = self.0.lock().unwrap();
        let read = state
            .scores
            .get(board.as_str())
            .map(|&score| snapshot(board.as_str(), score))
            .map(|snapshot| match state.ended.contains(board.as_str()) {
                true => {
                    let mut view = snapshot.board().clone();
                    view.ends_at_ms = Some(0);
                    Snapshot::new(view)
                }
                false => snapshot,
            });
        let read_time = state.read_time;
        async move {
            sleep(read_time).await;
            Ok(read)
        }
    }
}

/// What the proxy was sent: (when, channel, content or "close"), for the
/// publishes that succeeded; `failures` makes the next ones fail.
#[derive(Clone, Default)]
struct Proxy(Arc<Mutex<ProxyState>>);

#[derive(Default)]
struct ProxyState {
    sent: Vec<(Instant, String, String)>,
    /// The (id, prev-id) of each item sent, in order.
    chain: Vec<(Option<String>, Option<String>)>,
    attempts: Vec<Instant>,
    failures: usize,
}

impl Proxy {
    fn sent(&self) -> Vec<(Instant, String, String)> {
        self.0.lock().unwrap().sent.clone()
    }

    /// The scores published on `board`'s channel, in order.
    fn scores(&self, board: &str) -> Vec<(Instant, i64)> {
        let channel = format!("lb-{board}");
        self.sent()
            .into_iter()
            .filter(|(_, c, _)| *c == channel)
            .filter_map(|(at, _, content)| {
                let data = content.lines().find_map(|l| l.strip_prefix("data: "))?;
                let board: Board = serde_json::from_str(data).ok()?;
                Some((at, board.players[0].score.unwrap_or_default()))
            })
            .collect()
    }
}

impl Publish for Proxy {
    type Error = String;

    fn publish(&self, items: &[Item]) -> impl Future<Output = Result<(), String>> {
        let mut state = self.0.lock().unwrap();
        let now = Instant::now();
        state.attempts.push(now);
        if state.failures > 0 {
            state.failures -= 1;
            return ready(Err("proxy unavailable".into()));
        }
        for item in items {
            let content = match item.http_stream() {
                Some(HttpStreamFormat::Content(c)) => c.clone(),
                Some(HttpStreamFormat::Close) => "close".into(),
                other => format!("{other:?}"),
            };
            state
                .sent
                .push((now, item.channel().as_str().to_owned(), content));
            let id = |i: Option<&grip::ItemId>| i.map(|i| i.as_str().to_owned());
            state.chain.push((id(item.id()), id(item.prev_id())));
        }
        ready(Ok(()))
    }
}

fn worker(db: &Db, proxy: &Proxy, metrics: &Metrics) -> Worker<Db, Proxy> {
    Worker::new(
        db.clone(),
        proxy.clone(),
        "lb-".into(),
        INTERVAL,
        Shards::new(1).unwrap(),
        dblistener::leases::hold_everything(Shards::new(1).unwrap()),
        metrics.clone(),
    )
}

/// Runs the worker over its feed while `script` plays, then stops it.
async fn run_with(db: &Db, proxy: &Proxy, metrics: &Metrics, script: impl Future<Output = ()>) {
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    let worker = worker(db, proxy, metrics);
    tokio::join!(
        worker.run_until_stopped(async {
            let _ = stopped.await;
        }),
        async {
            script.await;
            let _ = stop.send(());
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_gives_one_publish_per_interval_and_the_last_reads_the_final_board() {
    let (db, proxy, metrics) = (Db::with_board("b", 0), Proxy::default(), Metrics::new());
    let started = Instant::now();
    run_with(&db, &proxy, &metrics, async {
        sleep(10 * MS).await;
        // 100 changes, 2 ms apart: a 200 ms burst.
        for score in 1..=100 {
            db.set("b", score);
            sleep(2 * MS).await;
        }
        sleep(300 * MS).await;
    })
    .await;
    let scores = proxy.scores("b");
    // The snapshot at start, then at most one per interval of the burst.
    assert!(
        scores.len() >= 3 && scores.len() <= 2 + 200 / 50,
        "{scores:?}"
    );
    for pair in scores.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= INTERVAL, "{scores:?}");
    }
    assert_eq!(scores[0], (started, 0), "published at once after the start");
    assert_eq!(scores.last().unwrap().1, 100, "the final board goes out");
}

#[tokio::test(start_paused = true)]
async fn a_change_after_a_quiet_spell_is_published_at_once() {
    let (db, proxy, metrics) = (Db::with_board("b", 0), Proxy::default(), Metrics::new());
    let mut changed_at = None;
    run_with(&db, &proxy, &metrics, async {
        sleep(500 * MS).await;
        changed_at = Some(Instant::now());
        db.set("b", 7);
        sleep(100 * MS).await;
    })
    .await;
    assert_eq!(proxy.scores("b").last(), Some(&(changed_at.unwrap(), 7)));
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_snapshot_publishes_nothing() {
    let (db, proxy, metrics) = (Db::with_board("b", 3), Proxy::default(), Metrics::new());
    run_with(&db, &proxy, &metrics, async {
        for _ in 0..5 {
            sleep(100 * MS).await;
            db.touch("b");
        }
        sleep(100 * MS).await;
    })
    .await;
    assert_eq!(proxy.scores("b").len(), 1, "only the start-up publish");

    // The same, one step at a time.
    let mut worker = worker(&db, &proxy, &metrics);
    worker.mark_dirty("b");
    let first = worker.publish_due().await;
    assert_eq!(first.published, 1);
    sleep(INTERVAL).await;
    worker.mark_dirty("b");
    let report = worker.publish_due().await;
    assert_eq!(
        report,
        PublishReport {
            unchanged: 1,
            ..PublishReport::default()
        }
    );
}

/// Writes after a period's end move their players before the board is
/// switched: the board's snapshots wait for the reset, which publishes it.
#[tokio::test(start_paused = true)]
async fn a_board_past_its_period_end_is_held_until_it_resets() {
    let (db, proxy, metrics) = (Db::with_board("b", 3), Proxy::default(), Metrics::new());
    let mut worker = worker(&db, &proxy, &metrics);
    db.0.lock().unwrap().ended.insert("b".into());
    worker.mark_dirty("b");
    let report = worker.publish_due().await;
    assert_eq!(
        report,
        PublishReport {
            held: 1,
            ..PublishReport::default()
        }
    );
    assert!(proxy.scores("b").is_empty(), "nothing published");
    // Reset (the period moves on): published at the next turn.
    db.0.lock().unwrap().ended.clear();
    sleep(Duration::from_secs(2)).await;
    let report = worker.publish_due().await;
    assert_eq!(report.published, 1, "{report:?}");
    let scores: Vec<i64> = proxy.scores("b").iter().map(|(_, s)| *s).collect();
    assert_eq!(scores, [3]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_publish_is_retried_until_it_goes_through() {
    let (db, proxy, metrics) = (Db::with_board("b", 1), Proxy::default(), Metrics::new());
    proxy.0.lock().unwrap().failures = 2;
    run_with(&db, &proxy, &metrics, async {
        sleep(3 * RETRY_DELAY + 100 * MS).await;
    })
    .await;
    let attempts = proxy.0.lock().unwrap().attempts.clone();
    assert_eq!(
        attempts.len(),
        3,
        "two failures, then the publish: {attempts:?}"
    );
    for pair in attempts.windows(2) {
        assert!(pair[1] - pair[0] >= RETRY_DELAY, "{attempts:?}");
    }
    assert_eq!(proxy.scores("b").len(), 1);
    assert_eq!(metrics.publish_failures.get(), 2);
    assert_eq!(metrics.dirty_boards.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_board_that_changes_during_its_read_is_published_again() {
    let (db, proxy, metrics) = (Db::with_board("b", 0), Proxy::default(), Metrics::new());
    db.0.lock().unwrap().read_time = 30 * MS;
    run_with(&db, &proxy, &metrics, async {
        sleep(200 * MS).await;
        db.set("b", 1);
        // The worker is reading score 1 now; this change lands mid-read.
        sleep(10 * MS).await;
        db.set("b", 2);
        sleep(300 * MS).await;
    })
    .await;
    let scores: Vec<i64> = proxy.scores("b").into_iter().map(|(_, s)| s).collect();
    assert_eq!(scores, vec![0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_board_gets_its_event_and_its_streams_closed() {
    let (db, proxy, metrics) = (Db::with_board("b", 0), Proxy::default(), Metrics::new());
    run_with(&db, &proxy, &metrics, async {
        sleep(100 * MS).await;
        db.delete("b");
        sleep(100 * MS).await;
    })
    .await;
    let sent: Vec<String> = proxy.sent().into_iter().map(|(_, _, c)| c).collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[1], domain::deleted_event("b"));
    assert_eq!(sent[2], "close");
}

#[tokio::test(start_paused = true)]
async fn a_lost_feed_is_reopened_and_every_board_published_again() {
    let (db, proxy, metrics) = (Db::with_board("b", 0), Proxy::default(), Metrics::new());
    run_with(&db, &proxy, &metrics, async {
        sleep(100 * MS).await;
        db.notify(Err(StoreError::Unavailable("connection reset".into())));
        sleep(1000 * MS).await;
    })
    .await;
    assert_eq!(metrics.reconnects.get(), 1);
    assert_eq!(
        proxy.scores("b").len(),
        2,
        "republished after the reconnect, though unchanged"
    );
}

#[tokio::test(start_paused = true)]
async fn the_dirty_gauge_follows_the_dirty_set() {
    let (db, proxy, metrics) = (Db::with_board("a", 0), Proxy::default(), Metrics::new());
    db.0.lock().unwrap().scores.insert("b".into(), 0);
    let mut worker = worker(&db, &proxy, &metrics);
    worker.mark_dirty("a");
    worker.mark_dirty("b");
    worker.mark_dirty("a");
    assert_eq!(metrics.dirty_boards.get(), 2, "before any publish");
    worker.publish_due().await;
    assert_eq!(metrics.dirty_boards.get(), 0);
    // Within the interval a change waits, and is counted while it waits.
    worker.mark_dirty("a");
    assert_eq!(worker.publish_due().await, PublishReport::default());
    assert_eq!(metrics.dirty_boards.get(), 1);
    sleep(INTERVAL).await;
    worker.publish_due().await;
    assert_eq!(metrics.dirty_boards.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_publish_the_next_item_is_not_chained() {
    let (db, proxy, metrics) = (Db::with_board("b", 0), Proxy::default(), Metrics::new());
    let mut worker = worker(&db, &proxy, &metrics);
    worker.mark_dirty("b");
    worker.publish_due().await;
    // Score 1 fails (with two Pushpins, it may have reached one of them).
    sleep(INTERVAL).await;
    db.0.lock().unwrap().scores.insert("b".into(), 1);
    worker.mark_dirty("b");
    proxy.0.lock().unwrap().failures = 1;
    assert_eq!(worker.publish_due().await.failed, 1);
    sleep(RETRY_DELAY + INTERVAL).await;
    assert_eq!(worker.publish_due().await.published, 1);
    sleep(INTERVAL).await;
    db.0.lock().unwrap().scores.insert("b".into(), 2);
    worker.mark_dirty("b");
    assert_eq!(worker.publish_due().await.published, 1);
    let chain = proxy.0.lock().unwrap().chain.clone();
    assert_eq!(chain.len(), 3, "{chain:?}");
    assert_eq!(chain[0].1, None, "the first publish is not chained");
    assert_eq!(
        chain[1].1, None,
        "no prev-id fits every Pushpin after a failure: {chain:?}"
    );
    assert_eq!(chain[2].1, chain[1].0, "chained again after a success");
}
