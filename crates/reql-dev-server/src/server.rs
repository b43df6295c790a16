//! Server lifecycle: open the store, bind the driver port, accept connections
//! until told to stop, then flush the log.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::error::ServerError;
use crate::eval::{admin_compiler, Shared};
use crate::storage::Store;
use crate::wire::Auth;

/// The default of [`Config::table_create_window`]: on RethinkDB 2.4.4 (one
/// node, loopback), two `tableCreate`s of one name sent 10 ms apart both
/// succeeded, and 12 ms or more apart the second was refused.
pub const DEFAULT_TABLE_CREATE_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

/// How to run a server; the defaults match `rethinkdb` with no flags, except that
/// data is kept in memory unless `directory` is set.
#[derive(Clone)]
pub struct Config {
    /// The address to listen on: loopback by default, `0.0.0.0` for every
    /// interface.
    pub bind: IpAddr,
    /// 0 picks a free port; `Server::local_addr` tells which.
    pub port: u16,
    /// Where to keep data. Without it, everything is lost when the server stops.
    pub directory: Option<PathBuf>,
    /// Password of the `admin` user (empty by default, as on a new RethinkDB).
    pub initial_password: Option<String>,
    /// The name SERVER_INFO and `config()` report.
    pub server_name: String,
    /// Log size (bytes) after which the data directory is compacted into a
    /// snapshot.
    pub compact_log_bytes: u64,
    /// How long a `tableCreate` takes to become visible to a concurrent
    /// creation of the same name. Within it both succeed and the database holds
    /// two tables of that name, as on RethinkDB 2.4.4; zero turns the hazard off.
    pub table_create_window: std::time::Duration,
    /// TLS on the driver port (see [`crate::tls_config`]); plain TCP without.
    pub tls: Option<crate::DriverTls>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 28015,
            directory: None,
            initial_password: None,
            server_name: "reql_dev_server".into(),
            compact_log_bytes: crate::storage::wal::DEFAULT_COMPACT_BYTES,
            table_create_window: DEFAULT_TABLE_CREATE_WINDOW,
            tls: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("directory", &self.directory)
            .field(
                "initial_password",
                &self.initial_password.as_ref().map(|_| "<hidden>"),
            )
            .field("server_name", &self.server_name)
            .field("compact_log_bytes", &self.compact_log_bytes)
            .field("table_create_window", &self.table_create_window)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    auth: Arc<Auth>,
    tls: Option<(tokio_rustls::TlsAcceptor, bool)>,
}

fn server_id(dir: Option<&std::path::Path>) -> Uuid {
    let Some(dir) = dir else {
        return Uuid::new_v4();
    };
    let path = dir.join("server_id");
    if let Some(id) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
    {
        return id;
    }
    let id = Uuid::new_v4();
    if let Err(e) = std::fs::write(&path, id.to_string()) {
        log::warn!("cannot record the server id in {}: {e}", path.display());
    }
    id
}

impl Server {
    /// Opens (or creates) the data directory, replays it, and binds the port.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let dir = config.directory.clone();
        let compact = config.compact_log_bytes;
        let store = tokio::task::spawn_blocking(move || {
            Store::open(dir.as_deref(), admin_compiler(), compact)
        })
        .await
        .map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))??;
        let id = server_id(config.directory.as_deref());
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let password = config.initial_password.clone().unwrap_or_default();
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                store,
                server_id: id,
                server_name: config.server_name,
                table_create_window: config.table_create_window,
            }),
            auth: Arc::new(Auth::new(&password)),
            tls: config.tls.map(|t| {
                (
                    tokio_rustls::TlsAcceptor::from(t.config),
                    t.client_certificates,
                )
            }),
        })
    }

    /// The address the driver port is bound to, with the port picked when
    /// [`Config::port`] was 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }

    /// Serves clients until `shutdown` completes, then closes every connection and
    /// flushes the log.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        log::debug!("connection from {peer}");
                        let _ = stream.set_nodelay(true);
                        let (shared, auth) = (self.shared.clone(), self.auth.clone());
                        match &self.tls {
                            None => {
                                connections.spawn(crate::protocol::serve(stream, shared, auth));
                            }
                            Some((acceptor, client_certificates)) => {
                                let accept = acceptor.accept(stream);
                                let client_certificates = *client_certificates;
                                connections.spawn(async move {
                                    match accept.await {
                                        Ok(stream)
                                            if client_certificates
                                                && stream.get_ref().1.handshake_kind()
                                                    == Some(rustls::HandshakeKind::Resumed) =>
                                        {
                                            log::info!(
                                                "TLS handshake with {peer} failed: a resumed session, where client certificates are required (RethinkDB 2.4.4 answers internal_error)"
                                            );
                                        }
                                        Ok(stream) => crate::protocol::serve(stream, shared, auth).await,
                                        // As RethinkDB, the server logs a refused
                                        // client and goes on.
                                        Err(e) => log::info!("TLS handshake with {peer} failed: {e}"),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        // Usually a transient lack of file descriptors; keep serving.
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
        let store = self.shared.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        Ok(())
    }
}
