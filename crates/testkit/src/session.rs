use anyhow::Context;
use std::collections::VecDeque;

use reql_client::{ConnectOptions, Connection, Cursor};
use reql_terms::{r, Term};
use serde_json::{json, Value};

/// One connection straight to the database, with a default database: for
/// the harness's own checks and the benchmark's direct queries (the origin
/// and the worker go through the store). It runs on `reql-client`, the
/// connection the store uses.
pub struct DbSession {
    conn: Connection,
    global_optargs: Value,
}

impl DbSession {
    /// Connects to `host:port` as `user`; queries name tables of `db` when
    /// given.
    pub async fn connect(
        host: &str,
        port: u16,
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(host, port);
        options.user = user.to_owned();
        options.password = password.to_owned();
        let conn = Connection::connect(&options)
            .await
            .with_context(|| format!("connect to the database at {host}:{port}"))?;
        let global_optargs = match db {
            Some(db) => json!({ "db": r.db(db) }),
            None => json!({}),
        };
        Ok(Self {
            conn,
            global_optargs,
        })
    }

    /// Runs `term` to its end: every value of a sequence, or the one value
    /// of an atom (an array atom gives its elements).
    pub async fn run(&self, term: &Term) -> Result<Vec<Value>, reql_client::Error> {
        self.conn.run(term, &self.global_optargs).await
    }

    /// Runs `term`, whose answer is one value (a write's summary, a count,
    /// an object).
    pub async fn one(&self, term: &Term) -> anyhow::Result<Value> {
        let mut values = self.run(term).await?;
        anyhow::ensure!(values.len() == 1, "one value expected, got {values:?}");
        Ok(values.remove(0))
    }

    /// Starts `term`, a changefeed or any stream, and returns its values
    /// one at a time.
    pub fn feed(&self, term: &Term) -> Result<Feed, reql_client::Error> {
        Ok(Feed {
            cursor: self.conn.query(term, &self.global_optargs)?,
            ready: VecDeque::new(),
        })
    }
}

/// The values of a stream, one at a time, from its cursor's batches. Dropped,
/// it stops the query on the server.
pub struct Feed {
    cursor: Cursor,
    ready: VecDeque<Value>,
}

impl Feed {
    /// The next value, `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Result<Value, reql_client::Error>> {
        while self.ready.is_empty() {
            match self.cursor.next_batch().await {
                Ok(Some(batch)) => self.ready.extend(batch),
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        self.ready.pop_front().map(Ok)
    }
}
