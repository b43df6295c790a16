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

use crate::{free_port, DbSession, ManagedProcess, NetProxy, Scope};

/// One node of a [`RethinkCluster`].
pub struct ClusterNode {
    /// Its server name: `node0`, `node1`, ...
    pub name: String,
    /// The `rethinkdb` process, to kill or stop.
    pub process: ManagedProcess,
    /// Where clients connect.
    pub driver_port: u16,
    /// Where it listens for its peers.
    pub cluster_port: u16,
}

/// The links between the nodes of a cluster started with
/// [`RethinkCluster::start_linked`]: a proxy in front of each node's
/// cluster port, which its peers know as its address, and the source port
/// of each node's own connections to its peers.
struct Links {
    proxies: Vec<NetProxy>,
    client_ports: Vec<u16>,
}

/// `n` RethinkDB nodes on loopback, every one after the first joined to the
/// first. Stopped (SIGKILL) when dropped.
pub struct RethinkCluster {
    /// The nodes, the first (which the others joined) first.
    pub nodes: Vec<ClusterNode>,
    bin: PathBuf,
    dir: PathBuf,
    links: Option<Links>,
}

/// How node `i` is started: the same each time it is restarted.
struct NodeSpec<'a> {
    bin: &'a Path,
    dir: &'a Path,
    i: usize,
    cluster_port: u16,
    /// `None`: the first start picks one, which later starts keep.
    driver_port: Option<u16>,
    /// The cluster port to join.
    join: Option<u16>,
    /// With links: the port its connections to its peers come from, and
    /// the address (its link's port) its peers reach it at.
    linked: Option<(u16, u16)>,
}

impl RethinkCluster {
    /// Starts `n` nodes from `bin` with their data under `dir`, and waits
    /// until every node sees all `n` servers.
    pub async fn start(bin: &Path, dir: &Path, n: usize) -> anyhow::Result<Self> {
        Self::start_with(bin, dir, n, None).await
    }

    /// As [`RethinkCluster::start`], with every link between two nodes
    /// through a proxy, so that a node can be cut off from its peers
    /// ([`RethinkCluster::partition`]) or reached late
    /// ([`RethinkCluster::slow_links`]) while clients still reach it.
    ///
    /// Each node's peers know it by its proxy's port
    /// (`--canonical-address`), and each node connects to its peers from a
    /// port of its own (`--client-port`), by which the proxies in front of
    /// its peers tell its connections apart.
    pub async fn start_linked(bin: &Path, dir: &Path, n: usize) -> anyhow::Result<Self> {
        let mut proxies = Vec::with_capacity(n);
        let mut cluster_ports = Vec::with_capacity(n);
        for _ in 0..n {
            let port = free_port();
            proxies.push(NetProxy::start_link(format!("127.0.0.1:{port}")).await?);
            cluster_ports.push(port);
        }
        let client_ports = (0..n).map(|_| free_port()).collect();
        let links = Links {
            proxies,
            client_ports,
        };
        Self::start_with(bin, dir, n, Some((links, cluster_ports))).await
    }

    async fn start_with(
        bin: &Path,
        dir: &Path,
        n: usize,
        links: Option<(Links, Vec<u16>)>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(n >= 1, "a cluster has at least one node");
        let (links, ports) = match links {
            Some((links, ports)) => (Some(links), ports),
            None => (None, (0..n).map(|_| free_port()).collect()),
        };
        let mut cluster = Self {
            nodes: Vec::with_capacity(n),
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            links,
        };
        for (i, port) in ports.into_iter().enumerate() {
            let node = cluster.spawn(i, port, None, (i > 0).then_some(0)).await?;
            cluster.nodes.push(node);
        }
        cluster.wait_formed(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Cuts node `i` off from its peers: nothing passes between them, and
    /// nothing is closed, as when a partition drops every packet. Clients
    /// still reach it. Needs [`RethinkCluster::start_linked`].
    pub fn partition(&self, i: usize) -> anyhow::Result<()> {
        let links = self.links.as_ref().context("the cluster has no links")?;
        for (j, proxy) in links.proxies.iter().enumerate() {
            proxy.stall(if j == i {
                Scope::Everyone
            } else {
                Scope::From(links.client_ports[i])
            });
        }
        Ok(())
    }

    /// Adds `delay` each way to every link between node `i` and its peers.
    /// Needs [`RethinkCluster::start_linked`].
    pub fn slow_links(&self, i: usize, delay: Duration) -> anyhow::Result<()> {
        let links = self.links.as_ref().context("the cluster has no links")?;
        for (j, proxy) in links.proxies.iter().enumerate() {
            let scope = if j == i {
                Scope::Everyone
            } else {
                Scope::From(links.client_ports[i])
            };
            proxy.slow(scope, delay);
        }
        Ok(())
    }

    /// Ends every partition and delay.
    pub fn heal_links(&self) {
        for proxy in self.links.iter().flat_map(|l| &l.proxies) {
            proxy.heal();
        }
    }

    /// Starts node `i` (joining node `join`), in a blocking task.
    async fn spawn(
        &self,
        i: usize,
        cluster_port: u16,
        driver_port: Option<u16>,
        join: Option<usize>,
    ) -> anyhow::Result<ClusterNode> {
        let (bin, dir) = (self.bin.clone(), self.dir.clone());
        // Peers are joined where they are known: at their link when linked.
        let address = |j: usize| match &self.links {
            Some(links) => Some(links.proxies[j].port()),
            None => self.nodes.get(j).map(|n| n.cluster_port),
        };
        let join = join.map(|j| address(j).unwrap_or(cluster_port));
        let linked = self
            .links
            .as_ref()
            .map(|l| (l.client_ports[i], l.proxies[i].port()));
        tokio::task::spawn_blocking(move || {
            start_node(&NodeSpec {
                bin: &bin,
                dir: &dir,
                i,
                cluster_port,
                driver_port,
                join,
                linked,
            })
        })
        .await?
    }

    /// Waits until every node sees every other.
    pub async fn wait_formed(&self, timeout: Duration) -> anyhow::Result<()> {
        let n = self.nodes.len();
        let deadline = Instant::now() + timeout;
        for i in 0..n {
            loop {
                let seen = self
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
        Ok(())
    }

    /// Starts node `i` again after [`RethinkCluster::kill`], on the same
    /// data and ports, so that `DATABASE_URL` still names it.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let (cluster_port, driver_port) = (self.nodes[i].cluster_port, self.nodes[i].driver_port);
        let join = (0..self.nodes.len()).find(|&j| j != i);
        let node = self.spawn(i, cluster_port, Some(driver_port), join).await?;
        self.nodes[i] = node;
        Ok(())
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

fn start_node(spec: &NodeSpec<'_>) -> anyhow::Result<ClusterNode> {
    let name = format!("node{}", spec.i);
    let mut cmd = Command::new(spec.bin);
    let driver_port = spec.driver_port.unwrap_or(0).to_string();
    cmd.arg("--directory")
        .arg(spec.dir.join(&name))
        .args(["--bind", "127.0.0.1", "--driver-port", &driver_port])
        .args(["--cluster-port", &spec.cluster_port.to_string()])
        .args(["--no-http-admin", "--no-update-check"])
        .args(["--cache-size", "128", "--server-name", &name]);
    if let Some(port) = spec.join {
        cmd.args(["--join", &format!("127.0.0.1:{port}")]);
    }
    if let Some((client_port, link)) = spec.linked {
        cmd.args(["--client-port", &client_port.to_string()])
            .args(["--canonical-address", &format!("127.0.0.1:{link}")]);
    }
    let mut process = ManagedProcess::spawn(&name, cmd, spec.dir)?;
    let driver_port = process.wait_for_line(Duration::from_secs(60), |line| {
        line.strip_prefix("Listening for client driver connections on port ")
            .and_then(|p| p.trim().parse::<u16>().ok())
    })?;
    Ok(ClusterNode {
        name,
        process,
        driver_port,
        cluster_port: spec.cluster_port,
    })
}

impl Drop for RethinkCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.process.kill_hard();
        }
    }
}
