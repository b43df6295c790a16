//! What every handler shares. The origin keeps no per-client state: every
//! answer is computed from the database.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

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
    /// once, `RANK_READ_SHARE` of the time while others wait).
    rank_reads: RankReads,
}

/// How rank reads are admitted: at most `max` queries at once and, while
/// other rank reads wait, a place is held after its read for as long as it
/// keeps the database's time for rank reads down to `share` of the wall
/// clock. A read alone never waits.
struct RankReads {
    places: Arc<Semaphore>,
    max: usize,
    /// The share of its places' time that rank reads may use while others
    /// wait, in (0, 1].
    share: f64,
    /// Rank reads waiting for a place.
    waiting: Arc<AtomicUsize>,
}

/// Places taken by one rank read. Dropped when the read is done: the
/// places come free at once if no other rank read waits, else after the
/// rest that the share asks for.
pub struct RankPermit {
    permit: Option<OwnedSemaphorePermit>,
    since: Instant,
    share: f64,
    waiting: Arc<AtomicUsize>,
}

/// The longest a place is held after its read: a read that took long (a
/// slow database) does not shut the others out for as long again.
const MOST_REST: Duration = Duration::from_millis(250);

impl RankPermit {
    /// How long the places stay taken after a read that took `took`.
    fn rest(share: f64, took: Duration) -> Duration {
        if share >= 1.0 {
            return Duration::ZERO;
        }
        took.mul_f64(1.0 / share - 1.0).min(MOST_REST)
    }
}

impl Drop for RankPermit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let rest = Self::rest(self.share, self.since.elapsed());
        if rest.is_zero() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(rest).await;
                drop(permit);
            });
        }
    }
}

/// Counts a rank read as waiting while it lives.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(count))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a rank read waits to be admitted before it is refused.
const RANK_READ_WAIT: Duration = Duration::from_secs(2);

impl AppState {
    /// Shared state admitting at most `rank_reads` rank queries at once
    /// (at least one), and, while rank reads queue, keeping their places
    /// busy `rank_share_percent` of the time.
    pub fn new(
        store: Store,
        streams: StreamSettings,
        metrics: Metrics,
        rank_reads: usize,
        rank_share_percent: u8,
    ) -> Self {
        Self {
            store,
            streams,
            metrics,
            schema_ready: AtomicBool::new(false),
            rank_reads: RankReads {
                places: Arc::new(Semaphore::new(rank_reads.max(1))),
                max: rank_reads.max(1),
                share: f64::from(rank_share_percent.clamp(1, 100)) / 100.0,
                waiting: Arc::default(),
            },
        }
    }

    /// Waits for a place among the rank queries under way; 503 `busy` if
    /// none frees up within two seconds. Writes never wait here.
    pub async fn rank_read(&self) -> Result<RankPermit, ApiError> {
        self.rank_reads(1).await.map(|(permit, _)| permit)
    }

    /// Waits for up to `wanted` places at once, for a read that sends that
    /// many rank queries side by side (friends); the places it got, never
    /// more than `RANK_READS`, are how many queries it may have in flight.
    pub async fn rank_reads(&self, wanted: usize) -> Result<(RankPermit, usize), ApiError> {
        let reads = &self.rank_reads;
        let n = wanted.clamp(1, reads.max);
        let places = Arc::clone(&reads.places);
        let admitted = match places.try_acquire_many_owned(n as u32) {
            Ok(permit) => Ok(permit),
            Err(_) => {
                let _waiting = Waiting::new(&reads.waiting);
                let places = Arc::clone(&reads.places);
                match tokio::time::timeout(RANK_READ_WAIT, places.acquire_many_owned(n as u32))
                    .await
                {
                    Ok(Ok(permit)) => Ok(permit),
                    _ => Err(ApiError::Busy),
                }
            }
        };
        admitted.map(|permit| {
            let permit = RankPermit {
                permit: Some(permit),
                since: Instant::now(),
                share: reads.share,
                waiting: Arc::clone(&reads.waiting),
            };
            (permit, n)
        })
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
        Self::offline_sharing(rank_reads, 100)
    }

    /// [`AppState::offline`], with rank reads kept to `share_percent` of
    /// the time while others wait.
    pub(crate) fn offline_sharing(rank_reads: usize, share_percent: u8) -> Self {
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
            share_percent,
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

    #[tokio::test(start_paused = true)]
    async fn while_reads_wait_a_place_rests_to_keep_the_share() {
        let state = AppState::offline_sharing(1, 25);
        // Alone, a read's place comes free as soon as it is done.
        let alone = state.rank_read().await.expect("admitted");
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(alone);
        let started = Instant::now();
        let next = state.rank_read().await.expect("admitted at once");
        assert_eq!(started.elapsed(), Duration::ZERO);

        // With a read waiting, a read of 10 ms keeps its place 30 ms more:
        // rank reads use a quarter of the time.
        let waiter = tokio::spawn({
            let state = std::sync::Arc::new(state);
            async move {
                let started = Instant::now();
                let _permit = state.rank_read().await.expect("admitted");
                started.elapsed()
            }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(next);
        let waited = waiter.await.expect("the waiter");
        assert_eq!(waited, Duration::from_millis(40));
    }

    #[test]
    fn the_rest_keeps_the_share_and_is_bounded() {
        let ms = Duration::from_millis;
        assert_eq!(RankPermit::rest(1.0, ms(10)), Duration::ZERO);
        assert_eq!(RankPermit::rest(0.5, ms(10)), ms(10));
        assert_eq!(RankPermit::rest(0.25, ms(10)), ms(30));
        assert_eq!(RankPermit::rest(0.25, ms(1000)), MOST_REST);
    }
}
