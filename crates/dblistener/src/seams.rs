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

use domain::{BoardId, Snapshot};
use futures::Stream;
use grip::Item;
use store::{BoardChange, BoardChanges, Store, StoreError};

/// Where boards, and the news that they changed, come from.
pub trait BoardSource {
    /// The stream of changes: [`BoardChange::Ready`] once it is following
    /// every change, then a [`BoardChange::Touched`] per changed board. An
    /// error ends it.
    type Changes: Stream<Item = Result<BoardChange, StoreError>> + Unpin;

    /// Makes sure there is something to follow (the schema exists).
    fn prepare(&self) -> impl Future<Output = Result<(), StoreError>>;

    /// Opens the stream of changes.
    fn open_changes(&self) -> impl Future<Output = Result<Self::Changes, StoreError>>;

    /// Every board's id, to republish all of them after a (re)connect.
    fn board_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>>;

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

    fn prepare(&self) -> impl Future<Output = Result<(), StoreError>> {
        self.ensure_schema()
    }

    fn open_changes(&self) -> impl Future<Output = Result<BoardChanges, StoreError>> {
        self.board_changes()
    }

    fn board_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> {
        self.all_board_ids()
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
