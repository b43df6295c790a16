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
/// clears the lot instead of each stale connection failing one request. A
/// query that times out discards only its own connection.
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
                    // A reset or closed connection is what a database restart
                    // looks like, and then every idle connection is as dead as
                    // this one: dropping them now saves each its own failed
                    // request.
                    self.invalidate(generation);
                } else {
                    self.checkin(generation, session);
                }
                Err(err.into())
            }
            Err(_) => {
                // The query may still be running on the server, so this
                // connection still owes it an answer and cannot be lent again;
                // it is dropped. A slow query says nothing about the other
                // connections, which stay in the pool.
                drop(session);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A dev server behind a proxy that counts the connections made through it.
    struct CountedServer {
        port: u16,
        accepted: Arc<AtomicUsize>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl CountedServer {
        async fn start() -> Self {
            let server = reql_dev_server::Server::bind(reql_dev_server::Config {
                port: 0,
                ..Default::default()
            })
            .await
            .expect("bind the dev server");
            let backend = server.local_addr();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(server.run_until_stopped(async {
                let _ = stopped.await;
            }));

            let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = proxy.local_addr().expect("proxy address").port();
            let accepted = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((mut client, _)) = proxy.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            });
            Self {
                port,
                accepted,
                stop: Some(stop),
            }
        }

        fn connections_opened(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    impl Drop for CountedServer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    fn idle_count(pool: &Pool) -> usize {
        pool.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    #[tokio::test]
    async fn a_timed_out_query_discards_only_its_own_connection() {
        let server = CountedServer::start().await;
        let url = DatabaseUrl::parse(&format!("rethinkdb://127.0.0.1:{}/test", server.port))
            .expect("url");
        let pool = Arc::new(Pool::new(
            url,
            PoolOptions {
                max_connections: 4,
                connect_timeout: Duration::from_secs(5),
                query_timeout: Duration::from_millis(300),
            },
        ));
        pool.run(r.table_create("t"))
            .await
            .expect("create the table");

        // Three connections lent at once, then all returned: three idle.
        let mut lent = Vec::new();
        for _ in 0..3 {
            lent.push(pool.checkout().await.expect("checkout"));
        }
        for (generation, session) in lent {
            pool.checkin(generation, session);
        }
        assert_eq!(idle_count(&pool), 3);
        let opened = server.connections_opened();

        // A changefeed never ends, so collecting it times out.
        let err = pool
            .run(r.table("t").changes(()))
            .await
            .expect_err("the changefeed cannot be collected in time");
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");

        assert_eq!(
            idle_count(&pool),
            2,
            "only the timed-out connection is gone"
        );
        pool.run(r.table("t").count(())).await.expect("count");
        pool.run(r.table("t").count(())).await.expect("count");
        assert_eq!(
            server.connections_opened(),
            opened,
            "later queries reuse the idle connections instead of opening new ones"
        );
        assert_eq!(idle_count(&pool), 2);
    }
}
