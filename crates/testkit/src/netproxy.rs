use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP forwarder between the stack and its database that a test can cut
/// and restore: an outage that looks the same to the origin and the worker
/// whether the database is the dev server or a real RethinkDB.
///
/// While cut, open connections are closed and new ones are accepted and
/// closed at once, as a crashed server behind a live address would do.
pub struct NetProxy {
    port: u16,
    up: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl Drop for NetProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.up.send_replace(false);
    }
}

impl NetProxy {
    /// Listens on a loopback port and forwards to `target` (host:port).
    pub async fn start(target: String) -> anyhow::Result<Self> {
        // Port 0: the kernel picks a free port in the same call that binds
        // it, so no other listener can take it in between.
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let up_for_task = Arc::clone(&up);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = up_for_task.subscribe();
                if !*rx.borrow() {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Self { port, up, task })
    }

    /// The loopback port clients connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}
