//! The worker's two seams: where boards come from ([`BoardSource`], the
//! database) and where their snapshots go ([`Publish`], the GRIP proxy).
//!
//! The worker is written against these traits so that its coalescing can be
//! tested step by step on a paused clock, with a board source and a
//! publisher that a test controls. The source speaks of boards in general
//! (open the changes, list the ids, read one snapshot) so that a worker
//! owning only some boards can be built on the same seam.

use std::fmt::Display;
use std::future::Future;
use std::ops::Range;

use domain::{BoardId, Snapshot};
use futures::Stream;
use grip::Item;
use serde_json::Value;
use store::{BoardChange, BoardChanges, CreatedBoard, DueResets, Store, StoreError, StoredPeriod};

/// Where boards, and the news that they changed, come from.
pub trait BoardSource {
    /// The stream of changes of one shard's boards: [`BoardChange::Ready`]
    /// once it is following every change, then a [`BoardChange::Touched`]
    /// per changed board. An error ends it.
    type Changes: Stream<Item = Result<BoardChange, StoreError>> + Unpin + 'static;

    /// Makes sure there is something to follow: the schema exists and every
    /// document carries its slot.
    fn prepare(&self) -> impl Future<Output = Result<(), StoreError>>;

    /// The changes of the boards in `slots`. It returns at once: the stream
    /// connects by itself, and a failure to connect is its first error.
    fn open_changes(&self, slots: Range<u16>) -> Self::Changes;

    /// The ids of the boards in `slots`, to republish all of them when
    /// their feed is (re)opened.
    fn board_ids(&self, slots: Range<u16>)
        -> impl Future<Output = Result<Vec<String>, StoreError>>;

    /// A board's current snapshot; `None` when it does not exist.
    fn read_snapshot(
        &self,
        board: &BoardId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>>;

    /// The boards whose reset is due or unfinished (none, for a source
    /// without resets).
    fn due_resets(&self) -> impl Future<Output = Result<DueResets, StoreError>> {
        std::future::ready(Ok(DueResets {
            now: 0,
            boards: Vec::new(),
        }))
    }

    /// Switches a board from period `n` to the next (ending at `next_end`,
    /// the one after it at `then`); whether this call did it.
    fn switch_period(
        &self,
        _board: &str,
        _n: u64,
        _end: i64,
        _next_end: i64,
        _then: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> {
        std::future::ready(Ok(false))
    }

    /// Moves the board's players out of the finished `period` and archives
    /// it (both idempotent); returns the archive.
    fn archive_period(
        &self,
        _board: &CreatedBoard,
        _period: StoredPeriod,
    ) -> impl Future<Output = Result<Value, StoreError>> {
        std::future::ready(Err(StoreError::Query("no resets here".into())))
    }

    /// Marks the reset of period `n` finished.
    fn finish_reset(&self, _board: &str, _n: u64) -> impl Future<Output = Result<(), StoreError>> {
        std::future::ready(Ok(()))
    }
}

/// Where snapshots go.
pub trait Publish {
    /// Why a publish failed.
    type Error: Display;

    /// Publishes `items` (all or none: a failed publish is retried whole).
    fn publish(&self, items: &[Item]) -> impl Future<Output = Result<(), Self::Error>>;
}

impl BoardSource for Store {
    type Changes = BoardChanges;

    async fn prepare(&self) -> Result<(), StoreError> {
        self.ensure_schema().await?;
        let report = self.migrate_slots(false).await?;
        if !report.skipped {
            log::info!(
                "slot migration: {} boards and {} players given their slot",
                report.boards,
                report.players
            );
        }
        Ok(())
    }

    fn open_changes(&self, slots: Range<u16>) -> BoardChanges {
        self.slot_changes(slots)
    }

    fn board_ids(
        &self,
        slots: Range<u16>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> {
        self.board_ids_in_slots(slots)
    }

    fn read_snapshot(
        &self,
        board: &BoardId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> {
        self.snapshot(board)
    }

    fn due_resets(&self) -> impl Future<Output = Result<DueResets, StoreError>> {
        Store::due_resets(self)
    }

    fn switch_period(
        &self,
        board: &str,
        n: u64,
        end: i64,
        next_end: i64,
        then: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> {
        Store::switch_period(self, board, n, end, next_end, then)
    }

    async fn archive_period(
        &self,
        board: &CreatedBoard,
        period: StoredPeriod,
    ) -> Result<Value, StoreError> {
        let incr = board.rules.operator == domain::Operator::Incr;
        self.move_players(&board.id, period.n, incr).await?;
        Store::archive_period(self, board, period).await
    }

    fn finish_reset(&self, board: &str, n: u64) -> impl Future<Output = Result<(), StoreError>> {
        Store::finish_reset(self, board, n)
    }
}

impl Publish for grip::Publisher {
    type Error = grip::PublishError;

    fn publish(&self, items: &[Item]) -> impl Future<Output = Result<(), Self::Error>> {
        grip::Publisher::publish(self, items)
    }
}
