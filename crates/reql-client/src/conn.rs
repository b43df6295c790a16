//! One connection, many queries: a writer task, a reader task, and a map
//! from each query's token to the cursor that waits for its answers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::Error;
use crate::handshake::{handshake, Failure};

const START: u8 = 1;
const CONTINUE: u8 = 2;
const STOP: u8 = 3;

const SUCCESS_ATOM: i64 = 1;
const SUCCESS_SEQUENCE: i64 = 2;
const SUCCESS_PARTIAL: i64 = 3;
const CLIENT_ERROR: i64 = 16;
const COMPILE_ERROR: i64 = 17;
const RUNTIME_ERROR: i64 = 18;

/// Largest answer accepted; RethinkDB's batches are about 1 MB at most.
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// The writer sends what has queued up to this many bytes in one write.
const WRITE_BATCH: usize = 256 * 1024;

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Host name or IP address; with TLS, also the name the server's
    /// certificate must carry.
    pub host: String,
    /// Driver port.
    pub port: u16,
    /// User name (`admin` by default).
    pub user: String,
    /// Password (empty by default).
    pub password: String,
    /// TLS, when set.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Time allowed for TCP, TLS and the handshake together.
    pub connect_timeout: Duration,
}

impl ConnectOptions {
    /// `admin` with no password, no TLS, a 3 s time limit.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            user: "admin".into(),
            password: String::new(),
            tls: None,
            connect_timeout: Duration::from_secs(3),
        }
    }

    fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("endpoint", &self.endpoint())
            .field("user", &self.user)
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// One answer frame, as the server sends it.
#[derive(Deserialize)]
struct Response {
    t: i64,
    #[serde(default)]
    r: Vec<Value>,
    #[serde(default)]
    e: Option<i64>,
}

/// What the reader does with an answer for a token.
enum Waiting {
    /// A cursor waits for it.
    Live(mpsc::UnboundedSender<Result<Response, Error>>),
    /// The cursor is gone and STOP was sent; the answers are dropped until
    /// the final one. `restopped`: whether STOP went again after a partial
    /// batch, in case the first STOP reached the server before the stream
    /// existed there.
    Stopped { restopped: bool },
}

struct State {
    queries: HashMap<u64, Waiting>,
    broken: Option<Error>,
}

struct Shared {
    out: mpsc::UnboundedSender<Vec<u8>>,
    state: Mutex<State>,
    broken: AtomicBool,
    next_token: AtomicU64,
    /// `state.queries.len()`, kept beside it so that a pool choosing a
    /// connection for each query reads it without the lock.
    in_flight: AtomicUsize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the count of queries after `state.queries` changed; called
    /// with the lock held, so the count follows the map's changes in order.
    fn counted(&self, state: &State) {
        self.in_flight.store(state.queries.len(), Ordering::Relaxed);
    }

    /// Marks the connection broken (the first reason wins) and fails every
    /// query waiting on it.
    fn fail(&self, error: Error) {
        let waiting: Vec<Waiting> = {
            let mut state = self.state();
            if state.broken.is_none() {
                state.broken = Some(error.clone());
            }
            self.broken.store(true, Ordering::Release);
            let waiting = state.queries.drain().map(|(_, w)| w).collect();
            self.counted(&state);
            waiting
        };
        for w in waiting {
            if let Waiting::Live(tx) = w {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }

    fn send_frame(&self, token: u64, query_type: u8) {
        let mut frame = Vec::with_capacity(15);
        frame.extend_from_slice(&token.to_le_bytes());
        frame.extend_from_slice(&3u32.to_le_bytes());
        frame.extend_from_slice(&[b'[', b'0' + query_type, b']']);
        // A closed writer means the connection is broken, and the query with it.
        let _ = self.out.send(frame);
    }
}

/// Stops the connection's tasks when the last handle goes.
struct Tasks {
    shared: Arc<Shared>,
    handles: [AbortHandle; 2],
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
        self.shared
            .fail(Error::Broken("the connection was closed".into()));
    }
}

/// A connection that carries any number of queries at once. Cheap to clone;
/// it closes when the last clone is dropped.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("broken", &self.is_broken())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Says why a TLS or stream failure happened, in one line.
fn describe(error: &std::io::Error) -> String {
    let Some(inner) = error.get_ref() else {
        return error.to_string();
    };
    let Some(tls_error) = inner.downcast_ref::<rustls::Error>() else {
        return error.to_string();
    };
    let hint = match tls_error {
        rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::HandshakeFailure
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA,
        ) => " (the server may require a client certificate its CA signed: cert= and key=)",
        _ => "",
    };
    format!("TLS: {tls_error}{hint}")
}

impl Connection {
    /// Opens a connection: TCP, TLS if asked, and the handshake, within
    /// `options.connect_timeout`. The error is one line that says what
    /// failed; it never names the password.
    pub async fn connect(options: &ConnectOptions) -> Result<Connection, Error> {
        match tokio::time::timeout(options.connect_timeout, Self::open(options)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect(format!(
                "no answer within {:?}",
                options.connect_timeout
            ))),
        }
    }

    async fn open(options: &ConnectOptions) -> Result<Connection, Error> {
        let tcp = TcpStream::connect((options.host.as_str(), options.port))
            .await
            .map_err(|e| Error::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &options.tls {
            None => Self::start(tcp, options).await,
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from(options.host.clone())
                    .map_err(|e| Error::Connect(format!("TLS: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::Connect(describe(&e)))?;
                Self::start(stream, options).await
            }
        }
    }

    async fn start<S>(stream: S, options: &ConnectOptions) -> Result<Connection, Error>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut stream = BufReader::with_capacity(64 * 1024, stream);
        handshake(&mut stream, &options.user, &options.password)
            .await
            .map_err(|failure| match failure {
                Failure::Io(e) => Error::Connect(describe(&e)),
                Failure::Refused(why) => Error::Connect(format!("handshake refused: {why}")),
            })?;
        let (reader, writer) = tokio::io::split(stream);
        let (out, frames) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            out,
            state: Mutex::new(State {
                queries: HashMap::new(),
                broken: None,
            }),
            broken: AtomicBool::new(false),
            next_token: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
        });
        let write = tokio::spawn(write_loop(writer, frames, Arc::clone(&shared)));
        let read = tokio::spawn(read_loop(reader, Arc::clone(&shared)));
        Ok(Connection {
            _tasks: Arc::new(Tasks {
                shared: Arc::clone(&shared),
                handles: [write.abort_handle(), read.abort_handle()],
            }),
            shared,
        })
    }

    /// Whether the connection broke; every later query fails at once.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Acquire)
    }

    /// Queries sent and not finished, stopped ones included.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Starts a query: sends `[1, term, global_optargs]` and returns the
    /// cursor that reads its answers. Nothing waits here for the server.
    pub fn query<T, O>(&self, term: &T, global_optargs: &O) -> Result<Cursor, Error>
    where
        T: Serialize + ?Sized,
        O: Serialize + ?Sized,
    {
        let token = self.shared.next_token.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(256);
        frame.extend_from_slice(&token.to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut frame, &(START, term, global_optargs))
            .map_err(|e| Error::Decode(format!("cannot serialise the query: {e}")))?;
        let len = u32::try_from(frame.len() - 12)
            .map_err(|_| Error::Client("query larger than 4 GiB".into()))?;
        frame[8..12].copy_from_slice(&len.to_le_bytes());
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut state = self.shared.state();
            if let Some(error) = &state.broken {
                return Err(error.clone());
            }
            state.queries.insert(token, Waiting::Live(tx));
            self.shared.counted(&state);
        }
        if self.shared.out.send(frame).is_err() {
            let mut state = self.shared.state();
            state.queries.remove(&token);
            self.shared.counted(&state);
            return Err(Error::Broken("the connection's writer stopped".into()));
        }
        Ok(Cursor {
            shared: Arc::clone(&self.shared),
            token,
            rx,
            phase: Phase::Sent,
        })
    }

    /// Runs a query to its end and returns every value, as [`Cursor::all`].
    pub async fn run<T, O>(&self, term: &T, global_optargs: &O) -> Result<Vec<Value>, Error>
    where
        T: Serialize + ?Sized,
        O: Serialize + ?Sized,
    {
        self.query(term, global_optargs)?.all().await
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// START or CONTINUE sent, the answer not read yet.
    Sent,
    /// A partial batch read; the next read sends CONTINUE.
    Partial,
    /// The final answer read.
    Done,
}

/// The answers of one query, batch by batch. Dropping it before the last
/// batch stops the query on the server (STOP); the connection stays in use.
pub struct Cursor {
    shared: Arc<Shared>,
    token: u64,
    rx: mpsc::UnboundedReceiver<Result<Response, Error>>,
    phase: Phase,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("token", &self.token)
            .finish()
    }
}

impl Cursor {
    /// The next batch, or `None` after the last. A single value (an atom)
    /// is a batch of one, and an atom that is an array is a batch of its
    /// elements, as the official drivers read them. A changefeed's batches
    /// never end.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Value>>, Error> {
        match self.phase {
            Phase::Done => return Ok(None),
            Phase::Partial => {
                self.shared.send_frame(self.token, CONTINUE);
                self.phase = Phase::Sent;
            }
            Phase::Sent => {}
        }
        let response = match self.rx.recv().await {
            Some(Ok(response)) => response,
            Some(Err(error)) => {
                self.phase = Phase::Done;
                return Err(error);
            }
            None => {
                self.phase = Phase::Done;
                return Err(Error::Broken("the connection was closed".into()));
            }
        };
        self.phase = if response.t == SUCCESS_PARTIAL {
            Phase::Partial
        } else {
            Phase::Done
        };
        let mut r = response.r;
        let message = || {
            r.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match response.t {
            SUCCESS_ATOM => match r.pop() {
                Some(Value::Array(items)) if r.is_empty() => Ok(Some(items)),
                Some(atom) if r.is_empty() => Ok(Some(vec![atom])),
                _ => Err(Error::Decode("an atom answer without one value".into())),
            },
            SUCCESS_SEQUENCE | SUCCESS_PARTIAL => Ok(Some(r)),
            CLIENT_ERROR => Err(Error::Client(message())),
            COMPILE_ERROR => Err(Error::Compile(message())),
            RUNTIME_ERROR => Err(Error::Runtime {
                code: response.e.unwrap_or(0),
                message: message(),
            }),
            other => Err(Error::Decode(format!("answer of unknown type {other}"))),
        }
    }

    /// Reads every batch and returns the values in order. On a changefeed
    /// this never returns; put a time limit on it.
    pub async fn all(mut self) -> Result<Vec<Value>, Error> {
        let mut values = Vec::new();
        while let Some(batch) = self.next_batch().await? {
            if values.is_empty() {
                values = batch;
            } else {
                values.extend(batch);
            }
        }
        Ok(values)
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        let mut state = self.shared.state();
        if let Some(waiting) = state.queries.get_mut(&self.token) {
            *waiting = Waiting::Stopped { restopped: false };
            drop(state);
            self.shared.send_frame(self.token, STOP);
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut buf = Vec::with_capacity(WRITE_BATCH);
    while let Some(frame) = frames.recv().await {
        buf.clear();
        buf.extend_from_slice(&frame);
        while buf.len() < WRITE_BATCH {
            match frames.try_recv() {
                Ok(frame) => buf.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        let written = async {
            writer.write_all(&buf).await?;
            writer.flush().await
        };
        if let Err(e) = written.await {
            shared.fail(Error::Broken(describe(&e)));
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: R, shared: Arc<Shared>) {
    let error = loop {
        let mut head = [0u8; 12];
        if let Err(e) = reader.read_exact(&mut head).await {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Broken("the server closed the connection".into())
            } else {
                Error::Broken(describe(&e))
            };
        }
        let token = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(head[8..].try_into().unwrap_or_default()) as usize;
        if len > MAX_FRAME {
            break Error::Broken(format!("the server sent a {len}-byte answer"));
        }
        let mut body = vec![0u8; len];
        if let Err(e) = reader.read_exact(&mut body).await {
            break Error::Broken(describe(&e));
        }
        deliver(&shared, token, &body);
    };
    shared.fail(error);
}

fn deliver(shared: &Shared, token: u64, body: &[u8]) {
    let response: Result<Response, Error> =
        serde_json::from_slice(body).map_err(|e| Error::Decode(e.to_string()));
    let partial = matches!(&response, Ok(r) if r.t == SUCCESS_PARTIAL);
    let mut state = shared.state();
    let Some(waiting) = state.queries.get_mut(&token) else {
        // A query that finished, e.g. the answer to a STOP sent after it.
        return;
    };
    match waiting {
        Waiting::Live(tx) => {
            if partial {
                let _ = tx.send(response);
            } else if let Some(Waiting::Live(tx)) = state.queries.remove(&token) {
                shared.counted(&state);
                let _ = tx.send(response);
            }
        }
        Waiting::Stopped { restopped } => {
            if partial {
                if !*restopped {
                    // The stream exists now; the first STOP may have come
                    // before it and been refused.
                    *restopped = true;
                    drop(state);
                    shared.send_frame(token, STOP);
                }
            } else if matches!(&response, Ok(r) if r.t == CLIENT_ERROR) {
                // The refusal of a STOP that came before the stream existed
                // (`Token n not in stream cache`): the query itself has not
                // answered yet.
            } else {
                state.queries.remove(&token);
                shared.counted(&state);
            }
        }
    }
}
