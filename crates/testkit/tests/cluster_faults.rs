//! The fault machinery of the fault campaign on a real three-node cluster:
//! a node killed with `kill -9` starts again on its ports and rejoins, a
//! node stopped with SIGSTOP is seen gone and comes back on SIGCONT, and on
//! a cluster whose links pass through proxies a node cut off from its peers
//! is seen gone by them while it still answers clients, and rejoins at the
//! heal, also after a restart.
//!
//! Needs a real `rethinkdb` (`RETHINKDB_BIN`, or on `PATH`); without one the
//! test says so in one line and passes, as CI has only the dev server.

use std::time::{Duration, Instant};

use reql_terms::{r, term};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_cut_off_from_its_peers_and_rejoins_at_the_heal() {
    let Some(bin) = rethinkdb_binary() else {
        eprintln!("skipped: no real rethinkdb (set RETHINKDB_BIN or put rethinkdb on PATH)");
        return;
    };
    let dir = TempDir::new("partition").unwrap();
    let mut cluster = RethinkCluster::start_linked(&bin, dir.path(), 3)
        .await
        .unwrap();
    cluster
        .query(0, r.db_create("p"))
        .await
        .expect("a database");
    cluster
        .query(0, r.db("p").table_create("t").opt("replicas", 3))
        .await
        .expect("a table on every node");
    cluster
        .query(0, r.db("p").table("t").wait())
        .await
        .expect("ready");

    cluster.partition(2).unwrap();
    wait_seen(&cluster, 0, 2).await;
    wait_seen(&cluster, 1, 2).await;
    wait_seen(&cluster, 2, 1).await;
    // Cut off, node2 still answers its clients, but cannot write with no
    // majority.
    let write = cluster
        .query(2, r.db("p").table("t").insert(term!({"id": "x"})))
        .await;
    assert!(write.is_err(), "a write on the minority side: {write:?}");
    // The majority writes, once it has a primary (node2 may have been
    // the primary, and the majority elects another).
    write_within_a_minute(&cluster, "y", "no write on the majority side").await;
    cluster.heal_links();
    wait_seen(&cluster, 2, 3).await;
    wait_seen(&cluster, 0, 3).await;

    // A delay on a node's links slows it and breaks nothing. Right after
    // the heal the primary may still be moving back to node2 ("The primary
    // replica is currently changing"), so the write is retried as a client
    // would.
    cluster.slow_links(1, Duration::from_millis(100)).unwrap();
    write_within_a_minute(&cluster, "z", "no write while node1's links are slow").await;
    cluster.heal_links();

    // A killed node restarts with its links, and can be cut off again.
    cluster.kill(1);
    wait_seen(&cluster, 0, 2).await;
    cluster.restart(1).await.unwrap();
    wait_seen(&cluster, 1, 3).await;
    cluster.partition(1).unwrap();
    wait_seen(&cluster, 0, 2).await;
    cluster.heal_links();
    wait_seen(&cluster, 0, 3).await;
}

/// Inserts `{id}` through node0, retrying every half second while the
/// cluster answers with an error (no primary yet, or one changing); fails
/// with `what` and the last error after a minute.
async fn write_within_a_minute(cluster: &RethinkCluster, id: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = cluster
        .query(0, r.db("p").table("t").insert(term!({ "id": id })))
        .await
    {
        assert!(Instant::now() < deadline, "{what}: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
