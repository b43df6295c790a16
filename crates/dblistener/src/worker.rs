//! The publish loop: changefeed events in, coalesced snapshots out.
//!
//! Each board carries the version it was last published at and the earliest
//! moment it may be published again. A change marks the board dirty; a dirty
//! board is published as soon as its moment has come, which gives
//! - the first change after a quiet spell: published at once;
//! - a burst: at most one publish per board per interval, and the last one
//!   reads the board after the burst, so the final state always goes out;
//! - a change that leaves the top of the board as it was (a score below the
//!   top 5): no publish at all, because the version is unchanged.
//!
//! The snapshot is read *after* the board is taken off the dirty set, so a
//! change that lands during the read marks it dirty again and is not lost.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use domain::{Snapshot, SnapshotVersion};
use futures::{FutureExt, StreamExt};
use grip::{ChannelName, Item, ItemId, Publisher};
use prometheus::IntGauge;
use service::Backoff;
use store::{BoardChange, Store, StoreError};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::seams::{BoardSource, Publish};

/// How many snapshot reads run at once when many boards are due together,
/// e.g. after a reconnect.
const READ_CONCURRENCY: usize = 16;
/// Most items in one publish request.
const ITEMS_PER_REQUEST: usize = 200;
/// Delay before a board whose read or publish failed is tried again.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct BoardState {
    /// The version subscribers were last sent; the next item's `prev-id`.
    published: Option<SnapshotVersion>,
    /// The board may not be published before this.
    not_before: Option<Instant>,
}

/// What one [`Worker::publish_due`] step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// Boards whose new snapshot was published.
    pub published: usize,
    /// Boards published as deleted (their stream closed).
    pub deleted: usize,
    /// Boards that were due but whose snapshot had not changed.
    pub unchanged: usize,
    /// Boards that failed to read or publish and will be retried.
    pub failed: usize,
}

/// Why [`Worker::consume`] returned.
#[derive(Debug)]
enum FeedEnd {
    Stopped,
    Broken(StoreError),
}

/// The boards waiting to be published, with when their first unpublished
/// change was seen. The `dirty_boards` gauge follows every change to it.
#[derive(Debug)]
struct DirtySet {
    boards: HashMap<String, Instant>,
    gauge: IntGauge,
}

impl DirtySet {
    fn new(gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            boards: HashMap::new(),
            gauge,
        }
    }

    /// Marks `board` dirty; an earlier first-seen moment is kept.
    fn mark(&mut self, board: String, seen: Instant) {
        self.boards.entry(board).or_insert(seen);
        self.gauge.set(self.boards.len() as i64);
    }

    /// Takes `board` off the set, with when it was first seen dirty.
    fn take(&mut self, board: &str) -> Option<Instant> {
        let seen = self.boards.remove(board);
        self.gauge.set(self.boards.len() as i64);
        seen
    }

    fn boards(&self) -> impl Iterator<Item = &String> {
        self.boards.keys()
    }
}

/// The publish loop over a [`BoardSource`] (the store) and a [`Publish`]
/// target (the GRIP publisher).
pub struct Worker<S = Store, P = Publisher> {
    source: S,
    publisher: P,
    prefix: String,
    interval: Duration,
    boards: HashMap<String, BoardState>,
    dirty: DirtySet,
    metrics: Metrics,
}

impl<S: BoardSource, P: Publish> Worker<S, P> {
    pub fn new(
        source: S,
        publisher: P,
        prefix: String,
        interval: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            source,
            publisher,
            prefix,
            interval,
            boards: HashMap::new(),
            dirty: DirtySet::new(metrics.dirty_boards.clone()),
            metrics,
        }
    }

    /// Follows the changes until `shutdown` completes, reconnecting with
    /// back-off whenever the database goes away.
    pub async fn run_until_stopped(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            // The worker may start before the origin (or alone): it creates
            // the schema too, idempotently, so its feeds have tables to follow.
            let feed = tokio::select! {
                _ = &mut shutdown => return,
                feed = async {
                    self.source.prepare().await?;
                    self.source.open_changes().await
                } => feed,
            };
            let end = match feed {
                Ok(feed) => {
                    log::info!("changefeeds open");
                    self.consume(feed, &mut shutdown, &mut backoff).await
                }
                Err(e) => FeedEnd::Broken(e),
            };
            self.metrics.feed_ready.set(0);
            match end {
                FeedEnd::Stopped => return,
                FeedEnd::Broken(e) => {
                    self.metrics.reconnects.inc();
                    let delay = backoff.next_delay();
                    log::warn!("changefeed lost ({e}); reconnecting in {delay:?}");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Reads one feed until it breaks or `shutdown` completes, publishing as
    /// boards fall due. A publish under way when `shutdown` completes is
    /// finished first.
    async fn consume(
        &mut self,
        mut feed: S::Changes,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        backoff: &mut Backoff,
    ) -> FeedEnd {
        loop {
            let due = self.next_due();
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return FeedEnd::Stopped,
                _ = sleep_until(due), if due.is_some() => {
                    let report = self.publish_due().await;
                    if report != PublishReport::default() {
                        log::debug!("{report:?}");
                    }
                }
                change = feed.next() => {
                    let mut change = change;
                    // Take everything already queued in one go, so a burst
                    // becomes one dirty set rather than many wake-ups.
                    loop {
                        match change {
                            Some(Ok(BoardChange::Touched(board))) => {
                                self.metrics.changes.inc();
                                self.mark_dirty(board);
                            }
                            Some(Ok(BoardChange::Ready)) => {
                                if let Err(e) = self.mark_all_dirty().await {
                                    return FeedEnd::Broken(e);
                                }
                                self.metrics.feed_ready.set(1);
                                backoff.reset();
                            }
                            Some(Err(e)) => return FeedEnd::Broken(e),
                            None => return FeedEnd::Broken(StoreError::Unavailable("changefeed closed".into())),
                        }
                        match feed.next().now_or_never() {
                            Some(next) => change = next,
                            None => break,
                        }
                    }
                }
            }
        }
    }

    /// After a (re)connect nothing is known about what subscribers hold: any
    /// publish may have been missed while the feed was down. So every board
    /// is published again, without a `prev-id`.
    async fn mark_all_dirty(&mut self) -> Result<(), StoreError> {
        let ids = self.source.board_ids().await?;
        log::info!("feeds ready; republishing {} boards", ids.len());
        self.boards.clear();
        let now = Instant::now();
        for id in ids {
            self.dirty.mark(id, now);
        }
        Ok(())
    }

    /// Marks a board as changed: it is published when its moment comes.
    pub fn mark_dirty(&mut self, board: impl Into<String>) {
        self.dirty.mark(board.into(), Instant::now());
    }

    /// The earliest moment a dirty board may be published.
    pub fn next_due(&self) -> Option<Instant> {
        let now = Instant::now();
        self.dirty
            .boards()
            .map(|b| self.boards.get(b).and_then(|s| s.not_before).unwrap_or(now))
            .min()
    }

    /// Publishes every dirty board whose moment has come: the step that
    /// [`Worker::run_until_stopped`] takes whenever a board falls due.
    pub async fn publish_due(&mut self) -> PublishReport {
        let now = Instant::now();
        let due: Vec<String> = self
            .dirty
            .boards()
            .filter(|b| {
                self.boards
                    .get(*b)
                    .and_then(|s| s.not_before)
                    .is_none_or(|t| t <= now)
            })
            .cloned()
            .collect();
        // Off the dirty set *before* the read: a change that lands during
        // the read marks the board dirty again.
        let mut first_seen = HashMap::with_capacity(due.len());
        for board in &due {
            if let Some(seen) = self.dirty.take(board) {
                first_seen.insert(board.clone(), seen);
            }
        }
        let mut report = PublishReport::default();
        let source = &self.source;
        let reads: Vec<(String, Result<Option<Snapshot>, StoreError>)> = futures::stream::iter(due)
            .map(|board| async move {
                let result = match domain::BoardId::parse(&board) {
                    Ok(id) => source.read_snapshot(&id).await,
                    // A board id this API would refuse (written by hand)
                    // cannot be subscribed to; nothing to publish.
                    Err(_) => Ok(None),
                };
                (board, result)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;

        let mut batch: Vec<(String, Vec<Item>, Option<SnapshotVersion>)> = Vec::new();
        for (board, result) in reads {
            match result {
                Ok(Some(snapshot)) => {
                    let previous = self.boards.get(&board).and_then(|s| s.published.clone());
                    if previous.as_ref() == Some(snapshot.version()) {
                        report.unchanged += 1;
                        continue;
                    }
                    match self.update_item(&board, &snapshot, previous.as_ref()) {
                        Some(item) => {
                            batch.push((board, vec![item], Some(snapshot.version().clone())))
                        }
                        None => report.unchanged += 1,
                    }
                }
                Ok(None) => {
                    if let Some(items) = self.deleted_items(&board) {
                        batch.push((board, items, None));
                    }
                }
                Err(e) => {
                    log::warn!("cannot read board {board:?}: {e}");
                    report.failed += 1;
                    self.metrics.publish_failures.inc();
                    let seen = first_seen.get(&board).copied().unwrap_or(now);
                    self.retry_later(board, seen);
                }
            }
        }

        for chunk in batch.chunks(ITEMS_PER_REQUEST) {
            let items: Vec<Item> = chunk
                .iter()
                .flat_map(|(_, items, _)| items.iter().cloned())
                .collect();
            match self.publisher.publish(&items).await {
                Ok(()) => {
                    let sent_at = Instant::now();
                    for (board, _, version) in chunk {
                        if let Some(seen) = first_seen.get(board) {
                            self.metrics.observe_lag(sent_at.duration_since(*seen));
                        }
                        match version {
                            Some(version) => {
                                self.metrics.publishes.inc();
                                let state = self.boards.entry(board.clone()).or_default();
                                state.published = Some(version.clone());
                                state.not_before = Some(sent_at + self.interval);
                                report.published += 1;
                            }
                            None => {
                                self.boards.remove(board);
                                report.deleted += 1;
                            }
                        }
                    }
                }
                Err(e) => {
                    log::warn!("publish of {} items failed: {e}", items.len());
                    for (board, _, _) in chunk {
                        report.failed += 1;
                        self.metrics.publish_failures.inc();
                        self.retry_later(
                            board.clone(),
                            first_seen.get(board).copied().unwrap_or(now),
                        );
                    }
                }
            }
        }
        report
    }

    /// Puts a board back on the dirty set, due after the retry delay, and
    /// keeps when its change was first seen so the lag stays truthful.
    fn retry_later(&mut self, board: String, first_seen: Instant) {
        self.boards.entry(board.clone()).or_default().not_before =
            Some(Instant::now() + RETRY_DELAY.max(self.interval));
        self.dirty.mark(board, first_seen);
    }

    fn channel(&self, board: &str) -> Option<ChannelName> {
        ChannelName::parse(domain::channel_name(&self.prefix, board)).ok()
    }

    /// The publish item for a board's new snapshot, chained to the previous
    /// one by `prev-id` when this process published that one.
    fn update_item(
        &self,
        board: &str,
        snapshot: &Snapshot,
        previous: Option<&SnapshotVersion>,
    ) -> Option<Item> {
        let channel = self.channel(board)?;
        let id = ItemId::parse(snapshot.version().as_str()).ok()?;
        let mut item = Item::stream(channel, snapshot.sse_event()).with_id(id);
        if let Some(prev) = previous.and_then(|p| ItemId::parse(p.as_str()).ok()) {
            item = item.with_prev_id(prev);
        }
        Some(item)
    }

    /// A deleted board's subscribers get a `deleted` event, then their
    /// streams are closed.
    fn deleted_items(&self, board: &str) -> Option<Vec<Item>> {
        let channel = self.channel(board)?;
        let event = domain::deleted_event(board);
        Some(vec![
            Item::stream(channel.clone(), event),
            Item::close(channel),
        ])
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => futures::future::pending().await,
    }
}
