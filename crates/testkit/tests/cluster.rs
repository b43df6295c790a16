//! A real three-node RethinkDB cluster on loopback: tables created with
//! `TABLE_REPLICAS`/`TABLE_SHARDS`, `reconfigure` changing them, and a
//! `DATABASE_URL` listing every node that keeps serving when the first node
//! stops. Needs a real `rethinkdb` (`RETHINKDB_BIN`, or on `PATH`); without
//! one the test says so in one line and passes, as CI has only the dev
//! server.

use std::time::{Duration, Instant};

use reql_terms::{r, term};
use store::{DatabaseUrl, NewBoard, PoolOptions, SchemaOptions, Store};
use testkit::{rethinkdb_binary, RethinkCluster, TempDir};

/// `[replicas per shard]` of each of the database's tables, by name.
async fn layout(cluster: &RethinkCluster, node: usize, db: &str) -> Vec<(String, Vec<usize>)> {
    let rows = cluster
        .query(
            node,
            r.db("rethinkdb")
                .table("table_config")
                .filter(term!({"db": db})),
        )
        .await
        .expect("table_config");
    let mut out: Vec<(String, Vec<usize>)> = rows
        .iter()
        .map(|row| {
            let shards = row["shards"].as_array().cloned().unwrap_or_default();
            let replicas = shards
                .iter()
                .map(|s| s["replicas"].as_array().map_or(0, Vec::len))
                .collect();
            (
                row["name"].as_str().unwrap_or_default().to_owned(),
                replicas,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_is_laid_out_reconfigured_and_survives_its_first_host() {
    let Some(bin) = rethinkdb_binary() else {
        eprintln!("skipped: no real rethinkdb (set RETHINKDB_BIN or put rethinkdb on PATH)");
        return;
    };
    let dir = TempDir::new("cluster").expect("scratch directory");
    let mut cluster = RethinkCluster::start(&bin, dir.path(), 3)
        .await
        .expect("a three-node cluster");
    let url = DatabaseUrl::parse(&format!("{}/cluster_lb", cluster.base_url())).expect("url");
    let store = Store::new(
        url.clone(),
        PoolOptions {
            schema: SchemaOptions {
                replicas: 3,
                shards: 1,
            },
            ..PoolOptions::default()
        },
    );
    store.ensure_schema().await.expect("schema");
    let db = "cluster_lb";
    assert_eq!(
        layout(&cluster, 1, db).await,
        [
            ("boards".to_owned(), vec![3]),
            ("leases".to_owned(), vec![3]),
            ("periods".to_owned(), vec![3]),
            ("players".to_owned(), vec![3]),
            ("ranks".to_owned(), vec![3])
        ],
        "created with TABLE_REPLICAS=3"
    );

    // A second start with other settings leaves the layout alone.
    let other = Store::new(url.clone(), PoolOptions::default());
    other.ensure_schema().await.expect("schema again");
    assert_eq!(layout(&cluster, 1, db).await[0].1, vec![3]);

    // reconfigure: three replicas of two shards each.
    let answers = other
        .reconfigure(SchemaOptions {
            replicas: 3,
            shards: 2,
        })
        .await
        .expect("reconfigure");
    assert_eq!(answers.len(), 5, "{answers:?}");
    assert!(
        answers.iter().all(|a| a["reconfigured"] == 1),
        "{answers:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = layout(&cluster, 2, db).await;
        if now
            == [
                ("boards".to_owned(), vec![3, 3]),
                ("leases".to_owned(), vec![3, 3]),
                ("periods".to_owned(), vec![3, 3]),
                ("players".to_owned(), vec![3, 3]),
                ("ranks".to_owned(), vec![3, 3]),
            ]
        {
            break;
        }
        assert!(Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store
        .ensure_schema()
        .await
        .expect("ready after reconfiguring");

    // The first host in the URL stops: a majority of replicas remains, and
    // the store reaches it through the other hosts.
    cluster.nodes[0].process.stop(Duration::from_secs(10));
    let fresh = Store::new(url, PoolOptions::default());
    // The shards whose primary was on that node elect another one first (a
    // few seconds on 2.4.4), so the first write may wait for that.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = 0;
    while written < 5 {
        match fresh
            .create_board(NewBoard {
                id: None,
                name: None,
                rules: domain::Rules::default(),
            })
            .await
        {
            Ok(_) => written += 1,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write after the failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    // A read may also meet a shard whose new primary is still being elected.
    let ids = loop {
        match fresh.all_board_ids().await {
            Ok(ids) => break ids,
            Err(e) => {
                assert!(Instant::now() < deadline, "no read after the failover: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(ids.len(), 5);
}
