//! A minimal HTTP endpoint for the worker's health and metrics. The worker
//! serves no other HTTP, so a full web framework would be dead weight: this
//! reads one request line per connection and answers it.
//!
//! - `GET /healthz`: 200 while the changefeeds are open and ready, else 503.
//! - `GET /metrics`: Prometheus text format.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Serves until the listener fails; each connection gets one answer.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut len = 0;
            // Read until the end of the request line, briefly.
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                while len < buf.len() {
                    match conn.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            len += n;
                            if buf[..len].contains(&b'\n') {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&buf[..len]);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, content_type, body) = match (method, path.trim_end_matches('/')) {
                ("GET", "/healthz") if metrics.feed_ready.get() == 1 => (
                    "200 OK",
                    "application/json",
                    r#"{"status":"ok","feeds":"ready"}"#.to_owned(),
                ),
                ("GET", "/healthz") => (
                    "503 Service Unavailable",
                    "application/json",
                    r#"{"status":"unavailable","feeds":"not ready"}"#.to_owned(),
                ),
                ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                _ => (
                    "404 Not Found",
                    "application/json",
                    r#"{"error":"not_found"}"#.to_owned(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
