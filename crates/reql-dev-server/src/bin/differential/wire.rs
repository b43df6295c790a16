//! A bare driver connection: the V1_0 handshake, then raw query frames and
//! raw response frames. The fuzzer needs every field of every frame
//! (response type, notes, error type) and control over each CONTINUE and
//! STOP, which a driver hides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use reql_client::scram::ClientExchange;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

const V1_0: u32 = 0x34c2_bdc3;

type Routes = Arc<parking_lot::Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>>;

/// One connection; queries on it are told apart by their tokens.
pub struct Conn {
    writer: Mutex<OwnedWriteHalf>,
    routes: Routes,
    next_token: AtomicU64,
}

/// The frames that answer one token, in the order they came.
pub struct Answers {
    pub token: u64,
    rx: mpsc::UnboundedReceiver<Value>,
}

impl Answers {
    /// The next response frame, or `None` when none came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn read_message<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> anyhow::Result<Value> {
    let mut buf = Vec::new();
    r.read_until(0, &mut buf).await?;
    if buf.pop() != Some(0) {
        bail!("the server closed the connection during the handshake");
    }
    let value: Value = serde_json::from_slice(&buf)
        .with_context(|| format!("handshake: {}", String::from_utf8_lossy(&buf)))?;
    if value["success"] != json!(true) {
        bail!("handshake refused: {value}");
    }
    Ok(value)
}

fn auth(message: &Value) -> anyhow::Result<&str> {
    message["authentication"]
        .as_str()
        .context("handshake message without `authentication`")
}

impl Conn {
    /// Connects as `admin` with the empty password.
    pub async fn connect(port: u16) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connect to port {port}"))?;
        tcp.set_nodelay(true)?;
        let (read, mut write) = tcp.into_split();
        let mut read = BufReader::new(read);
        let mut exchange = ClientExchange::new("admin", "");
        let mut first = V1_0.to_le_bytes().to_vec();
        first.extend(
            json!({
                "protocol_version": 0,
                "authentication_method": "SCRAM-SHA-256",
                "authentication": exchange.client_first(),
            })
            .to_string()
            .into_bytes(),
        );
        first.push(0);
        write.write_all(&first).await?;
        read_message(&mut read).await?;
        let server_first = read_message(&mut read).await?;
        let client_final = exchange
            .client_final(auth(&server_first)?)
            .map_err(anyhow::Error::msg)?;
        let mut message = json!({ "authentication": client_final })
            .to_string()
            .into_bytes();
        message.push(0);
        write.write_all(&message).await?;
        let server_final = read_message(&mut read).await?;
        exchange
            .verify(auth(&server_final)?)
            .map_err(anyhow::Error::msg)?;

        let routes: Routes = Arc::default();
        tokio::spawn(read_loop(read, Arc::clone(&routes)));
        Ok(Conn {
            writer: Mutex::new(write),
            routes,
            next_token: AtomicU64::new(1),
        })
    }

    /// Sends START for `term` with `global_optargs`; the answers come on the
    /// returned channel.
    pub async fn start(&self, term: &Value, global_optargs: &Value) -> anyhow::Result<Answers> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.lock().insert(token, tx);
        self.send(token, &json!([1, term, global_optargs])).await?;
        Ok(Answers { token, rx })
    }

    /// CONTINUE on `token`.
    pub async fn continue_(&self, token: u64) -> anyhow::Result<()> {
        self.send(token, &json!([2])).await
    }

    /// STOP on `token`.
    pub async fn stop(&self, token: u64) -> anyhow::Result<()> {
        self.send(token, &json!([3])).await
    }

    /// Forgets a token whose answers are no longer wanted.
    pub fn forget(&self, token: u64) {
        self.routes.lock().remove(&token);
    }

    async fn send(&self, token: u64, query: &Value) -> anyhow::Result<()> {
        let body = query.to_string().into_bytes();
        let mut frame = Vec::with_capacity(12 + body.len());
        frame.extend_from_slice(&token.to_le_bytes());
        frame.extend_from_slice(&u32::try_from(body.len())?.to_le_bytes());
        frame.extend(body);
        let mut writer = self.writer.lock().await;
        writer.write_all(&frame).await?;
        Ok(())
    }
}

async fn read_loop<R: tokio::io::AsyncRead + Unpin>(mut reader: R, routes: Routes) {
    loop {
        let mut head = [0u8; 12];
        if reader.read_exact(&mut head).await.is_err() {
            break;
        }
        let token = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(head[8..].try_into().unwrap_or_default()) as usize;
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).await.is_err() {
            break;
        }
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!({ "unreadable": String::from_utf8_lossy(&body) }));
        if let Some(tx) = routes.lock().get(&token) {
            let _ = tx.send(value);
        }
    }
    // Every waiting query sees its channel close.
    routes.lock().clear();
}
