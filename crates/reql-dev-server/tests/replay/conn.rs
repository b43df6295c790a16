//! One driver connection as the replay drives it: the V1_0 handshake with
//! SCRAM-SHA-256 done by hand (so its messages can be compared), then raw
//! frames. A reader task files every response under its token; the replay
//! takes them out one by one, with a timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use reql_client::scram;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};

use super::compare::truthy;
use super::ordered::{dumps, Json, FRAME, PYTHON_DEFAULT};

/// The V1_0 magic number, little-endian.
pub const MAGIC_V1_0: [u8; 4] = 0x34c2_bdc3u32.to_le_bytes();

/// Why no response was taken.
#[derive(Debug)]
pub enum RecvError {
    Timeout,
    Closed(String),
}

/// Responses by token, tokens in the order they first answered; and
/// whether the server has closed the connection.
type Frames = (Vec<(u64, VecDeque<Value>)>, bool);

#[derive(Default)]
struct Inbox {
    frames: parking_lot::Mutex<Frames>,
    changed: Notify,
}

/// A connection to the server under test.
pub struct Conn {
    reader: Option<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    inbox: Arc<Inbox>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Conn {
    /// A TCP connection, not yet shaken hands.
    pub async fn tcp(addr: &str, wait: Duration) -> Result<Conn, String> {
        let stream = timeout(wait, TcpStream::connect(addr))
            .await
            .map_err(|_| "TimeoutError: connecting".to_owned())?
            .map_err(|e| format!("{}: {e}", kind(&e)))?;
        let (reader, writer) = stream.into_split();
        Ok(Conn {
            reader: Some(reader),
            writer,
            buf: Vec::new(),
            inbox: Arc::default(),
            task: None,
        })
    }

    /// A connection that has shaken hands, with its reader task running.
    pub async fn open(
        addr: &str,
        user: &str,
        password: &str,
        wait: Duration,
    ) -> Result<Conn, String> {
        let mut c = Conn::tcp(addr, wait).await?;
        let msgs = c.scram(user, password, wait).await?;
        if let Some(bad) = msgs.iter().find(|m| !success(m)) {
            return Err(format!("handshake failed: {bad}"));
        }
        let reader = c.reader.take().ok_or("no reader")?;
        let buf = std::mem::take(&mut c.buf);
        c.task = Some(tokio::spawn(read_loop(reader, buf, c.inbox.clone())));
        Ok(c)
    }

    async fn fill(&mut self, wait: Option<Duration>) -> Result<(), String> {
        let reader = self.reader.as_mut().ok_or("reader taken")?;
        let mut chunk = vec![0u8; 65536];
        let read = reader.read(&mut chunk);
        let n = match wait {
            Some(w) => timeout(w, read)
                .await
                .map_err(|_| "TimeoutError".to_owned())?,
            None => read.await,
        }
        .map_err(|e| format!("{}: {e}", kind(&e)))?;
        if n == 0 {
            return Err("EOFError: connection closed by server".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next NUL-terminated message, without its NUL.
    pub async fn read_nul(&mut self, wait: Duration) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == 0) {
                let msg = self.buf[..i].to_vec();
                self.buf.drain(..=i);
                return Ok(msg);
            }
            self.fill(Some(wait)).await?;
        }
    }

    /// The next NUL-terminated message, as JSON.
    pub async fn read_json(&mut self, wait: Duration) -> Result<Value, String> {
        let msg = self.read_nul(wait).await?;
        serde_json::from_slice(&msg).map_err(|e| format!("JSONDecodeError: {e}"))
    }

    /// Exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize, wait: Duration) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill(Some(wait)).await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// What one read returns (empty once the server has closed), and any
    /// bytes already buffered before it.
    pub async fn read_some(&mut self, wait: Duration) -> Result<Vec<u8>, String> {
        let mut out = std::mem::take(&mut self.buf);
        match self.fill(Some(wait)).await {
            Ok(()) => out.append(&mut self.buf),
            Err(e) if e.starts_with("EOFError") => {}
            Err(e) => return Err(e),
        }
        Ok(out)
    }

    /// Writes bytes as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|e| format!("{}: {e}", kind(&e)))
    }

    /// Runs the V1_0 handshake; the server's messages, in order. It stops at
    /// the first message without `success`.
    pub async fn scram(
        &mut self,
        user: &str,
        password: &str,
        wait: Duration,
    ) -> Result<Vec<Value>, String> {
        let mut got = Vec::new();
        let nonce = scram::nonce();
        let first_bare = format!("n={},r={nonce}", scram::escape_user(user));
        let first = Json::Object(vec![
            ("protocol_version".into(), Json::Int("0".into())),
            (
                "authentication_method".into(),
                Json::String("SCRAM-SHA-256".into()),
            ),
            (
                "authentication".into(),
                Json::String(format!("n,,{first_bare}")),
            ),
        ]);
        let mut frame = MAGIC_V1_0.to_vec();
        frame.extend_from_slice(dumps(&first, PYTHON_DEFAULT).as_bytes());
        frame.push(0);
        self.write_raw(&frame).await?;
        for _ in 0..2 {
            let m = self.read_json(wait).await?;
            let ok = success(&m);
            got.push(m);
            if !ok {
                return Ok(got);
            }
        }
        let server_first = got[1]
            .get("authentication")
            .and_then(Value::as_str)
            .ok_or("KeyError: 'authentication'")?
            .to_owned();
        let attrs = scram::attributes(&server_first);
        let attr = |k: char| scram::attribute(&attrs, k).ok_or(format!("KeyError: '{k}'"));
        let salt = B64
            .decode(attr('s')?)
            .map_err(|e| format!("binascii.Error: {e}"))?;
        let iterations: u32 = attr('i')?.parse().map_err(|e| format!("ValueError: {e}"))?;
        let salted = scram::salted_password(password, &salt, iterations);
        let client_key = scram::client_key(&salted);
        let stored_key = scram::sha256(&client_key);
        let final_without_proof = format!("c=biws,r={}", attr('r')?);
        let auth_message = format!("{first_bare},{server_first},{final_without_proof}");
        let signature = scram::hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let last = Json::Object(vec![(
            "authentication".into(),
            Json::String(format!("{final_without_proof},p={}", B64.encode(proof))),
        )]);
        let mut frame = dumps(&last, PYTHON_DEFAULT).into_bytes();
        frame.push(0);
        self.write_raw(&frame).await?;
        let m = self.read_json(wait).await?;
        if success(&m) {
            let server_key = scram::server_key(&salted);
            let want = B64.encode(scram::hmac(&server_key, auth_message.as_bytes()));
            if m.get("authentication").and_then(Value::as_str) != Some(&format!("v={want}")) {
                return Err("ProtocolError: server signature mismatch".into());
            }
        }
        got.push(m);
        Ok(got)
    }

    /// Sends one query frame: the payload as compact JSON, or its bytes
    /// when it is `{"$hex": ...}`.
    pub async fn send(&mut self, token: u64, payload: &Json) -> Result<(), String> {
        let data = match payload.get("$hex") {
            Some(Json::String(hex)) => decode_hex(hex)?,
            _ => dumps(payload, FRAME).into_bytes(),
        };
        let mut frame = Vec::with_capacity(12 + data.len());
        frame.extend_from_slice(&token.to_le_bytes());
        frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
        frame.extend_from_slice(&data);
        self.write_raw(&frame).await
    }

    /// The next response to `token`.
    pub async fn recv(&self, token: u64, wait: Duration) -> Result<Value, RecvError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.inbox.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut guard = self.inbox.frames.lock();
                let (frames, closed) = &mut *guard;
                if let Some(v) = frames
                    .iter_mut()
                    .find(|(t, _)| *t == token)
                    .and_then(|(_, q)| q.pop_front())
                {
                    return Ok(v);
                }
                if *closed {
                    return Err(RecvError::Closed("connection closed by server".into()));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            let _ = timeout(deadline - now, notified).await;
        }
    }

    /// Responses received and not taken, by token.
    pub fn pending(&self) -> Vec<(u64, Vec<Value>)> {
        self.inbox
            .frames
            .lock()
            .0
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(t, q)| (*t, q.iter().cloned().collect()))
            .collect()
    }

    /// Closes the connection and stops its reader.
    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(2), self.writer.shutdown()).await;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Whether a handshake message says `success` (truthy, as Python reads it).
fn success(m: &Value) -> bool {
    m.get("success").is_some_and(truthy)
}

fn kind(e: &std::io::Error) -> String {
    format!("{:?}", e.kind())
}

/// Bytes from their hex text.
pub fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    if hex.len() % 2 != 0 {
        return Err(format!("odd-length hex: {hex}"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| format!("{hex}: {e}")))
        .collect()
}

async fn read_loop(mut reader: OwnedReadHalf, mut buf: Vec<u8>, inbox: Arc<Inbox>) {
    let mut chunk = vec![0u8; 65536];
    'frames: loop {
        while buf.len() < 12 {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break 'frames,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let token = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(buf[8..12].try_into().unwrap_or_default()) as usize;
        while buf.len() < 12 + len {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break 'frames,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..12 + len).skip(12).collect();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::json!({"$unparsed": String::from_utf8_lossy(&body)}));
        {
            let mut guard = inbox.frames.lock();
            match guard.0.iter_mut().find(|(t, _)| *t == token) {
                Some((_, q)) => q.push_back(value),
                None => guard.0.push((token, VecDeque::from([value]))),
            }
        }
        inbox.changed.notify_waiters();
    }
    inbox.frames.lock().1 = true;
    inbox.changed.notify_waiters();
}
