//! What every handler shares. The origin keeps no per-client state: every
//! answer is computed from the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use store::Store;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::stream::StreamSettings;

/// What every handler shares: the database, stream settings and metrics.
pub struct AppState {
    /// The database, over the process's pool of connections.
    pub store: Store,
    /// How board streams are held and signed.
    pub streams: StreamSettings,
    /// The counters served at `/metrics`.
    pub metrics: Metrics,
    /// Set once the schema is known to exist.
    schema_ready: AtomicBool,
    /// Admits the database queries that compute ranks (`RANK_READS` at
    /// once).
    rank_reads: Semaphore,
    rank_reads_max: usize,
}

/// How long a rank read waits to be admitted before it is refused.
const RANK_READ_WAIT: Duration = Duration::from_secs(2);

impl AppState {
    /// Shared state admitting at most `rank_reads` rank queries at once
    /// (at least one).
    pub fn new(store: Store, streams: StreamSettings, metrics: Metrics, rank_reads: usize) -> Self {
        Self {
            store,
            streams,
            metrics,
            schema_ready: AtomicBool::new(false),
            rank_reads: Semaphore::new(rank_reads.max(1)),
            rank_reads_max: rank_reads.max(1),
        }
    }

    /// Waits for a place among the rank queries under way; 503 `busy` if
    /// none frees up within two seconds. Writes never wait here.
    pub async fn rank_read(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        self.rank_reads(1).await.map(|(permit, _)| permit)
    }

    /// Waits for up to `wanted` places at once, for a read that sends that
    /// many rank queries side by side (friends); the places it got, never
    /// more than `RANK_READS`, are how many queries it may have in flight.
    pub async fn rank_reads(
        &self,
        wanted: usize,
    ) -> Result<(SemaphorePermit<'_>, usize), ApiError> {
        let n = wanted.clamp(1, self.rank_reads_max);
        match tokio::time::timeout(RANK_READ_WAIT, self.rank_reads.acquire_many(n as u32)).await {
            Ok(Ok(permit)) => Ok((permit, n)),
            _ => Err(ApiError::Busy),
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

#[cfg(test)]
impl AppState {
    /// The state of an origin whose database cannot be reached: every
    /// route still answers, with 503 where it needs the database.
    pub(crate) fn offline(rank_reads: usize) -> Self {
        let url = store::DatabaseUrl::parse("rethinkdb://127.0.0.1:1/test").expect("a valid URL");
        Self::new(
            Store::new(url, store::PoolOptions::default()),
            StreamSettings {
                prefix: "lb-".into(),
                keep_alive: Duration::from_secs(20),
                recovery_timeout: Duration::from_secs(120),
                signature: None,
            },
            Metrics::new(),
            rank_reads,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rank_reads: usize) -> AppState {
        AppState::offline(rank_reads)
    }

    #[tokio::test]
    async fn rank_reads_past_the_limit_wait_then_are_refused() {
        let state = state(2);
        let a = state.rank_read().await.expect("first admitted");
        let _b = state.rank_read().await.expect("second admitted");
        // A third waits for a place: admitted as soon as one frees up...
        let waiting = state.rank_read();
        drop(a);
        let third = waiting.await.expect("admitted once the first is done");
        // ...and refused with `busy` when none does within two seconds.
        let started = std::time::Instant::now();
        assert!(matches!(state.rank_read().await, Err(ApiError::Busy)));
        assert!(started.elapsed() >= RANK_READ_WAIT);
        drop(third);
        assert!(state.rank_read().await.is_ok());
    }

    #[tokio::test]
    async fn a_read_of_many_ranks_takes_at_most_every_place() {
        let state = state(3);
        let (all, n) = state.rank_reads(8).await.expect("admitted");
        assert_eq!(n, 3);
        // Every place is taken: a single rank read waits, then is refused.
        assert!(matches!(state.rank_read().await, Err(ApiError::Busy)));
        drop(all);
        let (_one, n) = state.rank_reads(1).await.expect("admitted");
        assert_eq!(n, 1);
        let (_two, n) = state.rank_reads(2).await.expect("the other two");
        assert_eq!(n, 2);
    }
}
