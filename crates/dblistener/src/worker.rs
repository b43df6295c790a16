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
//!
//! The worker publishes only the shards whose leases it holds (see
//! [`crate::leases`]): each held shard has changefeeds of its own, opened
//! when the lease is taken and closed when it is lost or handed back. Every
//! snapshot is read under a tenure (the lease's epoch) and is published only
//! if that tenure still holds, with time to spare, when the publish starts.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use domain::{Shards, Snapshot, SnapshotVersion};
use futures::stream::{AbortHandle, Abortable, LocalBoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use grip::{ChannelName, Item, ItemId, Publisher};
use prometheus::IntGauge;
use service::Backoff;
use store::{BoardChange, Store, StoreError};
use tokio::time::Instant;

use crate::leases::{Held, LeaseView};
use crate::metrics::Metrics;
use crate::ranks::{RankEvent, RankEvents};
use crate::seams::{BoardSource, Publish};

/// How many snapshot reads run at once when many boards are due together,
/// e.g. after a reconnect.
const READ_CONCURRENCY: usize = 16;
/// Most items in one publish request.
const ITEMS_PER_REQUEST: usize = 200;
/// Delay before a board whose read or publish failed is tried again.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);
/// A publish starts only if the shard's tenure has at least this much left.
pub const PUBLISH_GUARD: Duration = Duration::from_millis(50);
/// A broken shard feed is reopened after 100–200 ms, then after delays
/// doubling up to 2–4 s: a cluster elects a new primary in about two
/// seconds, and the board is republished once its feed is back, so a
/// longer wait would only keep subscribers behind.
const FEED_RETRY_FIRST: Duration = Duration::from_millis(200);
/// How often the worker looks for boards whose reset is due.
pub const RESET_POLL: Duration = Duration::from_millis(250);
/// How long after a period's end its scores are archived: a write that read
/// the board before the switch, on a database node whose clock is a little
/// behind, still lands in the finished period within this margin.
pub const RESET_SETTLE_MS: i64 = 500;
const FEED_RETRY_MAX: Duration = Duration::from_secs(4);

/// One shard's changes, tagged with the shard and the tenure (epoch) it
/// was opened under.
type Tagged = LocalBoxStream<'static, (u16, u64, Result<BoardChange, StoreError>)>;

/// A held shard's open changefeed.
#[derive(Debug)]
struct ShardFeed {
    epoch: u64,
    abort: AbortHandle,
    ready: bool,
}

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
    /// Boards whose period has ended, held until their reset is out.
    pub held: usize,
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

    /// Takes every board `drop` picks off the set.
    fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.boards.retain(|b, _| keep(b));
        self.gauge.set(self.boards.len() as i64);
    }
}

/// The publish loop over a [`BoardSource`] (the store) and a [`Publish`]
/// target (the GRIP publisher).
pub struct Worker<S = Store, P = Publisher> {
    source: S,
    publisher: P,
    prefix: String,
    interval: Duration,
    shards: Shards,
    leases: LeaseView,
    feeds: HashMap<u16, ShardFeed>,
    /// When a shard whose feed broke may be reopened.
    reopen_at: HashMap<u16, Instant>,
    /// Each broken shard feed's back-off, until it opens again. Per shard:
    /// when a database node dies, every shard's feed breaks at the same
    /// moment, and one shared back-off would push the later shards' first
    /// reopening many seconds out.
    feed_backoffs: HashMap<u16, Backoff>,
    /// The back-off of setting up the database before anything else.
    backoff: Backoff,
    all_ready: bool,
    /// Whether the lease view has been set (the keeper's first round
    /// done): until then, holding nothing means nothing yet.
    leases_known: bool,
    boards: HashMap<String, BoardState>,
    dirty: DirtySet,
    metrics: Metrics,
    /// Where players' moves go, for the rank digests.
    ranks: Option<RankEvents>,
}

impl<S: BoardSource, P: Publish> Worker<S, P> {
    /// A worker publishing the boards of the shards `leases` holds.
    pub fn new(
        source: S,
        publisher: P,
        prefix: String,
        interval: Duration,
        shards: Shards,
        leases: LeaseView,
        metrics: Metrics,
    ) -> Self {
        metrics.feed_ready.set(0);
        Self {
            source,
            publisher,
            prefix,
            interval,
            shards,
            leases,
            feeds: HashMap::new(),
            reopen_at: HashMap::new(),
            feed_backoffs: HashMap::new(),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            all_ready: false,
            leases_known: false,
            boards: HashMap::new(),
            dirty: DirtySet::new(metrics.dirty_boards.clone()),
            metrics,
            ranks: None,
        }
    }

    /// Follows the changes of the shards it holds until `shutdown`
    /// completes, opening and closing shard feeds as leases come and go,
    /// and reopening a broken feed with back-off. A publish under way when
    /// `shutdown` completes is finished first.
    pub async fn run_until_stopped(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // The worker may start before the origin (or alone): it creates
        // the schema too, idempotently, so its feeds have tables to follow.
        loop {
            let prepared = tokio::select! {
                _ = &mut shutdown => return,
                prepared = self.source.prepare() => prepared,
            };
            match prepared {
                Ok(()) => break,
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    log::warn!("cannot set up the database ({e}); trying again in {delay:?}");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.backoff.reset();
        let mut lease_changes = self.leases.clone();
        // A view that starts out holding shards (a fixed one) is known.
        self.leases_known = !lease_changes.borrow_and_update().is_empty();
        // A fixed view (one nobody updates) keeps its last value.
        let mut leases_watched = true;
        let mut merged: SelectAll<Tagged> = SelectAll::new();
        let mut reset_tick = tokio::time::interval(RESET_POLL);
        reset_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.sync_feeds(&mut merged);
            let due = self.next_due();
            let reopen = self.reopen_at.values().min().copied();
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return,
                changed = lease_changes.changed(), if leases_watched => {
                    leases_watched = changed.is_ok();
                    self.leases_known |= leases_watched;
                }
                _ = sleep_until(due), if due.is_some() => {
                    let report = self.publish_due().await;
                    if report != PublishReport::default() {
                        log::debug!("{report:?}");
                    }
                }
                _ = sleep_until(reopen), if reopen.is_some() => {}
                _ = reset_tick.tick(), if self.leases_known => self.run_resets().await,
                item = merged.next(), if !merged.is_empty() => {
                    let mut item = item;
                    // Take everything already queued in one go, so a burst
                    // becomes one dirty set rather than many wake-ups.
                    while let Some((shard, epoch, change)) = item {
                        self.on_change(shard, epoch, change).await;
                        item = match merged.next().now_or_never() {
                            Some(next) => next,
                            None => break,
                        };
                    }
                }
            }
        }
    }

    /// Opens a feed for every held shard that has none (or whose tenure
    /// changed), and closes the feeds of shards no longer held.
    fn sync_feeds(&mut self, merged: &mut SelectAll<Tagged>) {
        let held: Held = self.leases.borrow().clone();
        let stale: Vec<u16> = self
            .feeds
            .iter()
            .filter(|(shard, feed)| held.get(shard).map(|t| t.epoch) != Some(feed.epoch))
            .map(|(shard, _)| *shard)
            .collect();
        for shard in stale {
            if let Some(feed) = self.feeds.remove(&shard) {
                feed.abort.abort();
            }
            self.forget_shard(shard);
            log::info!("stopped following shard {shard}");
        }
        self.reopen_at.retain(|shard, _| held.contains_key(shard));
        self.feed_backoffs
            .retain(|shard, _| held.contains_key(shard));
        let now = Instant::now();
        for (&shard, tenure) in &held {
            if self.feeds.contains_key(&shard)
                || self.reopen_at.get(&shard).is_some_and(|t| *t > now)
            {
                continue;
            }
            self.reopen_at.remove(&shard);
            let (abort, registration) = AbortHandle::new_pair();
            let epoch = tenure.epoch;
            let changes = Abortable::new(
                self.source.open_changes(self.shards.slots(shard)),
                registration,
            )
            .map(move |change| (shard, epoch, change));
            merged.push(changes.boxed_local());
            self.feeds.insert(
                shard,
                ShardFeed {
                    epoch,
                    abort,
                    ready: false,
                },
            );
        }
        self.update_ready();
    }

    /// Drops what is known of a shard's boards: they are no longer this
    /// worker's to publish, or a new tenure republishes them from scratch.
    fn forget_shard(&mut self, shard: u16) {
        let shards = self.shards;
        self.dirty.retain(|b| shards.of_board(b) != shard);
        self.boards.retain(|b, _| shards.of_board(b) != shard);
    }

    fn update_ready(&mut self) {
        let held = self.leases.borrow().len();
        let ready =
            self.leases_known && self.feeds.len() == held && self.feeds.values().all(|f| f.ready);
        self.metrics.feed_ready.set(i64::from(ready));
        if ready && !self.all_ready {
            log::info!(
                "feeds ready: following {} of {} shards",
                held,
                self.shards.count()
            );
        }
        self.all_ready = ready;
    }

    async fn on_change(&mut self, shard: u16, epoch: u64, change: Result<BoardChange, StoreError>) {
        if self.feeds.get(&shard).map(|f| f.epoch) != Some(epoch) {
            // Left over from a feed closed since.
            return;
        }
        match change {
            Ok(BoardChange::Touched(board)) => {
                self.metrics.changes.inc();
                self.mark_dirty(board);
            }
            Ok(BoardChange::Moved { board, old, new }) => {
                self.pass_on(RankEvent::Moved {
                    board,
                    old,
                    new,
                    at: Instant::now(),
                });
            }
            Ok(BoardChange::Board { id, exists }) => {
                self.pass_on(RankEvent::Board { id, exists });
            }
            Ok(BoardChange::Ready) => match self.mark_shard_dirty(shard).await {
                Ok(()) => {
                    if let Some(feed) = self.feeds.get_mut(&shard) {
                        feed.ready = true;
                    }
                    self.feed_backoffs.remove(&shard);
                    self.update_ready();
                }
                Err(e) => self.feed_broke(shard, e),
            },
            Err(e) => self.feed_broke(shard, e),
        }
    }

    /// Closes a broken shard feed; it is reopened after a back-off delay.
    fn feed_broke(&mut self, shard: u16, e: StoreError) {
        if let Some(feed) = self.feeds.remove(&shard) {
            feed.abort.abort();
        }
        self.metrics.reconnects.inc();
        let delay = self
            .feed_backoffs
            .entry(shard)
            .or_insert_with(|| Backoff::new(FEED_RETRY_FIRST, FEED_RETRY_MAX))
            .next_delay();
        log::warn!("changefeed of shard {shard} lost ({e}); reopening in {delay:?}");
        self.reopen_at.insert(shard, Instant::now() + delay);
        self.update_ready();
    }

    /// Performs the resets that are due on boards of the shards this worker
    /// holds. Each step is idempotent and the switch is a conditional
    /// update, so a reset is done once even if a holder dies half-way: the
    /// board's `archiving` mark keeps it due until the next holder finishes
    /// it. Subscribers get `event: reset` with the archived period, then the
    /// new snapshot; the board is not published in between.
    async fn run_resets(&mut self) {
        let due = match self.source.due_resets().await {
            Ok(due) => due,
            Err(e) => {
                log::debug!("cannot read due resets: {e}");
                return;
            }
        };
        for board in due.boards {
            let shard = self.shards.of_board(&board.id);
            let Some(epoch) = self.leases.borrow().get(&shard).map(|t| t.epoch) else {
                continue;
            };
            if let Err(e) = self.reset_board(&board, due.now, shard, epoch).await {
                log::warn!("reset of board {:?} not finished: {e}", board.id);
            }
        }
    }

    async fn reset_board(
        &mut self,
        board: &store::CreatedBoard,
        now: i64,
        shard: u16,
        epoch: u64,
    ) -> Result<(), StoreError> {
        let Some(reset) = board.rules.reset.clone() else {
            return Ok(());
        };
        let finishing = match (board.archiving, board.period) {
            (Some(archiving), _) => archiving,
            (None, Some(period)) if now >= period.end_ms() => {
                let no_next = || StoreError::Query("the schedule has no next reset".into());
                // The next period ends at the next reset after now (it is
                // stretched when the switch is late), never before the end
                // stored with the board: writes up to that time counted in
                // it.
                let next_end = reset
                    .next_after(period.end_ms().max(now))
                    .ok_or_else(no_next)?
                    .max(period.next_end.map_or(i64::MIN, |e| e as i64));
                let then = reset.next_after(next_end).ok_or_else(no_next)?;
                if !self
                    .source
                    .switch_period(&board.id, period.n, period.end_ms(), next_end, then)
                    .await?
                {
                    return Ok(());
                }
                log::info!("board {:?}: period {} ended", board.id, period.n);
                period
            }
            _ => return Ok(()),
        };
        // Hold the board's snapshots until the reset event is out.
        self.boards.entry(board.id.clone()).or_default().not_before =
            Some(Instant::now() + Duration::from_secs(3600));
        if now < finishing.end_ms() + RESET_SETTLE_MS {
            return Ok(());
        }
        let archive = self.source.archive_period(board, finishing).await?;
        if self.leases.borrow().get(&shard).map(|t| t.epoch) != Some(epoch) {
            return Ok(());
        }
        // The reset event and the new snapshot go out in one publish, on
        // the board's `prev-id` chain (Pushpin delivers nothing else to a
        // reliable stream): previous → reset → snapshot.
        let id =
            domain::BoardId::parse(&board.id).map_err(|e| StoreError::Decode(e.to_string()))?;
        let snapshot = self.source.read_snapshot(&id).await?;
        let previous = self.boards.get(&board.id).and_then(|s| s.published.clone());
        if let (Some(channel), Some(snapshot)) = (self.channel(&board.id), snapshot) {
            let reset_id = ItemId::parse(format!("reset-{}-{}", finishing.n, snapshot.version()))
                .map_err(|e| StoreError::Decode(e.to_string()))?;
            let mut reset_item = Item::stream(channel.clone(), domain::reset_event(&archive))
                .with_id(reset_id.clone());
            if let Some(prev) = previous.and_then(|p| ItemId::parse(p.as_str()).ok()) {
                reset_item = reset_item.with_prev_id(prev);
            }
            let version = ItemId::parse(snapshot.version().as_str())
                .map_err(|e| StoreError::Decode(e.to_string()))?;
            let update = Item::stream(channel, snapshot.sse_event())
                .with_id(version)
                .with_prev_id(reset_id);
            let Some(tenure) = self.leases.borrow().get(&shard).copied() else {
                return Ok(());
            };
            if tenure.epoch != epoch {
                return Ok(());
            }
            match within(
                tenure.valid_until,
                self.publisher.publish(&[reset_item, update]),
            )
            .await
            {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.forget_published(&board.id);
                    return Err(StoreError::Query(format!("publishing the reset: {e}")));
                }
                None => {
                    self.forget_published(&board.id);
                    return Err(StoreError::Query(
                        "publishing the reset: abandoned, the shard's lease ran out".into(),
                    ));
                }
            }
            self.boards.entry(board.id.clone()).or_default().published =
                Some(snapshot.version().clone());
        }
        self.source.finish_reset(&board.id, finishing.n).await?;
        log::info!(
            "board {:?}: period {} archived and reset",
            board.id,
            finishing.n
        );
        if let Some(state) = self.boards.get_mut(&board.id) {
            state.not_before = None;
        }
        self.mark_dirty(board.id.clone());
        Ok(())
    }

    /// After a feed (re)opens nothing is known about what subscribers hold:
    /// any publish may have been missed while the feed was down, or made by
    /// the shard's previous holder. So every board of the shard is
    /// published again, without a `prev-id`.
    async fn mark_shard_dirty(&mut self, shard: u16) -> Result<(), StoreError> {
        let ids = self.source.board_ids(self.shards.slots(shard)).await?;
        log::info!("shard {shard} open; republishing {} boards", ids.len());
        self.pass_on(RankEvent::ShardOpened {
            shard,
            boards: ids.clone(),
        });
        let now = Instant::now();
        let shards = self.shards;
        self.boards.retain(|b, _| shards.of_board(b) != shard);
        for id in ids {
            self.dirty.mark(id, now);
        }
        Ok(())
    }

    /// Hands a change to the rank keeper, if there is one.
    fn pass_on(&mut self, event: RankEvent) {
        if let Some(ranks) = &self.ranks {
            if ranks.send(event).is_err() {
                self.ranks = None;
            }
        }
    }

    /// Passes every player's move and every board's creation and deletion
    /// on to a rank keeper ([`crate::ranks::RankKeeper`]).
    pub fn with_ranks(mut self, ranks: RankEvents) -> Self {
        self.ranks = Some(ranks);
        self
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
        // Each read is made under the tenure its shard is held by now; a
        // board of a shard not held is not this worker's to publish.
        let held: Held = self.leases.borrow().clone();
        let mut read_under: HashMap<String, u64> = HashMap::with_capacity(due.len());
        let due: Vec<String> = due
            .into_iter()
            .filter(|board| match held.get(&self.shards.of_board(board)) {
                Some(tenure) => {
                    read_under.insert(board.clone(), tenure.epoch);
                    true
                }
                None => false,
            })
            .collect();
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
                Ok(Some(snapshot)) if period_ending(&snapshot) => {
                    // Writes after the end move their players into the next
                    // period before the board is switched: a snapshot now
                    // would show the old period's number over scores of
                    // both. The reset publishes the board after its event.
                    let seen = first_seen.get(&board).copied().unwrap_or(now);
                    self.retry_later(board, seen);
                    report.held += 1;
                }
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

        // The tenure check, just before publishing: a board read under a
        // tenure that has ended since is dropped (its shard's next holder
        // publishes it); one whose tenure is about to run out waits for the
        // renewal.
        let held: Held = self.leases.borrow().clone();
        let now = Instant::now();
        let mut deadline: Option<Instant> = None;
        let mut kept = Vec::with_capacity(batch.len());
        for entry in batch {
            let board = &entry.0;
            let tenure = held.get(&self.shards.of_board(board));
            match tenure {
                Some(t) if Some(&t.epoch) == read_under.get(board) => {
                    if t.valid_until <= now + PUBLISH_GUARD {
                        report.failed += 1;
                        let seen = first_seen.get(board).copied().unwrap_or(now);
                        self.retry_later(board.clone(), seen);
                    } else {
                        deadline = Some(deadline.map_or(t.valid_until, |d| d.min(t.valid_until)));
                        kept.push(entry);
                    }
                }
                _ => {
                    self.boards.remove(board);
                }
            }
        }
        let batch = kept;
        let deadline = deadline.unwrap_or(now);

        for chunk in batch.chunks(ITEMS_PER_REQUEST) {
            let items: Vec<Item> = chunk
                .iter()
                .flat_map(|(_, items, _)| items.iter().cloned())
                .collect();
            // A publish still under way when the tenure ends is abandoned.
            let published = match within(deadline, self.publisher.publish(&items)).await {
                Some(result) => result.map_err(|e| e.to_string()),
                None => Err("abandoned: the shard's lease ran out".to_owned()),
            };
            match published {
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
                        self.forget_published(board);
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

    /// After a publish that failed, subscribers may hold either side of it:
    /// with several Pushpins, some got the items and the others did not,
    /// and a publish cut short may have reached one anyway. No `prev-id`
    /// fits both, and an item whose `prev-id` a Pushpin does not hold is
    /// not delivered (Pushpin may or may not recover it through the next
    /// link), so the board's next item goes out without one.
    fn forget_published(&mut self, board: &str) {
        if let Some(state) = self.boards.get_mut(board) {
            state.published = None;
        }
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

/// How long before a period's end a board's snapshots are held until the
/// reset is out: room for the worker's clock to run behind the database's.
const PERIOD_END_HOLD_MS: i64 = 250;

/// Whether `snapshot` is of a board whose period has ended, or is about to,
/// by this process's clock, or whose reset is under way (switched, its
/// players not all moved yet).
fn period_ending(snapshot: &Snapshot) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let board = snapshot.board();
    board.resetting
        || board
            .ends_at_ms
            .is_some_and(|end| now >= end - PERIOD_END_HOLD_MS)
}

/// `work`'s output, or `None` once `deadline` has passed. The clock is read
/// before every poll of `work`, so a process paused past the deadline
/// (SIGSTOP, a stalled VM) resumes by dropping the work, not by doing it:
/// `tokio::time::timeout_at` polls the work first, and a publish resumed
/// that way could send its request after the shard's next holder began.
pub(crate) async fn within<F: Future>(deadline: Instant, work: F) -> Option<F::Output> {
    let work = std::pin::pin!(work);
    let sleep = std::pin::pin!(tokio::time::sleep_until(deadline));
    let (mut work, mut sleep) = (work, sleep);
    std::future::poll_fn(move |cx| {
        if Instant::now() >= deadline {
            return std::task::Poll::Ready(None);
        }
        if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(out));
        }
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process paused past its deadline (the clock jumps while nothing
    /// runs) drops work that is ready, where `timeout_at` would do it.
    #[tokio::test(start_paused = true)]
    async fn work_past_its_deadline_is_dropped_even_when_ready() {
        let deadline = Instant::now() + Duration::from_secs(1);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(within(deadline, async { 5 }).await, None);
        assert_eq!(
            tokio::time::timeout_at(deadline, async { 5 }).await.ok(),
            Some(5),
            "what the worker used to do"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn work_within_its_deadline_runs_and_slow_work_is_cut_off() {
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(within(deadline, async { 5 }).await, Some(5));
        let slow = tokio::time::sleep(Duration::from_secs(2));
        assert_eq!(within(deadline, slow).await, None);
        assert!(Instant::now() >= deadline);
    }
}
