//! The leaderboard's domain: validated ids and names, players, boards, and the
//! board snapshot that both the origin (in a hold response) and the worker (in
//! a publish) send to subscribers.
//!
//! Keeping the snapshot and its SSE frame here (encoded by [`grip::sse`]) is
//! what guarantees that a new subscriber's first event and every later
//! published event are byte-for-byte the same format, and that both processes
//! compute the same event id.

#![warn(missing_docs)]

mod ids;
mod reset;
mod rules;
pub mod shard;
mod snapshot;

pub use ids::{
    BoardId, Name, PlayerId, ScoreDelta, ValidationError, MAX_ID_LEN, MAX_NAME_LEN, MAX_SCORE,
};
pub use reset::{rfc3339, Reset};
pub use rules::{Operator, Order, Rules, MAX_TOP, TOP_N};
pub use shard::{slot_of, Shards};
pub use snapshot::{
    channel_name, channel_prefix, check_channel_prefix, deleted_event, integral_score,
    optional_score, reset_event, Board, BoardSummary, PeriodInfo, Player, Snapshot,
    SnapshotVersion, DEFAULT_CHANNEL_PREFIX,
};
