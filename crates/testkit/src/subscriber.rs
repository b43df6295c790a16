use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One SSE event as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`update` for a board).
    pub event: String,
    /// The `id:` field: the board's snapshot version.
    pub id: String,
    /// The `data:` field: the board as JSON.
    pub data: String,
}

impl Event {
    /// The event's data as JSON (panics in tests if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// An SSE client reading a stream in the background.
pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
    /// The HTTP status the stream was answered with.
    pub status: u16,
    /// The response headers of the stream.
    pub headers: reqwest::header::HeaderMap,
    closed: bool,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// How long a stream may take to be answered before it is given up and
    /// opened again. A held stream is answered in milliseconds; a Pushpin
    /// just restarted can take a request and never answer it (its condure
    /// logs `stream zmq send to: Host unreachable` while its own processes
    /// are still connecting to each other).
    pub const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

    /// [`Subscriber::connect`], given up after [`Subscriber::OPEN_TIMEOUT`]
    /// without an answer, as the live page (`static/live.js`) gives up.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        tokio::time::timeout(
            Self::OPEN_TIMEOUT,
            Self::connect(client, url, last_event_id),
        )
        .await
        .unwrap_or_else(|_| {
            anyhow::bail!(
                "subscribe to {url}: no answer within {:?}",
                Self::OPEN_TIMEOUT
            )
        })
    }

    /// Opens `url` with `Accept: text/event-stream` (and `Last-Event-ID`
    /// when given). Fails unless the answer is a 200 event stream.
    pub async fn connect(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut request = client.get(url).header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("subscribe to {url}: status {status}: {body}");
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        anyhow::ensure!(
            content_type.starts_with("text/event-stream"),
            "subscribe to {url}: content-type {content_type:?}"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = response.bytes_stream().eventsource();
            while let Some(item) = stream.next().await {
                let item = item
                    .map(|e| Event {
                        event: e.event,
                        id: e.id,
                        data: e.data,
                    })
                    .map_err(|e| e.to_string());
                if tx.send(item).is_err() {
                    return;
                }
            }
            let _ = tx.send(Err("stream closed".into()));
        });
        Ok(Self {
            rx,
            task,
            status,
            headers,
            closed: false,
        })
    }

    /// The next event, failing after `timeout` or when the stream ends.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Event> {
        anyhow::ensure!(!self.closed, "stream already closed");
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(Ok(event))) => Ok(event),
            Ok(Some(Err(e))) => {
                self.closed = true;
                anyhow::bail!("stream error: {e}")
            }
            Ok(None) => {
                self.closed = true;
                anyhow::bail!("stream ended")
            }
            Err(_) => anyhow::bail!("no event within {timeout:?}"),
        }
    }

    /// Reads events until `found` returns `Some`, within `timeout` overall.
    /// Returns what `found` returned and every event read on the way.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut found: impl FnMut(&Event) -> Option<T>,
    ) -> anyhow::Result<(T, Vec<Event>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self
                .next(left)
                .await
                .map_err(|e| anyhow::anyhow!("{e}; events so far: {seen:?}"))?;
            let hit = found(&event);
            seen.push(event);
            if let Some(value) = hit {
                return Ok((value, seen));
            }
        }
    }

    /// Events that arrive within `window`, without waiting past it.
    pub async fn drain(&mut self, window: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(event) = self
            .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            events.push(event);
        }
        events
    }

    /// Whether the server has closed the stream (seen by a failed read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A subscriber that behaves like a browser's `EventSource`: when the
/// stream ends or fails it reconnects after a short delay, sending the last
/// event id it saw as `Last-Event-ID`. It keeps the latest board it got.
///
/// Like the live page (`static/live.js`), it also gives up on a stream that
/// is not answered within [`Subscriber::OPEN_TIMEOUT`] and starts again
/// ([`Subscriber::open`]).
pub struct ResilientSubscriber {
    latest: tokio::sync::watch::Receiver<Option<Event>>,
    reconnects: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    attempts: std::sync::Arc<std::sync::Mutex<Attempts>>,
    task: JoinHandle<()>,
}

/// The outcomes of a subscriber's latest connection attempts, with the
/// time since it started, for the message of a wait that timed out.
struct Attempts {
    started: std::time::Instant,
    lines: std::collections::VecDeque<String>,
}

impl Attempts {
    const KEPT: usize = 12;

    fn record(&mut self, what: String) {
        if self.lines.len() == Self::KEPT {
            self.lines.pop_front();
        }
        let at = self.started.elapsed().as_secs_f64();
        self.lines.push_back(format!("{at:.3}s {what}"));
    }
}

impl Drop for ResilientSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ResilientSubscriber {
    /// Starts reading the stream at `url` in the background, with `client`.
    pub fn start(client: reqwest::Client, url: String) -> Self {
        let (tx, latest) = tokio::sync::watch::channel(None::<Event>);
        let reconnects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = reconnects.clone();
        let attempts = std::sync::Arc::new(std::sync::Mutex::new(Attempts {
            started: std::time::Instant::now(),
            lines: std::collections::VecDeque::new(),
        }));
        let record = attempts.clone();
        let note = move |what: String| record.lock().unwrap().record(what);
        let task = tokio::spawn(async move {
            let mut last_id: Option<String> = None;
            loop {
                note(format!("connecting, Last-Event-ID {last_id:?}"));
                match Subscriber::open(&client, &url, last_id.as_deref()).await {
                    Ok(mut sub) => {
                        note("connected".into());
                        let ended = loop {
                            match sub.next(Duration::from_secs(3600)).await {
                                Ok(event) => {
                                    if !event.id.is_empty() {
                                        last_id = Some(event.id.clone());
                                    }
                                    let _ = tx.send(Some(event));
                                }
                                Err(e) => break e,
                            }
                        };
                        note(format!("stream lost: {ended}"));
                    }
                    Err(e) => note(format!("failed: {e:#}")),
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            latest,
            reconnects,
            attempts,
            task,
        }
    }

    /// The last event received, if any.
    pub fn latest(&self) -> Option<Event> {
        self.latest.borrow().clone()
    }

    /// The outcomes of the latest connection attempts, one per line.
    pub fn attempts_log(&self) -> String {
        let attempts = self.attempts.lock().unwrap();
        Vec::from(attempts.lines.clone()).join("\n")
    }

    /// How many times the stream was lost and reopened.
    pub fn reconnects(&self) -> usize {
        self.reconnects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the latest event satisfies `check`.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        check: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<Event> {
        let result = tokio::time::timeout(timeout, async {
            loop {
                if let Some(event) = self.latest.borrow_and_update().clone() {
                    if check(&event) {
                        return Some(event);
                    }
                }
                if self.latest.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match result {
            Ok(Some(event)) => Ok(event),
            Ok(None) => anyhow::bail!("subscriber task ended"),
            Err(_) => anyhow::bail!(
                "not reached within {timeout:?}; latest: {:?}; connections:\n{}",
                self.latest(),
                self.attempts_log()
            ),
        }
    }
}
