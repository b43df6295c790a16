//! The fault machinery of the fault campaign on a real three-node cluster:
//! a node killed with `kill -9` starts again on its ports and rejoins, and
//! a node stopped with SIGSTOP is seen gone and comes back on SIGCONT.
//!
//! Needs a real `rethinkdb` (`RETHINKDB_BIN`, or on `PATH`); without one the
//! test says so in one line and passes, as CI has only the dev server.

use std::time::{Duration, Instant};

use reql_terms::r;
use testkit::{rethinkdb_binary, RethinkCluster, TempDir};

async fn servers_seen(cluster: &RethinkCluster, via: usize) -> Option<u64> {
    cluster
        .query(via, r.db("rethinkdb").table("server_status").count())
        .await
        .ok()
        .and_then(|v| v.first().and_then(|n| n.as_u64()))
}

async fn wait_seen(cluster: &RethinkCluster, via: usize, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = servers_seen(cluster, via).await;
        if seen == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node{via} sees {seen:?} servers, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_leaves_and_returns_and_a_killed_node_restarts_on_its_ports() {
    let Some(bin) = rethinkdb_binary() else {
        eprintln!("skipped: no real rethinkdb (set RETHINKDB_BIN or put rethinkdb on PATH)");
        return;
    };
    let dir = TempDir::new("links").unwrap();
    let mut cluster = RethinkCluster::start(&bin, dir.path(), 3).await.unwrap();
    cluster.nodes[2].process.signal("STOP");
    wait_seen(&cluster, 0, 2).await;
    cluster.nodes[2].process.signal("CONT");
    wait_seen(&cluster, 0, 3).await;
    wait_seen(&cluster, 2, 3).await;

    let port = cluster.nodes[1].driver_port;
    cluster.kill(1);
    wait_seen(&cluster, 0, 2).await;
    cluster.restart(1).await.unwrap();
    assert_eq!(cluster.nodes[1].driver_port, port);
    wait_seen(&cluster, 1, 3).await;
    wait_seen(&cluster, 0, 3).await;
}
