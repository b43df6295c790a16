//! What the workspace's long-running processes (`leaderboard-web`,
//! `dblistener`, `reql-dev-server`) share, so that each is written once:
//!
//! - [`config`]: reading a settings struct from the environment with envy,
//!   range and duration checks, and the one-line [`ConfigError`] that names
//!   the variable at fault;
//! - [`Backoff`]: exponential back-off with jitter, for reconnecting to a
//!   database that went away;
//! - [`shutdown_signal`]: the stop signal (SIGINT or SIGTERM) that ends a
//!   process gracefully.

#![warn(missing_docs)]

mod backoff;
pub mod config;
mod shutdown;

pub use backoff::Backoff;
pub use config::ConfigError;
pub use shutdown::shutdown_signal;
