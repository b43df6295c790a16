//! What every handler shares. The origin keeps no per-client state: every
//! answer is computed from the database.

use std::sync::atomic::{AtomicBool, Ordering};

use store::Store;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::stream::StreamSettings;

pub struct AppState {
    pub store: Store,
    pub streams: StreamSettings,
    pub metrics: Metrics,
    /// Set once the schema is known to exist.
    schema_ready: AtomicBool,
}

impl AppState {
    pub fn new(store: Store, streams: StreamSettings, metrics: Metrics) -> Self {
        Self {
            store,
            streams,
            metrics,
            schema_ready: AtomicBool::new(false),
        }
    }

    /// Records that the schema exists (the start-up task created it).
    pub fn mark_schema_ready(&self) {
        self.schema_ready.store(true, Ordering::Release);
    }

    /// Fails with 503 until the schema is known to exist, so that the first
    /// requests after a cold start get a clear "not ready" instead of a
    /// missing-table error.
    pub async fn ready(&self) -> Result<(), ApiError> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.store.ensure_schema().await {
            Ok(()) => {
                self.mark_schema_ready();
                Ok(())
            }
            Err(e) => Err(ApiError::Unavailable(e)),
        }
    }
}
