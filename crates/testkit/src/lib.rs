//! The test harness: it starts the real processes of the stack on loopback
//! ports and stops them when their handles drop.
//!
//! - [`Database`]: the `reql-dev-server` binary, or a real RethinkDB when
//!   `RETHINKDB_URL` is set (then each stack uses a database of its own and
//!   drops it afterwards).
//! - [`Pushpin`]: Debian's `pushpin`, with its own rundir and ports, and its
//!   own zurl (the packaged configuration points at a system zurl that does
//!   not run).
//! - [`Stack`]: database + origin (`leaderboard-web`) + Pushpin + worker
//!   (`dblistener`), with request helpers and SSE [`Subscriber`]s.
//!
//! Every process writes its output to a log file; when a test fails (the
//! thread is panicking as the handle drops) the tail of each log is printed.

#![warn(missing_docs)]

mod bins;
mod cluster;
mod database;
mod netproxy;
mod ports;
mod process;
mod pushpin;
mod session;
mod stack;
mod subscriber;
mod tls;

pub use bins::{binary, Binary};
pub use cluster::{ClusterNode, RethinkCluster};
pub use database::{rethinkdb_binary, Database, ServerKind};
pub use netproxy::{NetProxy, Scope};
pub use ports::free_port;
pub use process::ManagedProcess;
pub use pushpin::{Pushpin, PushpinOptions};
pub use session::{DbSession, Feed};
pub use stack::{NamedWorker, Stack, StackOptions};
pub use subscriber::{Event, ResilientSubscriber, Subscriber};
pub use tls::{CertFiles, TestCa};

/// A scratch directory removed on drop, with a short path: Pushpin's unix
/// sockets live under it and socket paths are limited to 107 bytes.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A new directory under the system's temporary directory, named after
    /// `tag` and this process.
    pub fn new(tag: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "lbt-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    /// Where the directory is.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `(id, score)` of each player of a board's JSON (a snapshot, a stream
/// event's data, a page), in the order given.
pub fn scores(board: &serde_json::Value) -> Vec<(String, i64)> {
    board["players"]
        .as_array()
        .expect("a players array")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("an id").to_owned(),
                p["score"].as_i64().expect("a score"),
            )
        })
        .collect()
}
