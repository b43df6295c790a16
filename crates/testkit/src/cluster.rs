//! A real RethinkDB cluster on loopback: several `rethinkdb` processes
//! joined with `--join`, for the tests and benchmarks that need replicas and
//! a node to lose. It needs a real server binary ([`crate::rethinkdb_binary`]);
//! CI has none, so its users skip with one line when there is none.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use reql_terms::{r, term, Term};
use serde_json::Value;

use crate::{free_port, DbSession, ManagedProcess};

/// One node of a [`RethinkCluster`].
pub struct ClusterNode {
    /// Its server name: `node0`, `node1`, ...
    pub name: String,
    pub process: ManagedProcess,
    pub driver_port: u16,
}

/// `n` RethinkDB nodes on loopback, every one after the first joined to the
/// first. Stopped (SIGKILL) when dropped.
pub struct RethinkCluster {
    pub nodes: Vec<ClusterNode>,
}

impl RethinkCluster {
    /// Starts `n` nodes from `bin` with their data under `dir`, and waits
    /// until every node sees all `n` servers.
    pub async fn start(bin: &Path, dir: &Path, n: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(n >= 1, "a cluster has at least one node");
        let first_cluster_port = free_port();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let join = (i > 0).then_some(first_cluster_port);
            let cluster_port = if i == 0 {
                first_cluster_port
            } else {
                free_port()
            };
            let (bin, dir) = (bin.to_path_buf(), dir.to_path_buf());
            let node =
                tokio::task::spawn_blocking(move || start_node(&bin, &dir, i, cluster_port, join))
                    .await??;
            nodes.push(node);
        }
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..n {
            loop {
                let seen = cluster
                    .query(i, r.db("rethinkdb").table("server_status").count())
                    .await
                    .ok()
                    .and_then(|v| v.first().and_then(Value::as_u64));
                if seen == Some(n as u64) {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the nodes did not form a cluster (node{i} sees {seen:?} of {n})"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(cluster)
    }

    /// `host:port` of every node's driver port, in node order.
    pub fn hosts(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.driver_port))
            .collect()
    }

    /// `rethinkdb://admin@h1,h2,h3`: every node, no database.
    pub fn base_url(&self) -> String {
        format!("rethinkdb://admin@{}", self.hosts().join(","))
    }

    /// A driver session to node `i`.
    pub async fn session(&self, i: usize) -> anyhow::Result<DbSession> {
        DbSession::connect("127.0.0.1", self.nodes[i].driver_port, "admin", "", None).await
    }

    /// Runs `q` on a connection of its own to node `i`.
    pub async fn query(&self, i: usize, q: Term) -> anyhow::Result<Vec<Value>> {
        let session = self.session(i).await?;
        Ok(session.run(&q).await?)
    }

    /// The index of the node that is the primary replica of the first
    /// shard of `db.table`, asked of node `via`.
    pub async fn primary_of(&self, via: usize, db: &str, table: &str) -> anyhow::Result<usize> {
        let rows = self
            .query(
                via,
                r.db("rethinkdb")
                    .table("table_status")
                    .filter(term!({"db": db, "name": table})),
            )
            .await?;
        let name = rows
            .first()
            .and_then(|row| row["shards"][0]["primary_replicas"][0].as_str())
            .with_context(|| format!("no primary for {db}.{table}: {rows:?}"))?
            .to_owned();
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .with_context(|| format!("primary {name} is not one of this cluster's nodes"))
    }

    /// `kill -9` of node `i`, as a machine loss would.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].process.kill_hard();
    }
}

fn start_node(
    bin: &PathBuf,
    dir: &Path,
    i: usize,
    cluster_port: u16,
    join: Option<u16>,
) -> anyhow::Result<ClusterNode> {
    let name = format!("node{i}");
    let mut cmd = Command::new(bin);
    cmd.arg("--directory")
        .arg(dir.join(&name))
        .args(["--bind", "127.0.0.1", "--driver-port", "0"])
        .args(["--cluster-port", &cluster_port.to_string()])
        .args(["--no-http-admin", "--no-update-check"])
        .args(["--cache-size", "128", "--server-name", &name]);
    if let Some(port) = join {
        cmd.args(["--join", &format!("127.0.0.1:{port}")]);
    }
    let mut process = ManagedProcess::spawn(&name, cmd, dir)?;
    let driver_port = process.wait_for_line(Duration::from_secs(60), |line| {
        line.strip_prefix("Listening for client driver connections on port ")
            .and_then(|p| p.trim().parse::<u16>().ok())
    })?;
    Ok(ClusterNode {
        name,
        process,
        driver_port,
    })
}

impl Drop for RethinkCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.process.kill_hard();
        }
    }
}
