//! The stack under measurement and the helpers every scenario uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use store::DatabaseUrl;
use testkit::{Database, PushpinOptions, RethinkCluster, Stack, StackOptions, Subscriber, TempDir};

use crate::cli::Config;
use crate::http::{Connection, Request};
use crate::load::Client;

/// The real stack on loopback, wired as in production.
pub struct Bench {
    /// Pushpin, the origin and the worker, as testkit runs them.
    pub stack: Stack,
    /// The stack's database, reached directly (no forwarder).
    pub db_url: DatabaseUrl,
    /// A client for set-up requests straight to the origin.
    setup: tokio::sync::Mutex<Connection>,
    /// The event-stream client. testkit's own client has a 30 s time-out,
    /// which would cut streams that outlive it.
    sse_client: reqwest::Client,
    /// Every origin's log, which has a line per request.
    web_logs: Vec<PathBuf>,
    /// The workers started by [`Bench::scale_workers`], in order.
    pub workers: Vec<WorkerHandle>,
    /// The database server this bench started for its stack, if any;
    /// declared last so that it outlives the stack, which drops its
    /// database on it.
    server: Option<(Server, TempDir)>,
}

/// A database server started for one [`Bench`].
pub enum Server {
    /// The dev server (or, with `RETHINKDB_URL`, that server).
    Own(Database),
    /// Real RethinkDB nodes on loopback.
    Cluster(RethinkCluster),
}

/// A named worker with a status port (`/metrics`).
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    /// The worker's `WORKER_ID` (`w1`, `w2`, ...).
    pub id: String,
    /// Its process id.
    pub pid: u32,
    /// Its `STATUS_PORT`, serving `/healthz` and `/metrics`.
    pub status_port: u16,
}

impl Bench {
    /// Starts Pushpin (configured as `pushpin`), the database, the origin and
    /// the worker.
    ///
    /// testkit puts a TCP forwarder between the stack and the database so
    /// that tests can cut it; that forwarder runs inside this process and
    /// would add a hop, and compete with the load generator for the same
    /// runtime. So the origin and the worker are restarted pointing
    /// straight at the database, as they are in production.
    pub async fn start(config: &Config, pushpin: PushpinOptions) -> anyhow::Result<Self> {
        let mut stack = Stack::start_with(StackOptions {
            publish_interval_ms: config.publish_interval_ms,
            pushpin,
            ..StackOptions::default()
        })
        .await
        .context("start the stack")?;
        let direct = stack.direct_database_url();
        stack.stop_web();
        stack.set_web_env("DATABASE_URL", &direct);
        stack.start_web().await?;
        stack.kill_worker();
        stack.set_worker_env("DATABASE_URL", &direct);
        stack.start_worker().await?;
        Self::wrap(stack, None).await
    }

    /// Starts a stack as `options` say (the publish interval is the run's)
    /// on a database server of its own, which its processes reach directly:
    /// a [`RethinkCluster`] when given, else the dev server (or the server
    /// at `RETHINKDB_URL`). `data` holds the server's files and logs.
    pub async fn start_on(
        config: &Config,
        options: StackOptions,
        cluster: Option<RethinkCluster>,
        data: TempDir,
    ) -> anyhow::Result<Self> {
        let server = match cluster {
            Some(cluster) => Server::Cluster(cluster),
            None => {
                let path = data.path().to_path_buf();
                Server::Own(tokio::task::spawn_blocking(move || Database::start(&path)).await??)
            }
        };
        let base = match &server {
            Server::Cluster(cluster) => cluster.base_url(),
            // `url("")` is the server's base URL and a slash.
            Server::Own(db) => db.url("").trim_end_matches('/').to_owned(),
        };
        let stack = Stack::start_with(StackOptions {
            publish_interval_ms: config.publish_interval_ms,
            database: Some(base),
            ..options
        })
        .await
        .context("start the stack")?;
        Self::wrap(stack, Some((server, data))).await
    }

    async fn wrap(mut stack: Stack, server: Option<(Server, TempDir)>) -> anyhow::Result<Self> {
        let direct = stack.direct_database_url();
        let db_url = DatabaseUrl::parse(&direct).context("the stack's database URL")?;
        let setup = tokio::sync::Mutex::new(Connection::connect(stack.web_port()).await?);
        let mut web_logs = vec![stack
            .web()
            .map(|p| p.log_path().to_path_buf())
            .context("no origin")?];
        web_logs.extend(stack.extra_web_logs());
        Ok(Self {
            stack,
            db_url,
            setup,
            sse_client: reqwest::Client::new(),
            web_logs,
            workers: Vec::new(),
            server,
        })
    }

    /// The database server this bench started, if any.
    pub fn server(&self) -> Option<&Server> {
        self.server.as_ref().map(|(server, _)| server)
    }

    /// The origin's HTTP port, for requests that bypass Pushpin.
    pub fn origin_port(&self) -> u16 {
        self.stack.web_port()
    }

    /// The first Pushpin's client port.
    pub fn pushpin_port(&self) -> u16 {
        self.stack.pushpin.http_port
    }

    /// The first Pushpin's publish (GRIP control) port.
    pub fn publish_port(&self) -> u16 {
        self.stack.pushpin.publish_port
    }

    /// Every Pushpin's client port and publish port, the first one first.
    pub fn proxies(&self) -> Vec<(u16, u16)> {
        std::iter::once(&self.stack.pushpin)
            .chain(&self.stack.extra_pushpins)
            .map(|p| (p.http_port, p.publish_port))
            .collect()
    }

    /// The pids of the origin and the worker.
    pub fn pids(&mut self) -> anyhow::Result<(u32, u32)> {
        let web = self.stack.web().and_then(|p| p.id()).context("no origin")?;
        let worker = self
            .stack
            .worker()
            .and_then(|p| p.id())
            .context("no worker")?;
        Ok((web, worker))
    }

    /// Sends one set-up request to the origin and checks its status.
    pub async fn call(&self, request: Request, expect: u16) -> anyhow::Result<serde_json::Value> {
        let response = self.setup.lock().await.send(&request).await?;
        anyhow::ensure!(
            response.status == expect,
            "set-up request answered {}: {}",
            response.status,
            response.text()
        );
        if response.body.is_empty() {
            Ok(serde_json::Value::Null)
        } else {
            response.json()
        }
    }

    /// Creates board `id` with players `p0..p{players}` through the API.
    pub async fn board(&self, id: &str, players: usize) -> anyhow::Result<Vec<String>> {
        let port = self.origin_port();
        self.call(
            Request::post_json(port, "/boards/", &json!({"id": id, "name": id}).to_string()),
            201,
        )
        .await?;
        let mut ids = Vec::with_capacity(players);
        for i in 0..players {
            let pid = format!("p{i}");
            self.call(
                Request::post_json(
                    port,
                    &format!("/boards/{id}/players/"),
                    &json!({"id": pid, "name": pid}).to_string(),
                ),
                201,
            )
            .await?;
            ids.push(pid);
        }
        Ok(ids)
    }

    /// How many requests for `path_and_query` the origins have logged.
    pub fn requests_logged(&self, path_and_query: &str) -> usize {
        let needle = format!(" {path_and_query} HTTP/");
        self.web_logs
            .iter()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|log| log.lines().filter(|l| l.contains(&needle)).count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The board's JSON as the origin serves it.
    pub async fn board_json(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        self.call(
            Request::get_json(self.origin_port(), &format!("/boards/{id}/")),
            200,
        )
        .await
    }

    /// A subscriber to `board` through Pushpin, retried because Pushpin
    /// refuses part of a burst of new requests with 502 (see docs/deploying.md).
    pub async fn subscribe(&self, board: &str) -> anyhow::Result<Subscriber> {
        self.subscribe_via(board, 0).await
    }

    /// The same through Pushpin number `proxy` of [`Bench::proxies`].
    pub async fn subscribe_via(&self, board: &str, proxy: usize) -> anyhow::Result<Subscriber> {
        let (http_port, _) = self.proxies()[proxy];
        let mut last = None;
        for attempt in 0..5 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            let url = format!("http://127.0.0.1:{http_port}/boards/{board}/");
            match Subscriber::connect(&self.sse_client, &url, None).await {
                Ok(sub) => return Ok(sub),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("subscribe failed")))
    }
}

impl Bench {
    /// Starts named workers (`w1`, `w2`, ...), each with a status port, or
    /// stops the last started (SIGTERM: they hand their leases back), until
    /// `n` run, then waits until the shards are spread over them: every
    /// lease held by one of them, none holding more than its fair share,
    /// and every feed open.
    pub async fn scale_workers(&mut self, n: usize) -> anyhow::Result<()> {
        while self.workers.len() > n {
            let gone = self.workers.pop().expect("more workers than n");
            let worker = self.stack.named_worker(&gone.id);
            tokio::task::block_in_place(|| worker.process.stop(Duration::from_secs(10)));
        }
        while self.workers.len() < n {
            let id = format!("w{}", self.workers.len() + 1);
            self.stack.add_worker(&id, &[]).await?;
            let worker = self.stack.named_worker(&id);
            let pid = worker.process.id().context("the worker has no pid")?;
            let status_port = worker.status_port;
            self.workers.push(WorkerHandle {
                id,
                pid,
                status_port,
            });
        }
        self.wait_balanced(Duration::from_secs(60)).await
    }

    async fn wait_balanced(&self, within: Duration) -> anyhow::Result<()> {
        let ids: Vec<&str> = self.workers.iter().map(|w| w.id.as_str()).collect();
        let deadline = Instant::now() + within;
        loop {
            let holders = self.stack.lease_holders().await;
            let fair = holders.len().div_ceil(ids.len().max(1));
            let all_held = !holders.is_empty()
                && holders
                    .values()
                    .all(|h| h.as_deref().is_some_and(|h| ids.contains(&h)));
            let mut owned = Vec::with_capacity(ids.len());
            let mut ready = true;
            for worker in &self.workers {
                let metrics = worker_metrics(worker.status_port).await.unwrap_or_default();
                let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
                owned.push(metric("dblistener_shards_owned") as usize);
                ready &= metric("dblistener_feed_ready") == 1.0;
            }
            let spread =
                owned.iter().sum::<usize>() == holders.len() && owned.iter().all(|&o| o <= fair);
            if all_held && spread && ready {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the shards were not spread over {ids:?} within {within:?}: leases {holders:?}, owned {owned:?}, feeds ready: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The unlabelled samples of a worker's `/metrics` on `status_port`.
pub async fn worker_metrics(status_port: u16) -> anyhow::Result<BTreeMap<String, f64>> {
    let response = Connection::new(status_port)
        .send(&Request::new("GET", status_port, "/metrics", &[], b""))
        .await?;
    anyhow::ensure!(
        response.status == 200,
        "worker /metrics answered {}",
        response.status
    );
    Ok(parse_metrics(&response.text()))
}

/// `name value` lines of the Prometheus text format; labelled samples and
/// comments are left out.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            if name.contains('{') {
                return None;
            }
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A load client sending pre-rendered requests over its own connection and
/// expecting one status.
pub struct HttpClient {
    conn: Connection,
    requests: Arc<Vec<Request>>,
    offset: usize,
    expect: u16,
}

impl HttpClient {
    /// `n` clients on `port`; client `i` starts at request `i` so that
    /// concurrent clients touch different players.
    pub async fn many(
        n: usize,
        port: u16,
        requests: Arc<Vec<Request>>,
        expect: u16,
    ) -> anyhow::Result<Vec<Self>> {
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            clients.push(Self {
                conn: Connection::connect(port).await?,
                requests: Arc::clone(&requests),
                offset: i,
                expect,
            });
        }
        Ok(clients)
    }
}

impl Client for HttpClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let request = &self.requests[(self.offset + seq as usize) % self.requests.len()];
        let response = self.conn.send(request).await?;
        anyhow::ensure!(
            response.status == self.expect,
            "status {}: {}",
            response.status,
            response.text()
        );
        Ok(())
    }
}

/// Score-add requests, one per player, adding 1.
pub fn score_add_requests(port: u16, board: &str, players: &[String]) -> Arc<Vec<Request>> {
    Arc::new(
        players
            .iter()
            .map(|p| {
                Request::post_json(
                    port,
                    &format!("/boards/{board}/players/{p}/score-add/"),
                    r#"{"value":1}"#,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_without_labels_or_comments() {
        let text = "# HELP dblistener_publishes_total Board snapshots published\n\
                    # TYPE dblistener_publishes_total counter\n\
                    dblistener_publishes_total 1234\n\
                    dblistener_lease_epoch{shard=\"3\"} 7\n\
                    dblistener_publish_lag_seconds_sum 0.25\n";
        let m = parse_metrics(text);
        assert_eq!(m.get("dblistener_publishes_total"), Some(&1234.0));
        assert_eq!(m.get("dblistener_publish_lag_seconds_sum"), Some(&0.25));
        assert_eq!(m.len(), 2);
    }
}
