//! A `DATABASE_URL` listing several hosts, with the first one down: the store
//! still answers, and its changefeeds open, through the hosts that answer.

use std::time::Duration;

use futures::StreamExt;
use store::{BoardChange, DatabaseUrl, PoolOptions, Store};

/// A dev server on a free port, stopped when dropped.
struct DevServer {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl DevServer {
    async fn start() -> Self {
        let server = reql_dev_server::Server::bind(reql_dev_server::Config {
            port: 0,
            ..Default::default()
        })
        .await
        .expect("bind the dev server");
        let port = server.local_addr().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            port,
            stop: Some(stop),
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn the_store_serves_while_the_first_host_is_down() {
    let (a, b) = (DevServer::start().await, DevServer::start().await);
    let url = DatabaseUrl::parse(&format!(
        "rethinkdb://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/multi",
        closed_port(),
        a.port,
        b.port
    ))
    .expect("url");
    assert_eq!(url.hosts.len(), 3);
    let store = Store::new(
        url,
        PoolOptions {
            connect_timeout: Duration::from_secs(2),
            ..PoolOptions::default()
        },
    );
    // Two dev servers are not a cluster, so each gets the schema by itself
    // (through the multi-host store, whichever host it reaches, too).
    for port in [a.port, b.port] {
        let one = DatabaseUrl::parse(&format!("rethinkdb://127.0.0.1:{port}/multi")).expect("url");
        Store::new(one, PoolOptions::default())
            .ensure_schema()
            .await
            .expect("schema");
    }
    store
        .ensure_schema()
        .await
        .expect("schema through a live host");
    for _ in 0..8 {
        store.ping().await.expect("every query finds a live host");
    }

    let mut changes = store.board_changes().await.expect("feeds open");
    let ready = tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("the feeds get ready");
    assert!(matches!(ready, Some(Ok(BoardChange::Ready))), "{ready:?}");
    drop(changes);
}
