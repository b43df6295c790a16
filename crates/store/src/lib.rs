//! RethinkDB access for the leaderboard.
//!
//! - [`DatabaseUrl`] parses `rethinkdb://[user[:password]@]host[:port]/dbname`
//!   and its TLS form `rethinkdbs://...?ca=FILE&cert=FILE&key=FILE`.
//! - [`Store`] owns a few connections (`reql-client`) that each carry many
//!   queries at once, and runs every query the origin and the worker need,
//!   each one index-backed.
//! - [`ensure_schema`](Store::ensure_schema) creates the database, tables and
//!   indexes, idempotently and safely when several processes start at once.
//! - [`Store::board_changes`] opens the players and boards changefeeds on
//!   the same connections and yields the ids of the boards each change
//!   touches.
//!
//! Query terms are built with `reql-terms` and sent, as JSON, through
//! `reql-client`. Each query runs in its caller's task; one that times out,
//! or whose caller goes away (an HTTP client that hung up), is stopped on
//! the server (STOP), and its connection goes on serving the others. A
//! write so stopped changes its one document whole or not at all, and a
//! retry with the same idempotency key counts once either way.

#![warn(missing_docs)]

mod config;
mod error;
mod feed;
mod leases;
mod pool;
mod queries;
mod rank_reads;
pub mod ranks;
pub mod reql;
mod schema;

pub use config::{DatabaseUrl, DatabaseUrlError, Endpoint};
pub use error::StoreError;
pub use feed::{BoardChange, BoardChanges};
pub use leases::{LeaseRow, LeaseTable, MigrationReport};

pub use pool::PoolOptions;
pub use queries::{
    Around, CreatedBoard, DueResets, Lookup, NewBoard, NewPlayer, Page, Ranked, Store,
    StoredPeriod, Submitted, PARALLEL_RANKS,
};
pub use schema::SchemaOptions;
// The query terms the store sends, for the benchmark to measure the database
// with exactly what the origin asks of it.
pub use reql::{player_key, score_update, top_players_query, PageStart};

/// Table of boards: `{id, name, slot, rules, period?, archiving?}`.
pub const BOARDS: &str = "boards";
/// Table of players: `{id, board, player, name, score, slot, period?, prev?}`.
pub const PLAYERS: &str = "players";
/// Table of finished periods of boards that reset:
/// `{id: "<board>:<n>", board, number, start, end, players, top}`.
pub const PERIODS: &str = "periods";
/// Compound index `[board, number]` on periods.
pub const PERIOD_INDEX: &str = "board_number";
/// Compound index `[board, prev.n, prev.score]` on players: the scores of a
/// board's finished period, in rank order, for its archive.
pub const BOARD_PREV_INDEX: &str = "board_prev";
/// Index on boards that reset: when the period in force ends, or 0 while a
/// reset is being finished; boards are due when it is in the past.
pub const RESET_DUE_INDEX: &str = "reset_due";
/// Table of the workers' shard leases and heartbeats; see
/// [`Store::take_lease`] and the worker's `leases` module.
pub const LEASES: &str = "leases";
/// Simple index on the `slot` of boards and players (see
/// [`domain::shard`]), which a worker's changefeeds follow.
pub const SLOT_INDEX: &str = "slot";
/// Compound index `[board, score]` on players, read by the top-N query.
pub const BOARD_SCORE_INDEX: &str = "board_score";
/// Simple index on players' `board`, for listing and deleting a board's players.
pub const BOARD_INDEX: &str = "board";
/// Compound index `[board, score, id]` on players: the rank order with its
/// tie-break in the key, so that a range between two players, ties
/// included, is one bounded index range (see [`ranks`]).
pub const BOARD_RANK_INDEX: &str = "board_rank";
/// Table of the boards' rank digests (see [`ranks`]).
pub const RANKS: &str = "ranks";
/// Simple index on the `board` of rank digest documents.
pub const RANKS_BOARD_INDEX: &str = "board";
