//! The leaderboard worker (`dblistener`).
//!
//! It follows the players and boards changefeeds on connections of its own
//! and, for every board a change touches, publishes the board's fresh top-5
//! snapshot to the channel `<prefix><board id>` through GRIP, as an SSE
//! `update` event. Bursts are coalesced to at most one publish per board per
//! interval, unchanged snapshots are not published, and after every
//! (re)connect all boards are published again.
//!
//! Run as many as you like: boards are split into shards, and each shard is
//! published by the one worker holding its lease ([`leases`]).

#![warn(missing_docs)]

pub mod config;
pub mod leases;
pub mod metrics;
pub mod publog;
pub mod ranks;
pub mod seams;
pub mod status;
pub mod worker;

pub use config::Settings;
pub use leases::{LeaseKeeper, LeaseView};
pub use metrics::Metrics;
pub use ranks::RankKeeper;
pub use seams::{BoardSource, Publish};
pub use worker::{PublishReport, Worker};
