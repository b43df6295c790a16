use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::pushpin::http_status;
use crate::{
    binary, free_port, Binary, Database, ManagedProcess, NetProxy, Pushpin, PushpinOptions,
    Subscriber, TempDir,
};

/// How a test wants its stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Start the worker (`dblistener`).
    pub worker: bool,
    /// The worker's `PUBLISH_INTERVAL_MS`.
    pub publish_interval_ms: u64,
    /// Settings of every Pushpin of the stack.
    pub pushpin: PushpinOptions,
    /// Keep the dev server's data in a directory (survives restarts).
    pub persistent_db: bool,
    /// Extra environment for the origin.
    pub web_env: Vec<(String, String)>,
    /// Extra environment for the worker.
    pub worker_env: Vec<(String, String)>,
    /// Start the dev server with this admin password (ignored for an
    /// external RethinkDB, whose credentials come from RETHINKDB_URL).
    pub db_password: Option<String>,
    /// More origins beside the one Pushpin routes to, each on a port of its
    /// own (see [`Stack::extra_web_ports`]).
    pub extra_webs: usize,
    /// Start every origin and the worker at the same instant, then wait for
    /// all of them, as `foreman start` or `docker compose up` do; otherwise
    /// the origin is ready before the worker starts.
    pub start_together: bool,
    /// Pushpins in front. With more than one, each routes to every origin
    /// (the first in its own order: Pushpin 1 prefers origin 1, Pushpin 2
    /// origin 2, ...) and every worker publishes to all of them.
    pub pushpins: usize,
    /// Run on this database server instead of launching one: a base URL,
    /// `rethinkdb://[user@]h1:p1,h2:p2` (several hosts for a cluster, see
    /// [`crate::RethinkCluster::base_url`]). The processes then connect to
    /// it directly, not through [`Stack::db_proxy`].
    pub database: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            worker: true,
            publish_interval_ms: 50,
            pushpin: PushpinOptions::default(),
            persistent_db: false,
            web_env: Vec::new(),
            worker_env: Vec::new(),
            db_password: None,
            extra_webs: 0,
            start_together: false,
            pushpins: 1,
            database: None,
        }
    }
}

/// The whole stack on loopback: database, origin, Pushpin and worker.
///
/// Each stack works in a database of its own, so tests run in parallel.
pub struct Stack {
    /// The database server the stack uses.
    pub db: Database,
    /// Sits between the stack and the database; see [`Stack::cut_database`].
    pub db_proxy: NetProxy,
    /// The stack's own database on that server.
    pub db_name: String,
    /// The Pushpin clients go through; origins are its route targets.
    pub pushpin: Pushpin,
    /// The Pushpins beside the first (see [`StackOptions::pushpins`]).
    pub extra_pushpins: Vec<Pushpin>,
    web: Option<ManagedProcess>,
    web_port: u16,
    extra_webs: Vec<(u16, ManagedProcess)>,
    worker: Option<ManagedProcess>,
    /// Workers started by [`Stack::add_worker`], by id.
    workers: Vec<NamedWorker>,
    /// For ordinary requests; keeps connections alive between requests.
    pub client: reqwest::Client,
    /// For stream requests through Pushpin: a new connection each time,
    /// as an `EventSource` usually gets. Pushpin 1.36, in the first moments
    /// after it starts, sometimes fails to hand a stream over to its handler
    /// when the stream arrives on a connection that already carried a
    /// request: the client gets 500 "Accept service unavailable", or the
    /// next request on a new connection goes unanswered. Tests of this
    /// project's behaviour keep clear of that.
    pub stream_client: reqwest::Client,
    options: StackOptions,
    // Dropped last: the processes' logs live in it.
    dir: TempDir,
}

impl Stack {
    /// The stack with the default options, ready to serve.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts the stack, trying again (on new ports) when a process fails
    /// to start: the ports are chosen free, but another process on the
    /// machine can still take one before ours binds it.
    pub async fn start_with(options: StackOptions) -> anyhow::Result<Self> {
        const ATTEMPTS: usize = 3;
        if options.start_together {
            // What such a start does is what the test is about: never
            // retried away.
            return Self::start_once(options).await;
        }
        let mut attempt = 1;
        loop {
            match Self::start_once(options.clone()).await {
                Ok(stack) => return Ok(stack),
                Err(e) if attempt < ATTEMPTS => {
                    eprintln!("stack start, attempt {attempt} of {ATTEMPTS}, failed: {e:#}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_once(options: StackOptions) -> anyhow::Result<Self> {
        let dir = TempDir::new("stack")?;
        let data = dir.path().join("data");
        let password = options.db_password.clone();
        let persistent = options.persistent_db;
        let given = options.database.clone();
        let (dir, db) = tokio::task::spawn_blocking(move || {
            let db = match given {
                Some(base) => Ok(Database::at(dir.path(), &base)),
                None => Database::launch(dir.path(), persistent.then_some(data), 0, password),
            };
            db.map(|db| (dir, db))
        })
        .await??;
        let db_proxy = NetProxy::start(db.address())
            .await
            .context("database proxy")?;
        tokio::task::spawn_blocking(move || Self::start_blocking(options, dir, db, db_proxy))
            .await?
    }

    fn start_blocking(
        options: StackOptions,
        dir: TempDir,
        db: Database,
        db_proxy: NetProxy,
    ) -> anyhow::Result<Self> {
        let db_name = format!("lbtest_{:08x}", rand::random::<u32>());
        let web_port = free_port();
        let extra_ports: Vec<u16> = (0..options.extra_webs).map(|_| free_port()).collect();
        let (pushpin, extra_pushpins) = if options.pushpins > 1 {
            let mut origins = vec![web_port];
            origins.extend(&extra_ports);
            let mut pushpins = Vec::with_capacity(options.pushpins);
            for i in 0..options.pushpins {
                let pdir = match i {
                    0 => dir.path().to_path_buf(),
                    i => dir.path().join(format!("pushpin{}", i + 1)),
                };
                let mut order = origins.clone();
                order.rotate_left(i % origins.len());
                pushpins.push(Pushpin::start_routed(&pdir, &order, &options.pushpin)?);
            }
            let first = pushpins.remove(0);
            (first, pushpins)
        } else {
            (
                Pushpin::start(dir.path(), web_port, &options.pushpin)?,
                Vec::new(),
            )
        };
        let mut stack = Self {
            db,
            db_proxy,
            db_name,
            pushpin,
            extra_pushpins,
            web: None,
            web_port,
            extra_webs: Vec::new(),
            worker: None,
            workers: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            // No overall time limit (a stream is open-ended), but a request
            // that gets nothing for a minute fails instead of hanging: idle
            // streams get a keep-alive comment every KEEP_ALIVE_SECS (20 s).
            stream_client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build()?,
            options,
            dir,
        };
        if stack.options.start_together {
            stack.start_together_blocking()?;
            return Ok(stack);
        }
        stack.start_web_blocking()?;
        for port in extra_ports {
            let web = stack.spawn_web(port)?;
            stack.extra_webs.push((port, web));
        }
        for i in 0..stack.extra_webs.len() {
            let port = stack.extra_webs[i].0;
            Self::wait_web_ready(&mut stack.extra_webs[i].1, port)?;
        }
        if stack.options.worker {
            stack.start_worker_blocking()?;
        }
        Ok(stack)
    }

    /// Spawns every process first, then waits for each to be ready.
    fn start_together_blocking(&mut self) -> anyhow::Result<()> {
        let mut web = self.spawn_web(self.web_port)?;
        let ports: Vec<u16> = (0..self.options.extra_webs).map(|_| free_port()).collect();
        for port in ports {
            let extra = self.spawn_web(port)?;
            self.extra_webs.push((port, extra));
        }
        let mut worker = match self.options.worker {
            true => Some(self.spawn_worker()?),
            false => None,
        };
        Self::wait_web_ready(&mut web, self.web_port)?;
        self.web = Some(web);
        for (port, extra) in &mut self.extra_webs {
            Self::wait_web_ready(extra, *port)?;
        }
        if let Some(worker) = &mut worker {
            Self::wait_worker_owns_all(worker)?;
        }
        self.worker = worker;
        Ok(())
    }

    /// Ports of the origins beside the one behind Pushpin.
    pub fn extra_web_ports(&self) -> Vec<u16> {
        self.extra_webs.iter().map(|(port, _)| *port).collect()
    }

    /// The log files of the origins beside the one behind Pushpin, in the
    /// order of [`Stack::extra_web_ports`].
    pub fn extra_web_logs(&self) -> Vec<std::path::PathBuf> {
        self.extra_webs
            .iter()
            .map(|(_, web)| web.log_path().to_path_buf())
            .collect()
    }

    /// The stack's scratch directory: its processes' logs and configs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `DATABASE_URL` of this stack's processes: through the proxy, or
    /// straight to the server given in [`StackOptions::database`].
    pub fn database_url(&self) -> String {
        match self.options.database {
            Some(_) => self.db.url(&self.db_name),
            None => self.db.url_via(self.db_proxy.port(), &self.db_name),
        }
    }

    /// `DATABASE_URL` straight to the server, for a test's own checks.
    pub fn direct_database_url(&self) -> String {
        self.db.url(&self.db_name)
    }

    /// Cuts the stack off its database: every connection drops and new ones
    /// fail, until [`Stack::restore_database`].
    pub fn cut_database(&self) {
        self.db_proxy.cut();
    }

    /// A driver session straight to this stack's database, for checking
    /// what was written.
    #[cfg(feature = "unreql")]
    pub async fn db_session(&self) -> unreql::Session {
        self.db
            .session(&self.db_name)
            .await
            .expect("connect to the database")
    }

    /// Reconnects the stack to its database after [`Stack::cut_database`].
    pub fn restore_database(&self) {
        self.db_proxy.restore();
    }

    fn common_env(&self, cmd: &mut Command) {
        cmd.current_dir(self.dir.path())
            .env("DATABASE_URL", self.database_url())
            .env("GRIP_URL", self.grip_urls())
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
    }

    fn spawn_web(&self, port: u16) -> anyhow::Result<ManagedProcess> {
        let mut cmd = Command::new(binary(Binary::Web));
        self.common_env(&mut cmd);
        cmd.env("HOST", "127.0.0.1").env("PORT", port.to_string());
        for (k, v) in &self.options.web_env {
            cmd.env(k, v);
        }
        let name = if port == self.web_port {
            "leaderboard-web".to_owned()
        } else {
            format!("leaderboard-web-{port}")
        };
        Ok(ManagedProcess::spawn(&name, cmd, self.dir.path())?)
    }

    /// Waits until an origin listens and its `/readyz` answers 200, which
    /// means the schema exists, so the test's first request works.
    fn wait_web_ready(web: &mut ManagedProcess, port: u16) -> anyhow::Result<()> {
        web.wait_for_line(Duration::from_secs(20), |l| {
            l.contains("leaderboard-web listening on").then_some(())
        })?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while http_status("GET", port, "/readyz", "") != Some(200) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "origin not ready:\n{}",
                web.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    fn start_web_blocking(&mut self) -> anyhow::Result<()> {
        let mut web = self.spawn_web(self.web_port)?;
        Self::wait_web_ready(&mut web, self.web_port)?;
        self.web = Some(web);
        Ok(())
    }

    fn spawn_worker(&self) -> anyhow::Result<ManagedProcess> {
        let mut cmd = Command::new(binary(Binary::Worker));
        self.common_env(&mut cmd);
        cmd.env(
            "PUBLISH_INTERVAL_MS",
            self.options.publish_interval_ms.to_string(),
        );
        for (k, v) in &self.options.worker_env {
            cmd.env(k, v);
        }
        Ok(ManagedProcess::spawn("dblistener", cmd, self.dir.path())?)
    }

    /// Waits until the worker's feeds are ready for the shards it holds
    /// after its first lease round, perhaps none.
    fn wait_worker_ready(worker: &mut ManagedProcess) -> anyhow::Result<()> {
        worker.wait_for_line(Duration::from_secs(20), |l| {
            l.contains("feeds ready: following").then_some(())
        })?;
        Ok(())
    }

    /// Waits until a lone worker follows every shard: at once on a fresh
    /// database, or once the leases of a worker killed before it expire.
    fn wait_worker_owns_all(worker: &mut ManagedProcess) -> anyhow::Result<()> {
        worker.wait_for_line(Duration::from_secs(30), |l| {
            let rest = l.split("feeds ready: following ").nth(1)?;
            let mut words = rest.split_whitespace();
            let held = words.next()?;
            let total = words.nth(1)?;
            (held == total).then_some(())
        })?;
        Ok(())
    }

    fn start_worker_blocking(&mut self) -> anyhow::Result<()> {
        let mut worker = self.spawn_worker()?;
        Self::wait_worker_owns_all(&mut worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    /// `GRIP_URL`: every Pushpin's publish endpoint, comma-separated.
    pub fn grip_urls(&self) -> String {
        std::iter::once(&self.pushpin)
            .chain(&self.extra_pushpins)
            .map(Pushpin::grip_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts a worker named `id` (its `WORKER_ID`) with a status port of
    /// its own and the stack's worker environment plus `env`, and waits
    /// until its feeds are ready (for the shards it holds, perhaps none).
    pub async fn add_worker(&mut self, id: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.named_worker_started(id, env, true).await
    }

    /// Starts a worker as [`Stack::add_worker`] does, without waiting for
    /// it to follow its shards: as a restart in production would be, while
    /// the database may still be recovering from a fault (the fault
    /// campaign judges what it then does by its outcome).
    pub async fn add_worker_unready(
        &mut self,
        id: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        self.named_worker_started(id, env, false).await
    }

    async fn named_worker_started(
        &mut self,
        id: &str,
        env: &[(&str, &str)],
        wait: bool,
    ) -> anyhow::Result<()> {
        let id = id.to_owned();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.blocking(move |s| {
            let status_port = free_port();
            let mut cmd = Command::new(binary(Binary::Worker));
            s.common_env(&mut cmd);
            cmd.env(
                "PUBLISH_INTERVAL_MS",
                s.options.publish_interval_ms.to_string(),
            )
            .env("WORKER_ID", &id)
            .env("STATUS_PORT", status_port.to_string());
            for (k, v) in s.options.worker_env.iter().chain(&env) {
                cmd.env(k, v);
            }
            let mut process =
                ManagedProcess::spawn(&format!("dblistener-{id}"), cmd, s.dir.path())?;
            if wait {
                Self::wait_worker_ready(&mut process)?;
            }
            s.workers.retain(|w| w.id != id);
            s.workers.push(NamedWorker {
                id,
                process,
                status_port,
            });
            Ok(())
        })
        .await
    }

    /// A worker started by [`Stack::add_worker`].
    pub fn named_worker(&mut self, id: &str) -> &mut NamedWorker {
        self.workers
            .iter_mut()
            .find(|w| w.id == id)
            .unwrap_or_else(|| panic!("no worker {id}"))
    }

    /// The ids of the workers started by [`Stack::add_worker`].
    pub fn worker_ids(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.id.clone()).collect()
    }

    /// A worker's `/healthz` answer (status and JSON), `None` when it does
    /// not answer.
    pub async fn worker_health(&self, id: &str) -> Option<(u16, serde_json::Value)> {
        let port = self.workers.iter().find(|w| w.id == id)?.status_port;
        let resp = self
            .client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.ok()?))
    }

    /// One value from a worker's `/metrics`.
    pub async fn worker_metric(&self, id: &str, name: &str) -> Option<f64> {
        let port = self.workers.iter().find(|w| w.id == id)?.status_port;
        let text = self
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The holder of each shard's lease, read from the database
    /// (`None`: free, or expired on the database's clock).
    pub async fn lease_holders(&self) -> std::collections::BTreeMap<u16, Option<String>> {
        use reql_terms::{r, term};
        let session = self
            .db
            .open_session(&self.db_name)
            .await
            .expect("connect to the database");
        let now_and_rows = session
            .one(&term!({
                "now": r.now().to_epoch_time().mul(1000),
                "rows": r.table("leases").coerce_to("array"),
            }))
            .await
            .expect("read the leases");
        let now = now_and_rows["now"].as_f64().unwrap_or(0.0);
        let mut holders = std::collections::BTreeMap::new();
        for row in now_and_rows["rows"].as_array().into_iter().flatten() {
            let Some(shard) = row["id"]
                .as_str()
                .and_then(|id| id.strip_prefix("shard:"))
                .and_then(|k| k.parse().ok())
            else {
                continue;
            };
            let live = row["expires"].as_f64().unwrap_or(0.0) > now;
            let holder = row["holder"].as_str().filter(|_| live).map(str::to_owned);
            holders.insert(shard, holder);
        }
        holders
    }

    /// URL of `path` through Pushpin, as clients use it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.pushpin.url())
    }

    /// URL of `path` on the origin directly, bypassing Pushpin.
    pub fn origin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.web_port)
    }

    /// The port of the first origin.
    pub fn web_port(&self) -> u16 {
        self.web_port
    }

    /// GET of `path` through Pushpin.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET through Pushpin")
    }

    /// GET through Pushpin: the status and the JSON body (null if it is
    /// not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.get(path).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// POST of a JSON body through Pushpin: the status and the JSON answer
    /// (null if it is not JSON).
    pub async fn post_json_answer(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self.post_json(path, body).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// POST of a JSON body to `path` through Pushpin.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST through Pushpin")
    }

    /// POST without a body to `path` through Pushpin.
    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .send()
            .await
            .expect("POST through Pushpin")
    }

    /// DELETE of `path` through Pushpin.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE through Pushpin")
    }

    /// Creates a board with `id` and players `(id, name)`; panics on failure.
    pub async fn create_board(&self, id: &str, players: &[(&str, &str)]) {
        let resp = self
            .post_json("/boards/", serde_json::json!({ "id": id, "name": id }))
            .await;
        assert_eq!(
            resp.status(),
            201,
            "create board {id}: {}",
            resp.text().await.unwrap_or_default()
        );
        for (pid, name) in players {
            let resp = self
                .post_json(
                    &format!("/boards/{id}/players/"),
                    serde_json::json!({ "id": pid, "name": name }),
                )
                .await;
            assert_eq!(
                resp.status(),
                201,
                "create player {pid}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
    }

    /// Adds `value` to a player's score through Pushpin and returns the
    /// player JSON of the answer.
    pub async fn score_add(&self, board: &str, player: &str, value: i64) -> serde_json::Value {
        let resp = self
            .post_json(
                &format!("/boards/{board}/players/{player}/score-add/"),
                serde_json::json!({ "value": value }),
            )
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("score-add JSON")
    }

    /// Subscribes to a board's event stream through Pushpin.
    pub async fn subscribe(&self, board: &str) -> Subscriber {
        self.subscribe_from(board, None).await
    }

    /// Subscribes to a board's event stream through Pushpin, resuming
    /// after `last_event_id` (sent as `Last-Event-ID`) when given.
    pub async fn subscribe_from(&self, board: &str, last_event_id: Option<&str>) -> Subscriber {
        Subscriber::connect(
            &self.stream_client,
            &self.url(&format!("/boards/{board}/")),
            last_event_id,
        )
        .await
        .expect("subscribe")
    }

    /// A subscriber that reconnects with Last-Event-ID like a browser.
    pub fn resilient_subscriber(&self, board: &str) -> crate::ResilientSubscriber {
        crate::ResilientSubscriber::start(
            self.stream_client.clone(),
            self.url(&format!("/boards/{board}/")),
        )
    }

    /// Restarts Pushpin on the same ports; every held stream is cut.
    pub async fn restart_pushpin(&mut self) -> anyhow::Result<()> {
        let options = self.options.pushpin.clone();
        self.blocking(move |s| {
            let dir = s.dir.path().to_path_buf();
            s.pushpin.restart(&dir, &options)
        })
        .await
    }

    /// Sets an environment variable for the next worker start.
    pub fn set_worker_env(&mut self, name: &str, value: &str) {
        self.options.worker_env.retain(|(k, _)| k != name);
        self.options
            .worker_env
            .push((name.to_owned(), value.to_owned()));
    }

    /// Sets an environment variable for the next origin start.
    pub fn set_web_env(&mut self, name: &str, value: &str) {
        self.options.web_env.retain(|(k, _)| k != name);
        self.options
            .web_env
            .push((name.to_owned(), value.to_owned()));
    }

    /// The value an environment variable of the origin's takes at its next
    /// start, if the stack sets it, so that a change can be undone.
    pub fn web_env(&self, name: &str) -> Option<&str> {
        self.options
            .web_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Leaves an environment variable of the origin's unset (its default)
    /// at its next start.
    pub fn unset_web_env(&mut self, name: &str) {
        self.options.web_env.retain(|(k, _)| k != name);
    }

    /// `kill -9` of the stack's first worker, as a crash would.
    pub fn kill_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.kill_hard();
        }
    }

    /// Starts the first worker again, and waits until it holds every shard.
    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        self.blocking(|s| s.start_worker_blocking()).await
    }

    /// SIGTERM to the origin, which finishes in-flight requests first;
    /// SIGKILL if it is not gone within 30 s (Heroku's grace period).
    pub fn stop_web(&mut self) -> Option<std::process::ExitStatus> {
        self.web
            .take()
            .and_then(|mut web| web.stop(Duration::from_secs(30)))
    }

    /// Starts the first origin again on its port, and waits until it is
    /// ready.
    pub async fn start_web(&mut self) -> anyhow::Result<()> {
        self.blocking(|s| s.start_web_blocking()).await
    }

    /// Origin `i`: 0 is the one Pushpin routes to first, then the others in
    /// the order of [`Stack::extra_web_ports`]. `None` while it is down.
    pub fn web_at(&mut self, i: usize) -> Option<&mut ManagedProcess> {
        match i {
            0 => self.web.as_mut(),
            i => self.extra_webs.get_mut(i - 1).map(|(_, web)| web),
        }
    }

    /// `kill -9` of origin `i`, as a crash would.
    pub fn kill_web_at(&mut self, i: usize) {
        if let Some(web) = self.web_at(i) {
            web.signal("CONT");
            web.kill_hard();
        }
        if i == 0 {
            self.web = None;
        }
    }

    /// Starts origin `i` again on its port, and waits only until it
    /// listens, not until it is ready: as a restart in production would be,
    /// while the database may still be recovering from a fault.
    pub async fn start_web_at_unready(&mut self, i: usize) -> anyhow::Result<()> {
        self.blocking(move |s| {
            let port = match i {
                0 => s.web_port,
                i => s.extra_webs[i - 1].0,
            };
            let mut web = s.spawn_web(port)?;
            web.wait_for_line(Duration::from_secs(20), |l| {
                l.contains("leaderboard-web listening on").then_some(())
            })?;
            match i {
                0 => s.web = Some(web),
                i => s.extra_webs[i - 1].1 = web,
            }
            Ok(())
        })
        .await
    }

    /// Starts origin `i` again on its port, and waits until it is ready.
    pub async fn start_web_at(&mut self, i: usize) -> anyhow::Result<()> {
        if i == 0 {
            return self.start_web().await;
        }
        self.blocking(move |s| {
            let port = s.extra_webs[i - 1].0;
            let mut web = s.spawn_web(port)?;
            Self::wait_web_ready(&mut web, port)?;
            s.extra_webs[i - 1].1 = web;
            Ok(())
        })
        .await
    }

    /// Pushpin `i`: 0 is [`Stack::pushpin`], then the extra ones.
    pub fn pushpin_at(&mut self, i: usize) -> &mut Pushpin {
        match i {
            0 => &mut self.pushpin,
            i => &mut self.extra_pushpins[i - 1],
        }
    }

    /// Restarts Pushpin `i` on the same ports (after a kill, or to cut its
    /// streams).
    pub async fn restart_pushpin_at(&mut self, i: usize) -> anyhow::Result<()> {
        let options = self.options.pushpin.clone();
        self.blocking(move |s| {
            let dir = match i {
                0 => s.dir.path().to_path_buf(),
                i => s.dir.path().join(format!("pushpin{}", i + 1)),
            };
            s.pushpin_at(i).restart(&dir, &options)
        })
        .await
    }

    /// The first worker's process; `None` while it is down.
    pub fn worker(&mut self) -> Option<&mut ManagedProcess> {
        self.worker.as_mut()
    }

    /// The first origin's process; `None` while it is down.
    pub fn web(&mut self) -> Option<&mut ManagedProcess> {
        self.web.as_mut()
    }

    /// Runs a blocking step (process start-up waits) off the async runtime.
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Self) -> anyhow::Result<T> + Send,
    ) -> anyhow::Result<T> {
        tokio::task::block_in_place(|| f(self))
    }
}

/// A worker started by [`Stack::add_worker`].
pub struct NamedWorker {
    /// The id it was given (its `WORKER_ID`).
    pub id: String,
    /// Its `dblistener` process.
    pub process: ManagedProcess,
    /// Where it serves its status (`STATUS_PORT`).
    pub status_port: u16,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_worker();
        for mut worker in self.workers.drain(..) {
            // A stopped worker (SIGSTOP) must be woken to die cleanly.
            worker.process.signal("CONT");
            worker.process.kill_hard();
        }
        self.stop_web();
        for (_, mut web) in self.extra_webs.drain(..) {
            web.stop(Duration::from_secs(30));
        }
        self.db.drop_database(&self.db_name);
    }
}
