//! The evaluation context: the store, the server's identity and per-query settings.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{ReqlError, Result};
use crate::storage::{Durability, Store};

/// What every query can reach: the store and the server's identity.
pub struct Shared {
    pub store: Arc<Store>,
    pub server_id: Uuid,
    pub server_name: String,
    /// How long a table creation stays invisible to other creations of the
    /// same name (see [`crate::storage::Store::table_create`]).
    pub table_create_window: std::time::Duration,
}

/// Per-query settings from the global optional arguments, and the log position
/// the query's writes must reach before it is acknowledged.
pub struct QueryCtx {
    /// Absent for index functions, which must not reach the store.
    pub shared: Option<Arc<Shared>>,
    pub default_db: String,
    pub array_limit: usize,
    pub durability: Option<Durability>,
    durable_seq: AtomicU64,
    /// Tables this query created, made visible once it has run (see
    /// [`crate::storage::Store::table_create`]).
    created_tables: parking_lot::Mutex<Vec<Arc<crate::storage::Table>>>,
    /// `r.now()`: fixed when the query arrives, so every `r.now()` in one
    /// query is the same time and an atomic write may use it.
    pub now: f64,
}

/// The current time in seconds since the epoch, at microsecond precision as
/// RethinkDB 2.4.4's `r.now()` has it (times a client sends are rounded to
/// milliseconds; the server's own clock is not).
fn time_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_micros() as f64) / 1_000_000.0)
        .unwrap_or(0.0)
}

pub const DEFAULT_ARRAY_LIMIT: usize = 100_000;

/// Deepest nesting a value built by a query may have; deeper values would make
/// printing and comparing them recurse too far.
pub const MAX_DEPTH: usize = 512;

impl QueryCtx {
    pub fn new(shared: Arc<Shared>, default_db: String) -> QueryCtx {
        QueryCtx {
            shared: Some(shared),
            default_db,
            array_limit: DEFAULT_ARRAY_LIMIT,
            durability: None,
            durable_seq: AtomicU64::new(0),
            created_tables: parking_lot::Mutex::new(Vec::new()),
            now: time_now(),
        }
    }

    /// A context with no store, for evaluating index functions.
    pub fn detached() -> QueryCtx {
        QueryCtx {
            shared: None,
            default_db: String::new(),
            array_limit: DEFAULT_ARRAY_LIMIT,
            durability: None,
            durable_seq: AtomicU64::new(0),
            created_tables: parking_lot::Mutex::new(Vec::new()),
            now: time_now(),
        }
    }

    pub fn store(&self) -> Result<&Arc<Store>> {
        self.shared
            .as_ref()
            .map(|s| &s.store)
            .ok_or_else(|| ReqlError::logic("Index functions cannot read databases or tables."))
    }

    pub fn server_name(&self) -> String {
        self.shared
            .as_ref()
            .map(|s| s.server_name.clone())
            .unwrap_or_default()
    }

    pub fn note_durable(&self, seq: u64) {
        self.durable_seq.fetch_max(seq, AtomicOrdering::SeqCst);
    }

    /// Records a table whose creation this query has started.
    pub fn note_created_table(&self, table: Arc<crate::storage::Table>) {
        self.created_tables.lock().push(table);
    }

    /// Finishes the table creations of this query: after `latency` (the
    /// window in which a real server lets a second creation of the same name
    /// through), the tables become visible.
    pub async fn commit_created_tables(&self, latency: std::time::Duration) -> Result<()> {
        let tables = std::mem::take(&mut *self.created_tables.lock());
        if tables.is_empty() {
            return Ok(());
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let store = self.store()?;
        for table in tables {
            let seq = store.commit_table(table)?;
            self.note_durable(seq);
        }
        Ok(())
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.load(AtomicOrdering::SeqCst)
    }
}
