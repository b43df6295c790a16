//! Helpers shared by the integration tests: an in-process server, the binary as
//! a child process, driver connections and a bare-bones raw protocol client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use reql_dev_server::{Config, Server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use unreql::cmd::connect::Options;
use unreql::r;

/// A server running inside the test process, stopped with [`InProcess::stop`].
pub struct InProcess {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl InProcess {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let server = Server::bind(Config { port: 0, ..config }).await?;
        let port = server.local_addr().port();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = server
                .run_until_stopped(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            port,
            stop: Some(tx),
            handle,
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.handle.await;
    }
}

pub async fn connect(port: u16) -> anyhow::Result<unreql::Session> {
    Ok(r.connect(Options::new().host("127.0.0.1").port(port))
        .await?)
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "reql-dev-server-{name}-{}-{nanos}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `reql-dev-server` binary as a child process.
pub struct Binary {
    pub child: Child,
    pub port: u16,
}

impl Binary {
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reql-dev-server"))
            .args(["--driver-port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn reql-dev-server")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("Listening for client driver connections on port ")
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(Self { child, port }),
            None => {
                let _ = child.kill();
                bail!("unexpected first line {line:?}")
            }
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that speaks the wire protocol directly (legacy V0_4 handshake with
/// an empty key), to send frames no driver would.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(port: u16) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut hello = Vec::new();
        hello.extend_from_slice(&0x400c_2d20u32.to_le_bytes());
        hello.extend_from_slice(&0u32.to_le_bytes());
        hello.extend_from_slice(&0x7e69_70c7u32.to_le_bytes());
        stream.write_all(&hello).await?;
        let mut reply = [0u8; 8];
        stream.read_exact(&mut reply).await?;
        if &reply != b"SUCCESS\0" {
            bail!("handshake failed: {reply:?}");
        }
        Ok(Self { stream })
    }

    pub async fn send_bytes(&mut self, token: u64, body: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(body.len() + 12);
        frame.extend_from_slice(&token.to_le_bytes());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    pub async fn send(&mut self, token: u64, query: &Value) -> anyhow::Result<()> {
        self.send_bytes(token, query.to_string().as_bytes()).await
    }

    pub async fn recv(&mut self) -> anyhow::Result<(u64, Value)> {
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut head))
            .await
            .context("no answer within 10s")??;
        let token = u64::from_le_bytes(head[..8].try_into()?);
        let len = u32::from_le_bytes(head[8..].try_into()?) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        Ok((token, serde_json::from_slice(&body)?))
    }

    pub async fn query(&mut self, token: u64, query: &Value) -> anyhow::Result<Value> {
        self.send(token, query).await?;
        let (t, v) = self.recv().await?;
        if t != token {
            bail!("answer for token {t}, expected {token}");
        }
        Ok(v)
    }
}
