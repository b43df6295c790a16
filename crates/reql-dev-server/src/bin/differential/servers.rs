//! The two servers under comparison, when the fuzzer starts them itself:
//! the dev server in this process, a real RethinkDB as a child process in
//! a directory of its own that goes when it stops.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Keeps the in-process dev server running until dropped.
pub struct DevServer {
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start_dev() -> anyhow::Result<(DevServer, u16)> {
    let server = reql_dev_server::Server::bind(reql_dev_server::Config {
        port: 0,
        ..Default::default()
    })
    .await?;
    let port = server.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Ok((DevServer { _stop: stop }, port))
}

/// A real RethinkDB, killed when dropped.
pub struct RealServer {
    pub port: u16,
    _child: Child,
    dir: PathBuf,
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl RealServer {
    /// Starts `binary`, else `$RETHINKDB_BIN`, else `rethinkdb` on PATH.
    pub async fn start(binary: Option<PathBuf>) -> anyhow::Result<RealServer> {
        let binary = binary
            .or_else(|| std::env::var_os("RETHINKDB_BIN").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("rethinkdb"));
        let dir = std::env::temp_dir().join(format!("differential-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let mut child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--no-http-admin", "--driver-port"])
            .arg(port.to_string())
            .arg("--cluster-port")
            .arg(free_port()?.to_string())
            .arg("--directory")
            .arg(dir.join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("Server ready") {
                    return Ok(());
                }
            }
            bail!("{} exited before it was ready", binary.display())
        };
        tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .context("RethinkDB not ready within 60 s")??;
        // The rest of its output is not needed, but the pipe must not fill.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(RealServer {
            port,
            _child: child,
            dir,
        })
    }
}
