//! A minimal HTTP/1.1 keep-alive client for load generation.
//!
//! The load generator shares two cores with Pushpin, the origin, the worker
//! and the database, so every microsecond it spends is taken from what it
//! measures. Requests are rendered to bytes once and written as they are; an
//! answer is parsed just far enough to find its status and body (with
//! `Content-Length` or chunked framing). One connection carries one request
//! at a time, as a browser's or a game server's would.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request rendered once, sent many times.
#[derive(Debug, Clone)]
pub struct Request {
    bytes: Vec<u8>,
    /// Whether sending it twice means the same as sending it once (RFC 9110
    /// §9.2.2), which makes a blind resend safe.
    idempotent: bool,
}

impl Request {
    /// Renders `method path` for `127.0.0.1:port`, with `headers` and `body`
    /// (a `Content-Length` is added when there is a body or the method is
    /// POST).
    pub fn new(method: &str, port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(body);
        Self {
            bytes,
            idempotent: matches!(
                method,
                "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
            ),
        }
    }

    /// A JSON `POST`.
    pub fn post_json(port: u16, path: &str, body: &str) -> Self {
        Self::new(
            "POST",
            port,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// A `GET` asking for JSON.
    pub fn get_json(port: u16, path: &str) -> Self {
        Self::new("GET", port, path, &[("Accept", "application/json")], b"")
    }
}

/// An answer: its status and its body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body's bytes, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection. It reconnects by itself when the server closed
/// the previous one (`Connection: close`, or the origin's idle time-out
/// between two measurements).
pub struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Whether any byte of the current answer has arrived.
    answered: bool,
}

impl Connection {
    /// A connection to `127.0.0.1:port`, opened on first use.
    pub fn new(port: u16) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
            answered: false,
        }
    }

    /// Opens the TCP connection now, so that the first measured request does
    /// not pay for it.
    pub async fn connect(port: u16) -> anyhow::Result<Self> {
        let mut conn = Self::new(port);
        conn.stream().await?;
        Ok(conn)
    }

    async fn stream(&mut self) -> anyhow::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect to {}", self.addr))?;
            // Requests are written in one piece; Nagle would only delay them.
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        Ok(self.stream.as_mut().expect("just set"))
    }

    /// Sends `request` and reads the whole answer.
    ///
    /// A failed request is resent once, on a new connection, only when it
    /// went out on a reused connection, nothing of its answer arrived, and
    /// its method is idempotent. A `POST` that reached the server before the
    /// connection broke may have been applied (a score-add would then count
    /// twice), so its failure is reported instead.
    pub async fn send(&mut self, request: &Request) -> anyhow::Result<Response> {
        self.drop_if_closed();
        let reused = self.stream.is_some();
        match self.exchange(request).await {
            Ok(response) => Ok(response),
            Err(_) if reused && !self.answered && request.idempotent => {
                self.stream = None;
                self.exchange(request).await
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets the connection if the server has closed it since the last
    /// answer (its idle time-out, say), so that nothing is sent on it.
    fn drop_if_closed(&mut self) {
        let Some(stream) = &self.stream else {
            return;
        };
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // End of stream, an error, or bytes nobody asked for.
            _ => self.stream = None,
        }
    }

    async fn exchange(&mut self, request: &Request) -> anyhow::Result<Response> {
        self.answered = false;
        let result = async {
            self.stream().await?.write_all(&request.bytes).await?;
            self.read_response().await
        }
        .await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    /// Reads more bytes into the buffer; fails at end of stream.
    async fn fill(&mut self) -> anyhow::Result<()> {
        let stream = self.stream.as_mut().context("not connected")?;
        self.buf.reserve(8 * 1024);
        let n = stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.answered = true;
        Ok(())
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        let head_len = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let head = Head::parse(&self.buf[..head_len])?;
        self.buf.drain(..head_len);
        let body = match head.framing {
            Framing::Length(n) => {
                while self.buf.len() < n {
                    self.fill().await?;
                }
                self.buf.drain(..n).collect()
            }
            Framing::Chunked => self.read_chunked().await?,
            Framing::UntilClose => {
                while self.fill().await.is_ok() {}
                std::mem::take(&mut self.buf)
            }
        };
        if head.close {
            self.stream = None;
        }
        Ok(Response {
            status: head.status,
            body,
        })
    }

    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = find(&self.buf, b"\r\n") {
                    break pos;
                }
                self.fill().await?;
            };
            let line = std::str::from_utf8(&self.buf[..line_end])?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                // The last chunk, then optional trailers, then an empty line.
                loop {
                    if let Some(pos) = find(&self.buf[line_end..], b"\r\n\r\n") {
                        self.buf.drain(..line_end + pos + 4);
                        return Ok(body);
                    }
                    self.fill().await?;
                }
            }
            let need = line_end + 2 + size + 2;
            while self.buf.len() < need {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..need);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

impl Head {
    fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        let text = std::str::from_utf8(bytes).context("response head is not UTF-8")?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut framing = Framing::UntilClose;
        let mut close = version == "HTTP/1.0";
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                if framing != Framing::Chunked {
                    framing = Framing::Length(value.parse().context("bad Content-Length")?);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if value.to_ascii_lowercase().contains("chunked") {
                    framing = Framing::Chunked;
                }
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        // Answers that can have no body.
        if status == 204 || status == 304 || (100..200).contains(&status) {
            framing = Framing::Length(0);
        }
        Ok(Self {
            status,
            framing,
            close,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;

    /// A server that answers each request on one connection with the next
    /// canned answer, then closes.
    async fn canned(answers: Vec<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for answer in answers {
                let mut got = Vec::new();
                while find(&got, b"\r\n\r\n").is_none() {
                    let n = sock.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                // Split the answer to exercise partial reads.
                let (a, b) = answer.as_bytes().split_at(answer.len() / 2);
                sock.write_all(a).await.unwrap();
                sock.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                sock.write_all(b).await.unwrap();
            }
        });
        port
    }

    #[tokio::test]
    async fn reads_length_and_chunked_answers_on_one_connection() {
        let port = canned(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
        ])
        .await;
        let mut conn = Connection::connect(port).await.unwrap();
        let get = Request::get_json(port, "/");
        let r = conn.send(&get).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        let r = conn.send(&get).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (201, "abcde"));
        let r = conn.send(&get).await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[tokio::test]
    async fn reads_to_close_without_framing() {
        let port = canned(vec!["HTTP/1.0 200 OK\r\n\r\nall of it"]).await;
        let mut conn = Connection::connect(port).await.unwrap();
        let r = conn.send(&Request::get_json(port, "/")).await.unwrap();
        assert_eq!(r.text(), "all of it");
    }

    /// A server whose first connection answers one request, then reads the
    /// next one and closes without answering (as a server that crashed after
    /// applying it would); later connections answer every request. Returns
    /// the port and a count of the requests it received.
    async fn drops_the_second_answer() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&received);
        tokio::spawn(async move {
            for first in [true, false, false] {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut answered = 0;
                loop {
                    let mut got = Vec::new();
                    while find(&got, b"\r\n\r\n").is_none() {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    if got.is_empty() {
                        break;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    if first && answered == 1 {
                        break;
                    }
                    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    sock.write_all(answer.as_bytes()).await.unwrap();
                    answered += 1;
                }
            }
        });
        (port, received)
    }

    #[tokio::test]
    async fn a_post_whose_answer_was_lost_is_not_sent_again() {
        let (port, received) = drops_the_second_answer().await;
        let mut conn = Connection::connect(port).await.unwrap();
        let post = Request::post_json(port, "/score-add/", "{}");
        assert_eq!(conn.send(&post).await.unwrap().status, 200);
        assert!(conn.send(&post).await.is_err());
        assert_eq!(received.load(Ordering::SeqCst), 2);
        // The connection is replaced for the next request.
        assert_eq!(conn.send(&post).await.unwrap().status, 200);
        assert_eq!(received.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_get_whose_answer_was_lost_is_sent_again() {
        let (port, received) = drops_the_second_answer().await;
        let mut conn = Connection::connect(port).await.unwrap();
        let get = Request::get_json(port, "/");
        assert_eq!(conn.send(&get).await.unwrap().status, 200);
        assert_eq!(conn.send(&get).await.unwrap().status, 200);
        assert_eq!(received.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_before_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            // The first connection closes after one answer; the next answers.
            for _ in 0..2 {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await.unwrap();
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                sock.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let mut conn = Connection::connect(port).await.unwrap();
        let post = Request::post_json(port, "/score-add/", "{}");
        assert_eq!(conn.send(&post).await.unwrap().status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(conn.send(&post).await.unwrap().status, 200);
    }

    #[test]
    fn renders_a_post_with_its_length() {
        let r = Request::post_json(80, "/x/", r#"{"value":1}"#);
        assert!(!r.idempotent);
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.starts_with("POST /x/ HTTP/1.1\r\nHost: 127.0.0.1:80\r\n"));
        assert!(text.contains("Content-Length: 11\r\n\r\n{\"value\":1}"));
    }
}
