use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A TCP forwarder between the stack and its database, or between two
/// database nodes, that a test can break in the ways a network breaks:
///
/// - [`NetProxy::cut`]: open connections are closed and new ones accepted
///   and closed at once, as a crashed server behind a live address would
///   do. It looks the same to the origin and the worker whether the
///   database is the dev server or a real RethinkDB.
/// - [`NetProxy::stall`]: nothing is forwarded, and nothing is closed, as
///   when a partition drops every packet: a connection hangs until its own
///   side gives up, and new connections are held, unanswered, until the
///   heal (as a SYN retried until it gets through).
/// - [`NetProxy::slow`]: every byte is forwarded that much later, both
///   ways.
///
/// A stall or a delay can apply to every connection, or only to those from
/// one source port: a RethinkDB node started with `--client-port` makes
/// every connection to its peers from that port, so the proxy in front of
/// a peer can tell its connections from the others'
/// (see [`crate::RethinkCluster::start_linked`]).
pub struct NetProxy {
    port: u16,
    rules: Arc<watch::Sender<Rules>>,
    task: JoinHandle<()>,
}

/// Which connections a rule applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    /// None.
    #[default]
    Nobody,
    /// Every connection.
    Everyone,
    /// Connections from this source port.
    From(u16),
}

impl Scope {
    fn covers(self, peer: u16) -> bool {
        match self {
            Scope::Nobody => false,
            Scope::Everyone => true,
            Scope::From(port) => port == peer,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Rules {
    down: bool,
    stall: Scope,
    slow: Scope,
    delay: Duration,
}

impl Rules {
    fn stalled(&self, peer: u16) -> bool {
        self.stall.covers(peer)
    }

    fn delay_for(&self, peer: u16) -> Duration {
        if self.slow.covers(peer) {
            self.delay
        } else {
            Duration::ZERO
        }
    }
}

impl Drop for NetProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.rules.send_modify(|r| r.down = true);
    }
}

impl NetProxy {
    /// Listens on a loopback port and forwards to `target` (host:port). A
    /// connection the server refuses is closed.
    pub async fn start(target: String) -> anyhow::Result<Self> {
        Self::listen(target, false).await
    }

    /// As [`NetProxy::start`], for a link between two RethinkDB nodes: a
    /// connection the server refuses (it is down) is held, unanswered, and
    /// forwarded once the server is back, as a connection attempt to a
    /// host that does not answer would hang. A RethinkDB node whose
    /// connection to a peer is accepted and then closed before the
    /// handshake takes the address for a wrong one, and once every address
    /// of a peer is wrong it crashes on its next attempt to reach it
    /// (`Guarantee failed: [peer.ips().size() > 0]`).
    pub async fn start_link(target: String) -> anyhow::Result<Self> {
        Self::listen(target, true).await
    }

    async fn listen(target: String, hold: bool) -> anyhow::Result<Self> {
        // Port 0: the kernel picks a free port in the same call that binds
        // it, so no other listener can take it in between.
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (rules, _) = watch::channel(Rules::default());
        let rules = Arc::new(rules);
        let rules_for_task = Arc::clone(&rules);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, from)) = listener.accept().await else {
                    continue;
                };
                let rx = rules_for_task.subscribe();
                if rx.borrow().down {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, from.port(), target.clone(), hold, rx));
            }
        });
        Ok(Self { port, rules, task })
    }

    /// The loopback port clients connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.rules.send_modify(|r| r.down = true);
    }

    /// Forwards again, after [`NetProxy::cut`].
    pub fn restore(&self) {
        self.rules.send_modify(|r| r.down = false);
    }

    /// Stops forwarding on the connections of `scope`, closing nothing.
    pub fn stall(&self, scope: Scope) {
        self.rules.send_modify(|r| r.stall = scope);
    }

    /// Forwards the connections of `scope` `delay` late, both ways.
    pub fn slow(&self, scope: Scope, delay: Duration) {
        self.rules.send_modify(|r| {
            r.slow = scope;
            r.delay = delay;
        });
    }

    /// Ends every stall and delay (not a cut: see [`NetProxy::restore`]).
    pub fn heal(&self) {
        self.rules.send_modify(|r| {
            r.stall = Scope::Nobody;
            r.slow = Scope::Nobody;
            r.delay = Duration::ZERO;
        });
    }
}

/// How long a link ([`NetProxy::start_link`]) holds a connection whose
/// server does not answer before it gives up on it.
const HOLD_MOST: Duration = Duration::from_secs(120);

/// Forwards one accepted connection until either side closes it or the
/// proxy is cut.
async fn forward(
    client: TcpStream,
    peer: u16,
    target: String,
    hold: bool,
    mut rules: watch::Receiver<Rules>,
) {
    let since = Instant::now();
    let server = loop {
        // A connection made during a stall waits, unanswered, for the heal
        // (a SYN retried until it gets through).
        match rules.wait_for(|r| r.down || !r.stalled(peer)).await {
            Ok(r) if !r.down => {}
            _ => return,
        }
        match TcpStream::connect(&target).await {
            Ok(server) if !rules.borrow().stalled(peer) => break server,
            Ok(_) => continue,
            Err(_) if hold && since.elapsed() < HOLD_MOST => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return,
        }
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, peer, rules.clone());
    let down = pump(server_read, client_write, peer, rules.clone());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = async { let _ = rules.wait_for(|r| r.down).await; } => {}
    }
}

/// Copies one direction of a connection, holding it while stalled and
/// delaying each chunk by the delay in force when it was read. Chunks keep
/// their order whatever the delays.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    peer: u16,
    rules: watch::Receiver<Rules>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut read_rules = rules.clone();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if read_rules.wait_for(|r| !r.stalled(peer)).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + read_rules.borrow().delay_for(peer);
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let mut write_rules = rules;
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // Read before a stall began: held until it ends, as the network
            // would have dropped it.
            if write_rules.wait_for(|r| !r.stalled(peer)).await.is_err() {
                return;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback, and its port.
    async fn echo() -> u16 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    /// A proxy in front of an echo server.
    async fn proxied_echo() -> NetProxy {
        NetProxy::start(format!("127.0.0.1:{}", echo().await))
            .await
            .unwrap()
    }

    async fn connect(proxy: &NetProxy) -> TcpStream {
        TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap()
    }

    /// Reads `n` bytes within 5 s.
    async fn read_soon(s: &mut TcpStream, n: usize, why: &str) -> Vec<u8> {
        let mut back = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .expect(why)
            .unwrap();
        back
    }

    async fn round_trip(s: &mut TcpStream, what: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(what).await?;
        let mut back = vec![0u8; what.len()];
        s.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn a_stall_holds_the_bytes_until_the_heal_and_closes_nothing() {
        let proxy = proxied_echo().await;
        let mut s = connect(&proxy).await;
        assert_eq!(round_trip(&mut s, b"one").await.unwrap(), b"one");
        proxy.stall(Scope::Everyone);
        let held = tokio::time::timeout(Duration::from_millis(300), round_trip(&mut s, b"two"));
        assert!(held.await.is_err(), "nothing gets through a stall");
        let mut new = connect(&proxy).await;
        new.write_all(b"n").await.unwrap();
        proxy.heal();
        let why = "a connection made during the stall is forwarded at the heal";
        assert_eq!(read_soon(&mut new, 1, why).await, b"n");
        let why = "the held bytes arrive after the heal";
        assert_eq!(read_soon(&mut s, 3, why).await, b"two");
    }

    #[tokio::test]
    async fn a_stall_from_one_port_spares_the_others() {
        let proxy = proxied_echo().await;
        let mut a = connect(&proxy).await;
        let mut b = connect(&proxy).await;
        proxy.stall(Scope::From(a.local_addr().unwrap().port()));
        let held = tokio::time::timeout(Duration::from_millis(300), round_trip(&mut a, b"a"));
        assert!(held.await.is_err(), "the stalled source gets nothing");
        assert_eq!(round_trip(&mut b, b"b").await.unwrap(), b"b");
    }

    #[tokio::test]
    async fn a_delay_slows_both_ways_and_keeps_the_order() {
        let proxy = proxied_echo().await;
        let mut s = connect(&proxy).await;
        proxy.slow(Scope::Everyone, Duration::from_millis(150));
        let t = std::time::Instant::now();
        assert_eq!(round_trip(&mut s, b"abc").await.unwrap(), b"abc");
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "delayed each way: {:?}",
            t.elapsed()
        );
        proxy.heal();
        for i in 0..50u8 {
            assert_eq!(round_trip(&mut s, &[i]).await.unwrap(), [i]);
        }
    }

    #[tokio::test]
    async fn a_link_holds_a_connection_until_its_server_is_back() {
        let port = {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let proxy = NetProxy::start_link(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let mut s = connect(&proxy).await;
        s.write_all(b"early").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The server starts on its port: the held connection reaches it.
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (mut server, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("forwarded once the server is up")
            .unwrap();
        let mut got = vec![0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"early");
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones() {
        let proxy = proxied_echo().await;
        let mut s = connect(&proxy).await;
        assert_eq!(round_trip(&mut s, b"x").await.unwrap(), b"x");
        proxy.cut();
        let closed = tokio::time::timeout(Duration::from_secs(5), round_trip(&mut s, b"y"));
        assert!(closed.await.unwrap().is_err(), "closed by the cut");
        proxy.restore();
        let mut again = connect(&proxy).await;
        assert_eq!(round_trip(&mut again, b"z").await.unwrap(), b"z");
    }
}
