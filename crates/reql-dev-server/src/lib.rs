//! A RethinkDB-compatible server for development and tests.
//!
//! It speaks the RethinkDB 2.4 client driver protocol (V1_0 with SCRAM-SHA-256,
//! JSON queries, streams and changefeeds) well enough for the project's store code,
//! its tests and the local stack, where no real RethinkDB can be installed. It is
//! a tool, not a database product: production uses a real RethinkDB cluster.
//!
//! Data is kept in memory, or with `Config::directory` in a write-ahead log that
//! makes every acknowledged write survive a crash.
//!
//! ```no_run
//! # async fn demo() -> Result<(), reql_dev_server::ServerError> {
//! let server = reql_dev_server::Server::bind(reql_dev_server::Config {
//!     port: 0,
//!     ..Default::default()
//! })
//! .await?;
//! let port = server.local_addr().port();
//! # let _ = port;
//! server.run_until_stopped(std::future::pending()).await
//! # }
//! ```

#![warn(missing_docs)]

mod datum;
mod error;
mod eval;
mod feed;
mod protocol;
mod server;
mod storage;
mod term;
mod tls;
mod wire;

pub use error::ServerError;
pub use server::{Config, Server};
pub use tls::{server_config as tls_config, DriverTls};

/// The line printed to stdout once the port is bound; scripts read the port from it.
pub fn listening_line(port: u16) -> String {
    format!("Listening for client driver connections on port {port}")
}
