//! A RethinkDB client connection on tokio alone.
//!
//! The store builds its query terms with `reql-terms` and sends them
//! here, serialised as JSON. One [`Connection`] carries many queries at once:
//! each query has a token of its own, a writer task sends the frames of every
//! query as they come, and a reader task hands each answer to the query that
//! waits for it. A [`Cursor`] asks for the next batch of a stream (CONTINUE)
//! when it is read, and a cursor dropped before its query finished sends STOP,
//! so a query that times out or is cancelled ends on the server and the
//! connection goes on serving the others. Changefeeds are cursors like any
//! other.
//!
//! The handshake is RethinkDB's V1_0 with SCRAM-SHA-256 ([`scram`] holds the
//! primitives, which the dev server shares), over TCP or over TLS with rustls
//! ([`TlsSettings`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), reql_client::Error> {
//! use reql_client::{Connection, ConnectOptions};
//! let conn = Connection::connect(&ConnectOptions::new("localhost", 28015)).await?;
//! // r.expr(1).add(2) in its wire form, as `reql-terms` builds it.
//! let term = serde_json::json!([24, [1, 2]]);
//! let values = conn.run(&term, &serde_json::json!({})).await?;
//! assert_eq!(values, [serde_json::json!(3)]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod conn;
mod error;
mod handshake;
pub mod scram;
mod tls;

pub use conn::{ConnectOptions, Connection, Cursor};
pub use error::{codes, Error};
pub use tls::{certificates_from_pem, private_key_from_pem, provider, PemFile, TlsSettings};
