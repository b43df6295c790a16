//! The leaderboard's HTTP origin.
//!
//! It answers JSON reads and writes, and answers a board read that prefers
//! `text/event-stream` with GRIP instructions so that Pushpin, not this
//! process, holds the stream open. It keeps no connection and no state of its
//! own, so any number of copies can run behind one Pushpin.

#![warn(missing_docs)]

pub mod auth;
pub mod body;
pub mod config;
pub mod cursor;
pub mod error;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod page;
pub mod query;
pub mod routes;
pub mod seed;
pub mod startup;
pub mod state;
pub mod stream;

pub use config::Settings;
pub use startup::Application;
