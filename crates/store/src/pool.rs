use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use unreql::cmd::connect::Options;
use unreql::{r, Command, Session};

use crate::error::is_connection_error;
use crate::{DatabaseUrl, StoreError};

/// Sizes and time limits of the connection pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections open at most at once; also how many queries run at once.
    pub max_connections: usize,
    /// Time allowed to open one connection, handshake included.
    pub connect_timeout: Duration,
    /// Time allowed for one query, from checkout to the last batch.
    pub query_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(10),
        }
    }
}

/// A pool that lends each connection to one query at a time.
///
/// Idle connections are tagged with the pool's generation. A connection-level
/// failure bumps the generation, so every idle connection opened before it is
/// dropped rather than tried: when the database restarts, the first failure
/// clears the lot instead of each stale connection failing one request.
pub(crate) struct Pool {
    url: DatabaseUrl,
    options: PoolOptions,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(u64, Session)>>,
    generation: AtomicU64,
}

impl Pool {
    pub(crate) fn new(url: DatabaseUrl, options: PoolOptions) -> Self {
        let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
        Self {
            url,
            options,
            permits,
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Opens a fresh connection outside the pool, e.g. for a changefeed.
    pub(crate) async fn connect(&self) -> Result<Session, StoreError> {
        connect(&self.url, self.options.connect_timeout).await
    }

    /// Runs `query` on a pooled connection and collects every result.
    ///
    /// The query runs in a task of its own so that it always completes (or
    /// times out and discards its connection) even if the caller's future is
    /// dropped, e.g. because an HTTP client went away.
    pub(crate) async fn run(self: &Arc<Self>, query: Command) -> Result<Vec<Value>, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("pool closed".into()))?;
        let pool = Arc::clone(self);
        let task = tokio::spawn(async move { pool.run_with(permit, query).await });
        task.await
            .map_err(|e| StoreError::Query(format!("query task failed: {e}")))?
    }

    async fn run_with(
        &self,
        _permit: OwnedSemaphorePermit,
        query: Command,
    ) -> Result<Vec<Value>, StoreError> {
        let (generation, session) = self.checkout().await?;
        let outcome = tokio::time::timeout(
            self.options.query_timeout,
            query.run::<_, Value>(&session).try_collect::<Vec<Value>>(),
        )
        .await;
        match outcome {
            Ok(Ok(values)) => {
                self.checkin(generation, session);
                Ok(values)
            }
            Ok(Err(err)) => {
                if is_connection_error(&err) {
                    self.invalidate(generation);
                } else {
                    self.checkin(generation, session);
                }
                Err(err.into())
            }
            Err(_) => {
                self.invalidate(generation);
                Err(StoreError::Unavailable(format!(
                    "query timed out after {:?}",
                    self.options.query_timeout
                )))
            }
        }
    }

    async fn checkout(&self) -> Result<(u64, Session), StoreError> {
        let current = self.generation.load(Ordering::Acquire);
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            while let Some((generation, session)) = idle.pop() {
                if generation == current && !session.is_broken() {
                    return Ok((generation, session));
                }
            }
        }
        let session = self.connect().await?;
        Ok((current, session))
    }

    fn checkin(&self, generation: u64, session: Session) {
        if generation == self.generation.load(Ordering::Acquire) && !session.is_broken() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.push((generation, session));
        }
    }

    fn invalidate(&self, generation: u64) {
        // Only the first failure of a generation clears the idle list.
        if self
            .generation
            .compare_exchange(
                generation,
                generation + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

pub(crate) async fn connect(url: &DatabaseUrl, timeout: Duration) -> Result<Session, StoreError> {
    let options = Options::new()
        .host(url.host.clone())
        .port(url.port)
        .db(url.db.clone())
        .user(url.user.clone())
        .password(url.password().to_owned());
    match tokio::time::timeout(timeout, r.connect(options)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(err)) => Err(StoreError::Unavailable(format!(
            "cannot connect to {}:{}: {err}",
            url.host, url.port
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "connecting to {}:{} timed out after {timeout:?}",
            url.host, url.port
        ))),
    }
}
