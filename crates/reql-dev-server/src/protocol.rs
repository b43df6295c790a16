//! One client connection after the handshake: reads query frames, runs each START
//! as its own task, keeps open streams (including changefeeds) by token, and writes
//! responses tagged with their token as they are ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::datum::{write_json_string, Datum};
use crate::error::{ReqlError, Result};
use crate::eval::seq::{Pull, Seq};
use crate::eval::{to_seq, Evaluator, QueryCtx, Shared, Val};
use crate::storage::Durability;
use crate::term::{self, tt, Term};
use crate::wire::{self, Auth, Handshake};

/// Largest query frame accepted. Anything bigger is treated as a broken client
/// and closes the connection.
const MAX_FRAME: usize = 64 * 1024 * 1024;

const START: i64 = 1;
const CONTINUE: i64 = 2;
const STOP: i64 = 3;
const NOREPLY_WAIT: i64 = 4;
const SERVER_INFO: i64 = 5;

const GLOBAL_OPTARGS: &[&str] = &[
    "db",
    "use_outdated",
    "read_mode",
    "noreply",
    "durability",
    "profile",
    "time_format",
    "binary_format",
    "group_format",
    "geometry_format",
    "array_limit",
    "min_batch_rows",
    "max_batch_rows",
    "max_batch_bytes",
    "max_batch_seconds",
    "first_batch_scaledown_factor",
];

enum StreamCmd {
    Continue,
    Stop,
}

struct Conn {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    streams: Mutex<HashMap<u64, mpsc::UnboundedSender<StreamCmd>>>,
}

impl Conn {
    fn send(&self, token: u64, body: &str) {
        let mut frame = Vec::with_capacity(body.len() + 12);
        frame.extend_from_slice(&token.to_le_bytes());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(body.as_bytes());
        // A closed writer means the client is gone; there is no one to tell.
        let _ = self.out.send(frame);
    }
}

#[derive(Clone, Copy)]
struct Limits {
    max_rows: usize,
    max_bytes: usize,
    scaledown: usize,
    profile: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: usize::MAX,
            max_bytes: 1024 * 1024,
            scaledown: 4,
            profile: false,
        }
    }
}

pub fn error_body(e: &ReqlError) -> String {
    let mut s = String::with_capacity(64 + e.message().len());
    match e {
        ReqlError::Client(m) => {
            s.push_str("{\"t\":16,\"r\":[");
            write_json_string(m, &mut s);
        }
        ReqlError::Compile(m) => {
            s.push_str("{\"t\":17,\"r\":[");
            write_json_string(m, &mut s);
        }
        ReqlError::Runtime(kind, m) => {
            s.push_str(&format!("{{\"t\":18,\"e\":{},\"r\":[", kind.code()));
            write_json_string(m, &mut s);
        }
    }
    s.push_str("],\"b\":[]}");
    s
}

fn seq_body(done: bool, items: &str, notes: &[u32]) -> String {
    let notes: Vec<String> = notes.iter().map(|n| n.to_string()).collect();
    format!(
        "{{\"t\":{},\"r\":[{items}],\"n\":[{}]}}",
        if done { 2 } else { 3 },
        notes.join(",")
    )
}

const EMPTY_DONE: &str = "{\"t\":2,\"r\":[],\"n\":[]}";

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "NULL",
        serde_json::Value::Bool(_) => "BOOL",
        serde_json::Value::Number(_) => "NUMBER",
        serde_json::Value::String(_) => "STRING",
        serde_json::Value::Array(_) => "ARRAY",
        serde_json::Value::Object(_) => "OBJECT",
    }
}

/// Ends the connection's streams however `serve` exits (also when its task is
/// aborted at shutdown), since their tasks hold the connection alive.
struct CloseStreams(Arc<Conn>);

impl Drop for CloseStreams {
    fn drop(&mut self) {
        self.0.streams.lock().clear();
    }
}

enum Job {
    Query(u64, serde_json::Value, Option<serde_json::Value>),
    Wait(u64),
}

/// Serves one client on `stream`, plain TCP or TLS.
pub async fn serve<S>(stream: S, shared: Arc<Shared>, auth: Arc<Auth>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    match wire::handshake(&mut rd, &mut wr, &auth).await {
        Ok(Handshake::Ready) => {}
        Ok(Handshake::Close) | Err(_) => {
            let _ = wr.shutdown().await;
            return;
        }
    }
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let conn = Arc::new(Conn {
        shared,
        out: out_tx,
        streams: Mutex::new(HashMap::new()),
    });
    let (job_tx, job_rx) = mpsc::unbounded_channel();
    let noreply = tokio::spawn(noreply_loop(conn.clone(), job_rx));
    let guard = CloseStreams(conn.clone());

    loop {
        let mut head = [0u8; 12];
        if rd.read_exact(&mut head).await.is_err() {
            break;
        }
        let mut token_bytes = [0u8; 8];
        token_bytes.copy_from_slice(&head[..8]);
        let token = u64::from_le_bytes(token_bytes);
        let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if len > MAX_FRAME {
            log::warn!("closing a connection that sent a {len}-byte frame");
            break;
        }
        let mut body = vec![0u8; len];
        if rd.read_exact(&mut body).await.is_err() {
            break;
        }
        dispatch(&conn, &job_tx, token, &body);
    }

    // Open streams end with the connection; their tasks see the closed channels.
    conn.streams.lock().clear();
    drop(job_tx);
    let _ = noreply.await;
    drop(guard);
    drop(conn);
    let _ = writer.await;
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(mut buf) = rx.recv().await {
        while buf.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn noreply_loop(conn: Arc<Conn>, mut rx: mpsc::UnboundedReceiver<Job>) {
    // Queries sent with `noreply` run one after another, in the order they came,
    // and NOREPLY_WAIT answers once those before it are done.
    // Their writes are not waited for one by one; NOREPLY_WAIT waits for all.
    let mut durable = 0u64;
    while let Some(job) = rx.recv().await {
        match job {
            Job::Query(token, term, gopts) => {
                durable = durable.max(run_query(conn.clone(), token, term, gopts, false).await);
            }
            Job::Wait(token) => {
                let body = match conn.shared.store.wait_durable(durable).await {
                    Ok(()) => "{\"t\":4,\"r\":[]}".to_string(),
                    Err(e) => error_body(&e),
                };
                conn.send(token, &body);
            }
        }
    }
}

fn dispatch(conn: &Arc<Conn>, jobs: &mpsc::UnboundedSender<Job>, token: u64, body: &[u8]) {
    let client_error = |msg: String| conn.send(token, &error_body(&ReqlError::client(msg)));
    let q: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return client_error("Client is buggy (failed to deserialize query).".into()),
    };
    let Some(arr) = q.as_array() else {
        return client_error(format!(
            "Server could not parse query: Expected a query to be an array, but found {}.",
            json_type(&q)
        ));
    };
    match arr.first().and_then(|v| v.as_i64()) {
        Some(START) => {
            let Some(term) = arr.get(1).cloned() else {
                return client_error(
                    "Server could not parse query: Expected a term in a START query.".into(),
                );
            };
            let gopts = arr.get(2).cloned();
            let noreply = gopts
                .as_ref()
                .and_then(|g| g.get("noreply"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if noreply {
                let _ = jobs.send(Job::Query(token, term, gopts));
            } else {
                tokio::spawn(run_query(conn.clone(), token, term, gopts, true));
            }
        }
        Some(CONTINUE) | Some(STOP) => {
            let cmd = if arr.first().and_then(|v| v.as_i64()) == Some(CONTINUE) {
                StreamCmd::Continue
            } else {
                StreamCmd::Stop
            };
            let sent = match conn.streams.lock().get(&token) {
                Some(tx) => tx.send(cmd).is_ok(),
                None => false,
            };
            if !sent {
                client_error(format!("Token {token} not in stream cache."));
            }
        }
        Some(NOREPLY_WAIT) => {
            let _ = jobs.send(Job::Wait(token));
        }
        Some(SERVER_INFO) => {
            let mut s = String::from("{\"t\":5,\"r\":[{\"id\":\"");
            s.push_str(&conn.shared.server_id.to_string());
            s.push_str("\",\"name\":");
            write_json_string(&conn.shared.server_name, &mut s);
            s.push_str(",\"proxy\":false}]}");
            conn.send(token, &s);
        }
        Some(other) => client_error(format!(
            "Server could not parse query: Unrecognized QueryType: {other}."
        )),
        None => client_error(
            "Server could not parse query: Expected a query type as the first element.".into(),
        ),
    }
}

fn optarg_datum(v: &serde_json::Value) -> Result<Datum> {
    let t = Term::parse(v)?;
    t.as_datum()
        .cloned()
        .ok_or_else(|| ReqlError::compile("Global optional arguments must be values."))
}

fn positive(d: &Datum, name: &str) -> Result<usize> {
    match d.as_int() {
        Some(n) if n > 0 => Ok(n as usize),
        _ => Err(ReqlError::logic(format!(
            "Illegal value for `{name}`: {}.",
            d.to_json().unwrap_or_default()
        ))),
    }
}

/// Reads the global optional arguments and compiles the term.
fn prepare(
    shared: &Arc<Shared>,
    term_json: &serde_json::Value,
    gopts: Option<&serde_json::Value>,
) -> Result<(Arc<QueryCtx>, Term, Limits)> {
    let mut ctx = QueryCtx::new(shared.clone(), "test".into());
    let mut limits = Limits::default();
    let mut db_term = None;
    match gopts {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(o)) => {
            for (k, v) in o {
                if !GLOBAL_OPTARGS.contains(&k.as_str()) {
                    return Err(ReqlError::compile(format!(
                        "Unrecognized global optional argument `{k}`."
                    )));
                }
                match k.as_str() {
                    "db" => db_term = Some(Term::parse(v)?),
                    "array_limit" => {
                        let d = optarg_datum(v)?;
                        ctx.array_limit = match d.as_int() {
                            Some(n) if n > 0 => n as usize,
                            _ => {
                                return Err(ReqlError::logic(format!(
                                    "Illegal array size limit `{}`.  (Must be >= 1.)",
                                    d.to_json().unwrap_or_default()
                                )))
                            }
                        };
                    }
                    "durability" => {
                        let d = optarg_datum(v)?;
                        let s = d.as_str().unwrap_or("");
                        ctx.durability = Some(Durability::parse(s).ok_or_else(|| {
                            ReqlError::logic(format!(
                                "Durability option `{s}` unrecognized (options are \"hard\" and \"soft\")."
                            ))
                        })?);
                    }
                    "max_batch_rows" => limits.max_rows = positive(&optarg_datum(v)?, k)?,
                    "max_batch_bytes" => limits.max_bytes = positive(&optarg_datum(v)?, k)?,
                    "first_batch_scaledown_factor" => {
                        limits.scaledown = positive(&optarg_datum(v)?, k)?
                    }
                    "profile" => limits.profile = optarg_datum(v)?.truthy(),
                    _ => {}
                }
            }
        }
        Some(_) => {
            return Err(ReqlError::client(
                "Server could not parse query: Expected global optional arguments to be an object.",
            ))
        }
    }
    let term = Term::parse(term_json)?;
    term::check(&term)?;
    if let Some(db) = db_term {
        term::check(&db)?;
        ctx.default_db = match (db.ty(), db.args().first().and_then(|a| a.as_datum())) {
            (tt::DB, Some(Datum::Str(name))) => name.to_string(),
            _ => {
                let probe = Arc::new(QueryCtx::new(shared.clone(), "test".into()));
                match Evaluator::new(&probe).eval(&db)? {
                    Val::Db(d) => d.name,
                    other => {
                        return Err(ReqlError::logic(format!(
                            "Expected type DATABASE but found {}.",
                            other.type_name()
                        )))
                    }
                }
            }
        };
    }
    Ok((Arc::new(ctx), term, limits))
}

/// Runs one START. With `respond` false (`noreply`), nothing is sent and the
/// log position its writes need is returned instead of waited for.
async fn run_query(
    conn: Arc<Conn>,
    token: u64,
    term: serde_json::Value,
    gopts: Option<serde_json::Value>,
    respond: bool,
) -> u64 {
    let started = Instant::now();
    let (ctx, term, limits) = match prepare(&conn.shared, &term, gopts.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            if respond {
                conn.send(token, &error_body(&e));
            }
            return 0;
        }
    };
    let mut result = Evaluator::new(&ctx).eval(&term);
    if result.is_ok() {
        if let Err(e) = ctx
            .commit_created_tables(conn.shared.table_create_window)
            .await
        {
            result = Err(e);
        }
    }
    if !respond {
        return ctx.durable_seq();
    }
    // A write is acknowledged only once the log holds it on disk.
    let durable = match ctx.store() {
        Ok(store) => store.wait_durable(ctx.durable_seq()).await,
        Err(_) => Ok(()),
    };
    let val = match (result, durable) {
        (Err(e), _) | (Ok(_), Err(e)) => {
            conn.send(token, &error_body(&e));
            return 0;
        }
        (Ok(v), Ok(())) => v,
    };
    match val {
        Val::Func(_) => conn.send(
            token,
            &error_body(&ReqlError::logic(
                "Query result must be of type DATUM, GROUPED_DATA, or STREAM (got FUNCTION).",
            )),
        ),
        Val::Db(_) => conn.send(
            token,
            &error_body(&ReqlError::logic(
                "Query result must be of type DATUM, GROUPED_DATA, or STREAM (got DATABASE).",
            )),
        ),
        v @ (Val::Table(_) | Val::Seq(_)) => match to_seq(&ctx, v) {
            Ok(seq) => start_stream(conn, token, seq, limits),
            Err(e) => conn.send(token, &error_body(&e)),
        },
        other => {
            let body = ctx.to_datum(other).and_then(|d| {
                let mut s = String::from("{\"t\":1,\"r\":[");
                d.write_json(&mut s)?;
                s.push(']');
                if limits.profile {
                    s.push_str(&format!(
                        ",\"p\":[{{\"description\":\"Evaluating query.\",\"duration(ms)\":{},\"sub_tasks\":[]}}]",
                        started.elapsed().as_secs_f64() * 1000.0
                    ));
                }
                s.push('}');
                Ok(s)
            });
            match body {
                Ok(b) => conn.send(token, &b),
                Err(e) => conn.send(token, &error_body(&e)),
            }
        }
    }
    0
}

/// Fills one batch; returns the items as JSON and whether the stream ended.
fn fill_batch(seq: &mut Seq, limits: &Limits, first: bool) -> Result<(String, bool)> {
    let budget = if first {
        limits.max_bytes / limits.scaledown.max(1)
    } else {
        limits.max_bytes
    };
    let mut out = String::new();
    let mut n = 0usize;
    while n < limits.max_rows {
        match seq.pull()? {
            Pull::Item(d) => {
                if n > 0 {
                    out.push(',');
                }
                d.write_json(&mut out)?;
                n += 1;
                if out.len() >= budget {
                    break;
                }
            }
            Pull::End => return Ok((out, true)),
            Pull::Wait => return Ok((out, false)),
        }
    }
    let done = seq.at_end()?;
    Ok((out, done))
}

fn start_stream(conn: Arc<Conn>, token: u64, mut seq: Seq, limits: Limits) {
    let notes = seq.notes.clone();
    match fill_batch(&mut seq, &limits, true) {
        Err(e) => conn.send(token, &error_body(&e)),
        Ok((items, true)) => conn.send(token, &seq_body(true, &items, &notes)),
        Ok((items, false)) => {
            let (tx, rx) = mpsc::unbounded_channel();
            conn.streams.lock().insert(token, tx);
            tokio::spawn(stream_task(conn.clone(), token, seq, rx, limits));
            conn.send(token, &seq_body(false, &items, &notes));
        }
    }
}

async fn stream_task(
    conn: Arc<Conn>,
    token: u64,
    mut seq: Seq,
    mut rx: mpsc::UnboundedReceiver<StreamCmd>,
    limits: Limits,
) {
    let notes = seq.notes.clone();
    let finish = |conn: &Conn, body: &str| {
        // Forget the token before answering, so a CONTINUE sent after this answer
        // is told the stream is gone instead of waiting on a finished task.
        conn.streams.lock().remove(&token);
        conn.send(token, body);
    };
    // CONTINUEs received and not answered yet.
    let mut wanted = 0usize;
    loop {
        if wanted == 0 {
            match rx.recv().await {
                None => break,
                Some(StreamCmd::Stop) => {
                    finish(&conn, EMPTY_DONE);
                    return;
                }
                Some(StreamCmd::Continue) => wanted = 1,
            }
        }
        let batch = if seq.is_feed() {
            loop {
                tokio::select! {
                    _ = seq.wait() => {}
                    cmd = rx.recv() => match cmd {
                        Some(StreamCmd::Continue) => {
                            wanted += 1;
                            continue;
                        }
                        other => {
                            // STOP while CONTINUEs wait: each gets an empty answer,
                            // and so does the STOP.
                            conn.streams.lock().remove(&token);
                            for _ in 0..wanted {
                                conn.send(token, EMPTY_DONE);
                            }
                            if matches!(other, Some(StreamCmd::Stop)) {
                                conn.send(token, EMPTY_DONE);
                            }
                            return;
                        }
                    }
                }
                match fill_batch(&mut seq, &limits, false) {
                    Ok((items, false)) if items.is_empty() => continue,
                    other => break other,
                }
            }
        } else {
            fill_batch(&mut seq, &limits, false)
        };
        wanted -= 1;
        match batch {
            Ok((items, false)) => conn.send(token, &seq_body(false, &items, &notes)),
            Ok((items, true)) => {
                finish(&conn, &seq_body(true, &items, &notes));
                return;
            }
            Err(e) => {
                finish(&conn, &error_body(&e));
                return;
            }
        }
    }
    conn.streams.lock().remove(&token);
}
