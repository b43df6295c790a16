//! The same client as [`crate::http`], written over hyper's connection API
//! (`hyper::client::conn::http1`, its connection future spawned as a task),
//! with the same retry rule. It exists to be measured against the
//! hand-written one (the `http-client` scenario); see BENCHMARKS.md.

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request built once, sent many times.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    /// `method path` for `127.0.0.1:port`, with `headers` and `body`.
    ///
    /// Panics on a method, path or header that is not valid HTTP: requests
    /// are written by the benchmark itself.
    pub fn new(method: &str, port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut map = HeaderMap::with_capacity(headers.len() + 1);
        map.insert(
            HOST,
            HeaderValue::from_str(&format!("127.0.0.1:{port}")).expect("a valid Host"),
        );
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
                HeaderValue::from_str(value).expect("a valid header value"),
            );
        }
        Self {
            method: Method::from_bytes(method.as_bytes()).expect("a valid method"),
            uri: path.parse().expect("a valid path"),
            headers: map,
            body: Bytes::copy_from_slice(body),
        }
    }

    /// A JSON `POST`.
    pub fn post_json(port: u16, path: &str, body: &str) -> Self {
        Self::new(
            "POST",
            port,
            path,
            &[(CONTENT_TYPE.as_str(), "application/json")],
            body.as_bytes(),
        )
    }

    /// A `GET` asking for JSON.
    pub fn get_json(port: u16, path: &str) -> Self {
        Self::new("GET", port, path, &[("accept", "application/json")], b"")
    }

    fn build(&self) -> hyper::Request<Full<Bytes>> {
        let mut request = hyper::Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// An answer: its status and its body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection. It reconnects by itself when the server closed
/// the previous one (`Connection: close`, or the origin's idle time-out
/// between two measurements).
pub struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(port: u16) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            sender: None,
        }
    }

    /// Opens the TCP connection now, so that the first measured request does
    /// not pay for it.
    pub async fn connect(port: u16) -> anyhow::Result<Self> {
        let mut conn = Self::new(port);
        conn.sender = Some(open(conn.addr).await?);
        Ok(conn)
    }

    /// Sends `request` and reads the whole answer.
    ///
    /// A request is resent, once, on a new connection only when hyper
    /// handed it back unsent, or when it went out on a reused connection,
    /// no answer arrived, and its method is idempotent. A `POST` that
    /// reached the server before the connection broke may have been applied
    /// (a score-add would then count twice), so its failure is reported.
    pub async fn send(&mut self, request: &Request) -> anyhow::Result<Response> {
        let reused = match self.sender.as_ref() {
            // hyper's connection task has seen the server close it: nothing
            // is sent on it.
            Some(sender) if !sender.is_closed() => true,
            _ => {
                self.sender = Some(open(self.addr).await?);
                false
            }
        };
        let sender = self.sender.as_mut().expect("just set");
        let response = match sender.try_send_request(request.build()).await {
            Ok(response) => response,
            Err(mut e) => {
                self.sender = None;
                let unsent = e.take_message().is_some();
                if !(unsent || reused && request.method.is_idempotent()) {
                    return Err(e.into_error()).context("request failed");
                }
                let mut sender = open(self.addr).await?;
                let response = sender
                    .send_request(request.build())
                    .await
                    .context("request failed")?;
                self.sender = Some(sender);
                response
            }
        };
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(e).context("reading the answer's body");
            }
        };
        Ok(Response { status, body })
    }
}

/// Connects to `addr` and runs the connection's task on the runtime.
async fn open(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    // Requests are written in one piece; Nagle would only delay them.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Its errors reach the request that was in flight.
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// Reads one request head; `None` at end of stream.
    async fn read_head(sock: &mut TcpStream) -> Option<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while find(&got, b"\r\n\r\n").is_none() {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        Some(got)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    /// A server that answers each request on one connection with the next
    /// canned answer, in two pieces, then closes.
    async fn canned(answers: Vec<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            for answer in answers {
                read_head(&mut sock).await.unwrap();
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
                let mut answered = 0;
                while read_head(&mut sock).await.is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                    if first && answered == 1 {
                        break;
                    }
                    sock.write_all(OK.as_bytes()).await.unwrap();
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
                read_head(&mut sock).await.unwrap();
                sock.write_all(OK.as_bytes()).await.unwrap();
            }
        });
        let mut conn = Connection::connect(port).await.unwrap();
        let post = Request::post_json(port, "/score-add/", "{}");
        assert_eq!(conn.send(&post).await.unwrap().status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(conn.send(&post).await.unwrap().status, 200);
    }

    #[tokio::test]
    async fn sends_the_body_with_its_length() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = read_head(&mut sock).await.unwrap();
            while !got.ends_with(b"{\"value\":1}") {
                let mut buf = [0u8; 64];
                let n = sock.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            sock.write_all(OK.as_bytes()).await.unwrap();
            String::from_utf8(got).unwrap().to_ascii_lowercase()
        });
        let mut conn = Connection::connect(port).await.unwrap();
        let post = Request::post_json(port, "/x/", r#"{"value":1}"#);
        conn.send(&post).await.unwrap();
        let text = server.await.unwrap();
        assert!(text.starts_with("post /x/ http/1.1\r\n"), "{text}");
        assert!(
            text.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{text}"
        );
        assert!(text.contains("content-length: 11\r\n"), "{text}");
        assert!(
            text.contains("content-type: application/json\r\n"),
            "{text}"
        );
    }
}
