use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reql_client::{ConnectOptions, Connection, Cursor};
use reql_terms::{r, Term};
use serde_json::Value;
use service::Backoff;

use crate::schema::SchemaOptions;
use crate::{DatabaseUrl, Endpoint, StoreError};

/// Sizes and time limits of the connection pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections to the database (`DB_POOL_SIZE`); each carries any
    /// number of queries at once.
    pub max_connections: usize,
    /// Time allowed to open one connection, handshake included.
    pub connect_timeout: Duration,
    /// Time allowed for one query, from checkout to the last batch.
    pub query_timeout: Duration,
    /// Replicas and shards of the tables that schema set-up creates.
    pub schema: SchemaOptions,
    /// The runtime the connections' tasks run on; the caller's by default.
    /// A shared connection outlives the request that opened it, so a server
    /// whose runtimes stop one by one (actix-web's workers at shutdown)
    /// gives the store a runtime of its own. Queries run in their callers'
    /// tasks either way.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(10),
            schema: SchemaOptions::default(),
            runtime: None,
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

/// A few connections, each carrying any number of queries at once.
///
/// A query goes to the open connection with the fewest queries in flight
/// ([`Pool::connection`]). A connection that broke
/// (the database restarted, the network dropped it) is replaced by the first
/// query that finds it broken, through [`Hosts`]; the queries that arrive
/// meanwhile wait for that one attempt and share its outcome, so a dead
/// database costs one connection attempt per slot, not one per query. A
/// query that times out is stopped on the server (STOP) and its connection
/// goes on serving the others.
pub(crate) struct Pool {
    url: DatabaseUrl,
    options: PoolOptions,
    hosts: Hosts,
    /// The rustls configuration for `rethinkdbs://`, built once.
    tls: Result<Option<Arc<rustls::ClientConfig>>, String>,
    /// `{"db": r.db(name)}`, sent with every query.
    global_optargs: Value,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    open: RwLock<Option<(usize, Connection)>>,
    /// Held while one query opens this slot's connection.
    opening: tokio::sync::Mutex<()>,
    /// Connection attempts made, and how the last one failed.
    attempts: AtomicU64,
    last_error: Mutex<String>,
}

impl Slot {
    /// `f` of the slot's host and connection; `None` unless it is open and
    /// working.
    fn with_open<R>(&self, f: impl FnOnce(&(usize, Connection)) -> R) -> Option<R> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        open.as_ref().filter(|(_, c)| !c.is_broken()).map(f)
    }

    /// Queries in flight on the slot's connection, if it is open and
    /// working (read without taking a copy of the connection).
    fn in_flight(&self) -> Option<usize> {
        self.with_open(|(_, c)| c.in_flight())
    }

    fn usable(&self) -> Option<(usize, Connection)> {
        self.with_open(Clone::clone)
    }
}

impl Pool {
    pub(crate) fn new(url: DatabaseUrl, options: PoolOptions) -> Self {
        let tls = url.tls.as_ref().map(|t| t.client_config()).transpose();
        let slots = (0..options.max_connections.max(1))
            .map(|_| Slot::default())
            .collect();
        Self {
            hosts: Hosts::new(url.hosts.clone()),
            global_optargs: serde_json::json!({ "db": r.db(url.db.clone()) }),
            tls,
            url,
            options,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub(crate) fn options(&self) -> &PoolOptions {
        &self.options
    }

    /// Opens a fresh connection to the first host that answers; returns
    /// that host's index for [`Pool::host_failed`].
    pub(crate) async fn connect(&self) -> Result<(usize, Connection), StoreError> {
        let tls = self.tls.clone().map_err(StoreError::Unavailable)?;
        let mut errors = Vec::new();
        for host in self.hosts.order(Instant::now()) {
            let endpoint = &self.hosts.endpoints[host];
            let options = ConnectOptions {
                host: endpoint.host.clone(),
                port: endpoint.port,
                user: self.url.user.clone(),
                password: self.url.password().to_owned(),
                tls: tls.clone(),
                connect_timeout: self.options.connect_timeout,
            };
            match self.open(options).await {
                Ok(conn) => {
                    self.hosts.answered(host);
                    return Ok((host, conn));
                }
                Err(err) => {
                    let err = format!("database host {endpoint}: {err}");
                    if self.hosts.endpoints.len() > 1 {
                        log::warn!("{err}; trying another");
                    }
                    self.hosts.failed(host, Instant::now());
                    errors.push(err);
                }
            }
        }
        Err(StoreError::Unavailable(errors.join("; ")))
    }

    /// Opens a connection on the store's runtime when it has one, so that
    /// the connection's reader and writer outlive the runtime of the query
    /// that opened it.
    async fn open(&self, options: ConnectOptions) -> Result<Connection, reql_client::Error> {
        match &self.options.runtime {
            None => Connection::connect(&options).await,
            Some(runtime) => runtime
                .spawn(async move { Connection::connect(&options).await })
                .await
                .unwrap_or_else(|e| {
                    Err(reql_client::Error::Connect(format!(
                        "the connection task failed: {e}"
                    )))
                }),
        }
    }

    /// The slot of the open connection with the fewest queries in flight,
    /// the first such from `first` on.
    fn least_loaded(&self, first: usize) -> Option<usize> {
        let n = self.slots.len();
        let mut best: Option<(usize, usize)> = None;
        for i in (first..n).chain(0..first) {
            if let Some(in_flight) = self.slots[i].in_flight() {
                if best.is_none_or(|(_, least)| in_flight < least) {
                    best = Some((i, in_flight));
                    if in_flight == 0 {
                        break;
                    }
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// Reports that a connection to `host` broke, so that new connections
    /// prefer the other hosts for a while.
    pub(crate) fn host_failed(&self, host: usize) {
        self.hosts.failed(host, Instant::now());
    }

    /// A working connection: the open one with the fewest queries in
    /// flight, looked for from the next slot in turn (so that ties take
    /// turns); that slot is opened first if it is not open, so that every
    /// slot opens once queries arrive.
    ///
    /// Not simply the next in turn: queries in turn leave one connection
    /// with more in flight than another while they last, and RethinkDB
    /// serves each connection on one of its threads, so its threads' loads
    /// drift apart with them. In turn, a pool of 4 kept 0.89× of the
    /// database's own throughput at 64 clients in two runs; with the
    /// fewest in flight, 1.01× and 0.95× (BENCHMARKS.md, "The connection
    /// with the fewest queries in flight").
    async fn connection(&self) -> Result<(usize, Connection), StoreError> {
        let first = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[first];
        if slot.in_flight().is_some() {
            if let Some(open) = self
                .least_loaded(first)
                .and_then(|i| self.slots[i].usable())
            {
                return Ok(open);
            }
        }
        let attempts = slot.attempts.load(Ordering::Acquire);
        let _opening = slot.opening.lock().await;
        if let Some(open) = slot.usable() {
            return Ok(open);
        }
        if slot.attempts.load(Ordering::Acquire) != attempts {
            // An attempt made while this query waited failed: its answer
            // is this query's too.
            let error = slot.last_error.lock().unwrap_or_else(|p| p.into_inner());
            return Err(StoreError::Unavailable(error.clone()));
        }
        let broken = slot.open.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((host, _)) = broken {
            self.host_failed(host);
        }
        let outcome = self.connect().await;
        match &outcome {
            Ok(open) => {
                *slot.open.write().unwrap_or_else(|p| p.into_inner()) = Some(open.clone());
            }
            Err(err) => {
                *slot.last_error.lock().unwrap_or_else(|p| p.into_inner()) = err.to_string();
            }
        }
        slot.attempts.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    /// Starts `query` on a pooled connection and returns its cursor, e.g.
    /// for a changefeed, with the host it went to.
    pub(crate) async fn cursor(&self, query: &Term) -> Result<(usize, Cursor), StoreError> {
        let (host, conn) = self.connection().await?;
        let cursor = conn
            .query(query, &self.global_optargs)
            .map_err(|e| self.failed(host, e))?;
        Ok((host, cursor))
    }

    /// Turns a client error into the store's, noting a broken connection's
    /// host.
    pub(crate) fn failed(&self, host: usize, err: reql_client::Error) -> StoreError {
        if err.is_connection_error() {
            self.host_failed(host);
        }
        err.into()
    }

    /// Runs `query` and collects every result, within the query time limit.
    ///
    /// The query runs in the caller's task: a task of its own would cost
    /// every query a spawn and a wake-up across threads (about 15 µs of
    /// client CPU at 64 clients, BENCHMARKS.md). A caller that goes away (an HTTP client
    /// that hung up) drops the cursor, which stops the query on the server
    /// (STOP); the connection goes on serving the others.
    pub(crate) async fn run(&self, query: Term) -> Result<Vec<Value>, StoreError> {
        let limit = self.options.query_timeout;
        let outcome = tokio::time::timeout(limit, async {
            let (host, cursor) = self.cursor(&query).await?;
            cursor.all().await.map_err(|e| self.failed(host, e))
        })
        .await;
        // On time-out the cursor is dropped, which sends STOP: the server
        // ends the query and the connection stays in use.
        outcome.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "query timed out after {limit:?}"
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use reql_terms::term;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A dev server behind a proxy that counts the connections made through it.
    struct CountedServer {
        port: u16,
        accepted: Arc<AtomicUsize>,
        cut: tokio::sync::watch::Sender<u64>,
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
            let (cut, cuts) = tokio::sync::watch::channel(0u64);
            tokio::spawn(async move {
                while let Ok((mut client, _)) = proxy.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut cuts = cuts.clone();
                    cuts.mark_unchanged();
                    tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(backend).await {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                                _ = cuts.changed() => {}
                            }
                        }
                    });
                }
            });
            Self {
                port,
                accepted,
                cut,
                stop: Some(stop),
            }
        }

        fn connections_opened(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        /// Closes every connection made so far, as a database restart does.
        fn drop_connections(&self) {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    impl Drop for CountedServer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    fn pool_on(port: u16, connections: usize, query_timeout: Duration) -> Arc<Pool> {
        let url = DatabaseUrl::parse(&format!("rethinkdb://127.0.0.1:{port}/test")).expect("url");
        Arc::new(Pool::new(
            url,
            PoolOptions {
                max_connections: connections,
                connect_timeout: Duration::from_secs(5),
                query_timeout,
                ..PoolOptions::default()
            },
        ))
    }

    #[tokio::test]
    async fn many_queries_at_once_share_the_pools_connections() {
        let server = CountedServer::start().await;
        let pool = pool_on(server.port, 2, Duration::from_secs(10));
        pool.run(r.table_create("t"))
            .await
            .expect("create the table");
        let queries: Vec<_> = (0..64)
            .map(|i| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.run(r.table("t").insert(term!({"id": i}))).await })
            })
            .collect();
        for query in queries {
            query.await.expect("task").expect("insert");
        }
        let count = pool.run(r.table("t").count()).await.expect("count");
        assert_eq!(count, [serde_json::json!(64)]);
        assert_eq!(
            server.connections_opened(),
            2,
            "two connections carried all"
        );
    }

    /// A pool of two on a counted dev server, with a table `t` and both
    /// connections open.
    async fn two_open(query_timeout: Duration) -> (CountedServer, Arc<Pool>) {
        let server = CountedServer::start().await;
        let pool = pool_on(server.port, 2, query_timeout);
        pool.run(r.table_create("t"))
            .await
            .expect("create the table");
        pool.run(r.table("t").count()).await.expect("count");
        assert_eq!(server.connections_opened(), 2, "both slots are open");
        (server, pool)
    }

    #[tokio::test]
    async fn a_query_goes_to_the_connection_with_the_fewest_in_flight() {
        let (_server, pool) = two_open(Duration::from_secs(10)).await;

        // Three changefeeds stay in flight on whichever connections they
        // were given: the first goes to an idle one, the next two to the
        // other idle one and then to the less busy, so one connection
        // carries two and the other one.
        let mut feeds = Vec::new();
        for _ in 0..3 {
            feeds.push(pool.cursor(&r.table("t").changes()).await.expect("feed"));
        }
        let counts = || -> Vec<usize> {
            let mut counts: Vec<usize> = pool
                .slots
                .iter()
                .map(|slot| slot.in_flight().expect("open"))
                .collect();
            counts.sort_unstable();
            counts
        };
        assert_eq!(counts(), [1, 2], "the feeds were spread");
        // Every checkout now, whichever slot's turn it is, gives the
        // connection with one feed.
        for _ in 0..4 {
            let (_, conn) = pool.connection().await.expect("a connection");
            assert_eq!(conn.in_flight(), 1, "{conn:?}");
        }
        drop(feeds);
    }

    #[tokio::test]
    async fn a_timed_out_or_cancelled_query_costs_no_new_connection() {
        let (server, pool) = two_open(Duration::from_millis(300)).await;

        // A changefeed never ends, so collecting it times out, and is stopped.
        for _ in 0..3 {
            let err = pool
                .run(r.table("t").changes())
                .await
                .expect_err("the changefeed cannot be collected in time");
            assert!(err.is_unavailable(), "{err}");
            assert!(err.to_string().contains("timed out"), "{err}");
        }
        // A caller that goes away before the answer.
        let cancelled =
            tokio::time::timeout(Duration::from_millis(50), pool.run(r.table("t").changes())).await;
        assert!(cancelled.is_err(), "the caller gave up first");

        for i in 0..10 {
            pool.run(r.table("t").insert(term!({"id": i})))
                .await
                .expect("insert");
        }
        assert_eq!(
            server.connections_opened(),
            2,
            "the queries after the time-outs ran on the same two connections"
        );
        // Every stopped feed ended on the server: nothing stays in flight.
        tokio::time::sleep(Duration::from_millis(600)).await;
        for slot in &pool.slots {
            let (_, conn) = slot.usable().expect("still open");
            assert_eq!(conn.in_flight(), 0, "{conn:?}");
        }
    }

    #[tokio::test]
    async fn a_broken_connection_is_replaced_by_the_next_query() {
        let server = CountedServer::start().await;
        let pool = pool_on(server.port, 1, Duration::from_secs(5));
        pool.run(r.table_create("t"))
            .await
            .expect("create the table");
        server.drop_connections();
        // The first query may meet the broken connection before its reader
        // has seen the close; the one after it reconnects.
        let mut ok = false;
        for _ in 0..20 {
            if pool.run(r.table("t").count()).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the pool reconnected");
        assert_eq!(server.connections_opened(), 2);
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
            let (host, conn) = pool.connect().await.expect("connect");
            assert_eq!(host, 1);
            drop(conn);
        }
        assert_eq!(server.connections_opened(), 4);
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
