//! The stack under measurement and the helpers every scenario uses.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use store::DatabaseUrl;
use testkit::{PushpinOptions, Stack, StackOptions, Subscriber};

use crate::cli::Config;
use crate::http::{Connection, Request};
use crate::load::Client;

/// The real stack on loopback, wired as in production.
pub struct Bench {
    pub stack: Stack,
    pub db_url: DatabaseUrl,
    /// A client for set-up requests straight to the origin.
    setup: tokio::sync::Mutex<Connection>,
    /// The event-stream client. testkit's own client has a 30 s time-out,
    /// which would cut streams that outlive it.
    sse_client: reqwest::Client,
    /// The origin's log, which has a line per request.
    web_log: std::path::PathBuf,
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
        let db_url = DatabaseUrl::parse(&direct).context("the stack's database URL")?;
        let setup = tokio::sync::Mutex::new(Connection::connect(stack.web_port()).await?);
        let web_log = stack
            .web()
            .map(|p| p.log_path().to_path_buf())
            .context("no origin")?;
        Ok(Self {
            stack,
            db_url,
            setup,
            sse_client: reqwest::Client::new(),
            web_log,
        })
    }

    pub fn origin_port(&self) -> u16 {
        self.stack.web_port()
    }

    pub fn pushpin_port(&self) -> u16 {
        self.stack.pushpin.http_port
    }

    pub fn publish_port(&self) -> u16 {
        self.stack.pushpin.publish_port
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

    /// How many requests for `path_and_query` the origin has logged.
    pub fn requests_logged(&self, path_and_query: &str) -> usize {
        let needle = format!(" {path_and_query} HTTP/");
        std::fs::read_to_string(&self.web_log)
            .map(|log| log.lines().filter(|l| l.contains(&needle)).count())
            .unwrap_or(0)
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
    /// refuses part of a burst of new requests with 502 (see README).
    pub async fn subscribe(&self, board: &str) -> anyhow::Result<Subscriber> {
        let mut last = None;
        for attempt in 0..5 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            let url = self.stack.url(&format!("/boards/{board}/"));
            match Subscriber::connect(&self.sse_client, &url, None).await {
                Ok(sub) => return Ok(sub),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("subscribe failed")))
    }
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
