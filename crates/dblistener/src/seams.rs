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
use store::{BoardChange, BoardChanges, Store, StoreError};

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
}

impl Publish for grip::Publisher {
    type Error = grip::PublishError;

    fn publish(&self, items: &[Item]) -> impl Future<Output = Result<(), Self::Error>> {
        grip::Publisher::publish(self, items)
    }
}
