use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::Value;
use service::Backoff;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use unreql::cmd::connect::Options;
use unreql::{r, Command, Session};

use crate::error::is_connection_error;
use crate::schema::SchemaOptions;
use crate::{DatabaseUrl, Endpoint, StoreError};

/// Sizes and time limits of the connection pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections open at most at once; also how many queries run at once.
    pub max_connections: usize,
    /// Time allowed to open one connection, handshake included.
    pub connect_timeout: Duration,
    /// Time allowed for one query, from checkout to the last batch.
    pub query_timeout: Duration,
    /// Replicas and shards of the tables that schema set-up creates.
    pub schema: SchemaOptions,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(10),
            schema: SchemaOptions::default(),
        }
    }
}

/// The first and the longest pause of a host that failed to answer, before
/// new connections try it again ahead of the others.
const HOST_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const HOST_BACKOFF_MAX: Duration = Duration::from_secs(8);

/// The hosts of `DATABASE_URL`, and which of them failed lately.
///
/// New connections go to the hosts in turn. A host that refused a connection
/// or broke one is passed over until its back-off ends (doubling from 1 s up
/// to 8 s while it keeps failing), but only while another host is there to
/// try: hosts in back-off come last, not never, so a checkout fails only when
/// every host fails, and a cluster that was wholly down is found again by the
/// first request after it returns.
struct Hosts {
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    health: Mutex<Vec<Health>>,
}

struct Health {
    backoff: Backoff,
    down_until: Option<Instant>,
}

impl Hosts {
    fn new(endpoints: Vec<Endpoint>) -> Self {
        let health = endpoints
            .iter()
            .map(|_| Health {
                backoff: Backoff::new(HOST_BACKOFF_FIRST, HOST_BACKOFF_MAX),
                down_until: None,
            })
            .collect();
        Self {
            endpoints,
            next: AtomicUsize::new(0),
            health: Mutex::new(health),
        }
    }

    /// The order in which to try the hosts at `now`: those not in back-off,
    /// round-robin from the next host in turn, then those in back-off, the
    /// one whose back-off ends first first.
    fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let (mut up, mut down): (Vec<usize>, Vec<usize>) = (0..n)
            .map(|k| (start + k) % n)
            .partition(|&i| health[i].down_until.is_none_or(|until| until <= now));
        down.sort_by_key(|&i| health[i].down_until);
        up.append(&mut down);
        up
    }

    fn failed(&self, host: usize, now: Instant) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = health.get_mut(host) {
            h.down_until = Some(now + h.backoff.next_delay());
        }
    }

    fn answered(&self, host: usize) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = health.get_mut(host) {
            h.backoff.reset();
            h.down_until = None;
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
    hosts: Hosts,
    permits: Arc<Semaphore>,
    /// Idle connections: generation, host index, session.
    idle: Mutex<Vec<(u64, usize, Session)>>,
    generation: AtomicU64,
}

impl Pool {
    pub(crate) fn new(url: DatabaseUrl, options: PoolOptions) -> Self {
        let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
        Self {
            hosts: Hosts::new(url.hosts.clone()),
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

    pub(crate) fn options(&self) -> &PoolOptions {
        &self.options
    }

    /// Opens a fresh connection outside the pool, e.g. for a changefeed, to
    /// the first host that answers; returns that host's index for
    /// [`Pool::host_failed`].
    pub(crate) async fn connect(&self) -> Result<(usize, Session), StoreError> {
        let mut errors = Vec::new();
        for host in self.hosts.order(Instant::now()) {
            let endpoint = &self.hosts.endpoints[host];
            match connect(&self.url, endpoint, self.options.connect_timeout).await {
                Ok(session) => {
                    self.hosts.answered(host);
                    return Ok((host, session));
                }
                Err(err) => {
                    if self.hosts.endpoints.len() > 1 {
                        log::warn!("database host {endpoint}: {err}; trying another");
                    }
                    self.hosts.failed(host, Instant::now());
                    errors.push(err.to_string());
                }
            }
        }
        Err(StoreError::Unavailable(errors.join("; ")))
    }

    /// Reports that a connection to `host` broke, so that new connections
    /// prefer the other hosts for a while.
    pub(crate) fn host_failed(&self, host: usize) {
        self.hosts.failed(host, Instant::now());
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
        let (generation, host, session) = self.checkout().await?;
        let outcome = tokio::time::timeout(
            self.options.query_timeout,
            query.run::<_, Value>(&session).try_collect::<Vec<Value>>(),
        )
        .await;
        match outcome {
            Ok(Ok(values)) => {
                self.checkin(generation, host, session);
                Ok(values)
            }
            Ok(Err(err)) => {
                if is_connection_error(&err) {
                    // A reset or closed connection is what a database restart
                    // looks like, and then every idle connection is as dead as
                    // this one: dropping them now saves each its own failed
                    // request.
                    self.invalidate(generation);
                    self.host_failed(host);
                } else {
                    self.checkin(generation, host, session);
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

    async fn checkout(&self) -> Result<(u64, usize, Session), StoreError> {
        let current = self.generation.load(Ordering::Acquire);
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            while let Some((generation, host, session)) = idle.pop() {
                if generation == current && !session.is_broken() {
                    return Ok((generation, host, session));
                }
            }
        }
        let (host, session) = self.connect().await?;
        Ok((current, host, session))
    }

    fn checkin(&self, generation: u64, host: usize, session: Session) {
        if generation == self.generation.load(Ordering::Acquire) && !session.is_broken() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.push((generation, host, session));
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

pub(crate) async fn connect(
    url: &DatabaseUrl,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Session, StoreError> {
    let options = Options::new()
        .host(endpoint.host.clone())
        .port(endpoint.port)
        .db(url.db.clone())
        .user(url.user.clone())
        .password(url.password().to_owned());
    match tokio::time::timeout(timeout, r.connect(options)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(err)) => Err(StoreError::Unavailable(format!(
            "cannot connect to {endpoint}: {err}"
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "connecting to {endpoint} timed out after {timeout:?}"
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
                ..PoolOptions::default()
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
        for (generation, host, session) in lent {
            pool.checkin(generation, host, session);
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

    fn hosts(n: usize) -> Hosts {
        Hosts::new(
            (0..n)
                .map(|i| Endpoint {
                    host: format!("h{i}"),
                    port: 28015,
                })
                .collect(),
        )
    }

    #[test]
    fn new_connections_go_to_the_hosts_in_turn() {
        let hosts = hosts(3);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..6).map(|_| hosts.order(now)[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        assert_eq!(hosts.order(now), [0, 1, 2]);
        assert_eq!(hosts.order(now), [1, 2, 0]);
    }

    #[test]
    fn a_failed_host_comes_last_until_its_back_off_ends() {
        let hosts = hosts(3);
        let now = Instant::now();
        hosts.failed(0, now);
        for _ in 0..6 {
            let order = hosts.order(now);
            assert_eq!(order.len(), 3, "every host stays in the order");
            assert_eq!(order[2], 0, "{order:?}");
        }
        // The first back-off is at most HOST_BACKOFF_FIRST.
        let later = now + HOST_BACKOFF_FIRST;
        assert!((0..3).any(|_| hosts.order(later)[0] == 0));
        // An answer clears it at once.
        hosts.failed(0, now);
        hosts.answered(0);
        assert!((0..3).any(|_| hosts.order(now)[0] == 0));
    }

    #[test]
    fn back_off_grows_while_a_host_keeps_failing_and_the_soonest_back_comes_first() {
        let hosts = hosts(2);
        let now = Instant::now();
        for _ in 0..4 {
            hosts.failed(0, now);
        }
        hosts.failed(1, now);
        // Host 0's fourth back-off is at least 4 s (half its 8 s ceiling);
        // host 1's first is at most 1 s.
        assert_eq!(hosts.order(now), [1, 0], "both down: the sooner first");
        let two_secs = now + Duration::from_secs(2);
        assert_eq!(hosts.order(two_secs), [1, 0]);
        assert_eq!(hosts.order(two_secs), [1, 0]);
        let nine_secs = now + Duration::from_secs(9);
        assert_eq!(hosts.order(nine_secs).len(), 2);
        let firsts: Vec<usize> = (0..2).map(|_| hosts.order(nine_secs)[0]).collect();
        assert!(firsts.contains(&0) && firsts.contains(&1), "{firsts:?}");
    }

    #[test]
    fn one_host_is_always_tried() {
        let hosts = hosts(1);
        let now = Instant::now();
        hosts.failed(0, now);
        assert_eq!(hosts.order(now), [0]);
    }

    #[tokio::test]
    async fn a_checkout_moves_past_a_host_that_is_down() {
        let server = CountedServer::start().await;
        // A port that was just free: nothing listens there.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("address")
            .port();
        let url = DatabaseUrl::parse(&format!(
            "rethinkdb://127.0.0.1:{closed},127.0.0.1:{}/test",
            server.port
        ))
        .expect("url");
        let pool = Arc::new(Pool::new(url, PoolOptions::default()));
        for _ in 0..4 {
            let (_, host, session) = pool.checkout().await.expect("checkout");
            assert_eq!(host, 1);
            drop(session);
        }
        assert_eq!(server.connections_opened(), 4);
        let (host, _session) = pool.connect().await.expect("a feed connection");
        assert_eq!(host, 1);
        // With every host down, the error names each.
        let url = DatabaseUrl::parse(&format!(
            "rethinkdb://127.0.0.1:{closed},[::1]:{closed}/test"
        ))
        .expect("url");
        let err = Pool::new(url, PoolOptions::default())
            .connect()
            .await
            .expect_err("nothing answers");
        assert!(err.is_unavailable(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{closed}"))
                && text.contains(&format!("[::1]:{closed}")),
            "{text}"
        );
    }
}
