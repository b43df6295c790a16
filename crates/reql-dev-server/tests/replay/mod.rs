//! A replayer of RethinkDB wire transcripts, in the format of
//! `conformance/` (see its README): it sends the recorded frames to a
//! server and reports every answer that differs from the recorded one.
//!
//! It judges as the transcripts' reference checker (`replay.py`, which
//! came with them) judges, rule for rule, so that a server passes here
//! exactly when it passes there:
//!
//! - each transcript line is one check; a file's database is
//!   `rqlconf_<run>_<n>`, and answers are written back with the
//!   placeholders (`rqlconf`, `<server_name>`, `<uuid>`) before comparing;
//! - the frames of a file, and the responses the recording saw, are
//!   replayed in `seq` order across its connections;
//! - a START first answered with a sequence is a stream: compared item by
//!   item, with CONTINUEs added as needed, a stopped stream only as far as
//!   it was read, and changes of different documents in a feed in any
//!   order between state documents;
//! - `handshake.jsonl` drives one connection per line, by a real SCRAM
//!   exchange or with the recorded bytes, nonces, salts and signatures
//!   masked.

mod compare;
mod conn;
mod ordered;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use compare::{
    apply_hints, canon_window, first_diff, is_feed, short, sort_canonically, strip_response,
    truthy, Hints, Norm, DB_PLACEHOLDER,
};
use conn::{decode_hex, Conn, RecvError};
use ordered::{dumps, Json, PYTHON_DEFAULT};

const START: i64 = 1;
const CONTINUE: i64 = 2;
const STOP: i64 = 3;
const SERVER_INFO: i64 = 5;
const SUCCESS_SEQUENCE: i64 = 2;
const SUCCESS_PARTIAL: i64 = 3;

/// Where and how to replay.
pub struct Options {
    /// `host:port` of the server's driver port.
    pub addr: String,
    pub user: String,
    pub password: String,
    /// How long to wait for each response.
    pub timeout: Duration,
}

/// One file's tally.
pub struct FileOutcome {
    pub name: String,
    pub passed: usize,
    pub failed: usize,
    /// Lines left out: recorded for an `admin` without a password, when
    /// one is set.
    pub skipped: usize,
}

/// A replay's tally, and one line per mismatch:
/// `file:step (desc): path: expected X, got Y`.
#[derive(Default)]
pub struct Outcome {
    pub files: Vec<FileOutcome>,
    pub mismatches: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> usize {
        self.files.iter().map(|f| f.passed).sum()
    }

    pub fn failed(&self) -> usize {
        self.files.iter().map(|f| f.failed).sum()
    }

    pub fn skipped(&self) -> usize {
        self.files.iter().map(|f| f.skipped).sum()
    }
}

/// Replays `files`, in the order given, against the server at `opts.addr`.
pub async fn replay(opts: &Options, files: &[PathBuf]) -> Outcome {
    let server_name = server_name_of(opts).await;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let mut outcome = Outcome::default();
    for (n, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let lines: Vec<(Value, Json)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{name}: not a JSON line: {e}"));
                let ordered = ordered::parse(l).unwrap_or_else(|e| panic!("{name}: {e}"));
                (value, ordered)
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        let mut res = FileResult {
            name: name.clone(),
            failed_steps: Vec::new(),
            messages: Vec::new(),
        };
        let count = lines.len();
        let total = if lines[0].0.get("handshake").is_some() {
            run_handshake(opts, &mut res, &lines).await
        } else {
            let fresh_db = format!("{DB_PLACEHOLDER}_{run_id}_{n}");
            let norm = Norm {
                fresh_db: Some(fresh_db.clone()),
                server_name: server_name.clone(),
            };
            let exchanges: Vec<Ex> = lines.iter().map(|(v, j)| Ex::new(v, j)).collect();
            run_exchanges(opts, &mut res, &norm, &exchanges, &fresh_db).await
        };
        let failed = res.failed_steps.len();
        outcome.files.push(FileOutcome {
            name,
            passed: total - failed,
            failed,
            skipped: count - total,
        });
        outcome.mismatches.append(&mut res.messages);
    }
    outcome
}

struct FileResult {
    name: String,
    failed_steps: Vec<i64>,
    messages: Vec<String>,
}

impl FileResult {
    fn mismatch(&mut self, step: i64, desc: &str, msg: &str) {
        if !self.failed_steps.contains(&step) {
            self.failed_steps.push(step);
        }
        let desc: String = desc.chars().take(70).collect();
        let line = format!("{}:{step} ({desc}): {msg}", self.name);
        self.messages.push(line);
    }
}

/// One line of an exchange file.
struct Ex {
    conn: i64,
    step: i64,
    desc: String,
    token: u64,
    /// What is sent, with its keys in the recorded order.
    send: Json,
    /// The query type, when `send` is a list.
    query_type: Option<i64>,
    recv: Vec<Value>,
    recv_seq: Vec<i64>,
    seq: i64,
    unordered: bool,
    only: Option<Vec<Value>>,
    wait_ms: f64,
}

impl Ex {
    fn new(v: &Value, ordered: &Json) -> Ex {
        let int = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or_default();
        let send = ordered.get("send").cloned().unwrap_or(Json::Null);
        let query_type = match &send {
            Json::Array(items) => match items.first() {
                Some(Json::Int(n)) => n.parse().ok(),
                _ => None,
            },
            _ => None,
        };
        Ex {
            conn: int("conn"),
            step: int("step"),
            desc: v
                .get("desc")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            token: v.get("token").and_then(Value::as_u64).unwrap_or_default(),
            send,
            query_type,
            recv: v
                .get("recv")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            recv_seq: v
                .get("recv_seq")
                .and_then(Value::as_array)
                .map(|s| s.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
            seq: int("seq"),
            unordered: v.get("unordered").is_some_and(truthy),
            only: v
                .get("norm")
                .and_then(|n| n.get("only"))
                .and_then(Value::as_array)
                .cloned(),
            wait_ms: v.get("wait_ms").and_then(Value::as_f64).unwrap_or(0.0),
        }
    }

    fn hints(&self) -> Hints<'_> {
        Hints {
            only: self.only.as_deref(),
            unordered: self.unordered,
        }
    }
}

fn response_type(v: &Value) -> Option<i64> {
    v.get("t").and_then(Value::as_i64)
}

fn items_of(v: &Value) -> Vec<Value> {
    v.get("r")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// How a stream ended, or was recorded to end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Open,
    Complete,
    Error,
    Stopped,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Open => "still open",
            End::Complete => "complete",
            End::Error => "error",
            End::Stopped => "stopped",
        }
    }
}

/// The recorded expectation and the live state of one streamed token (a
/// START answered with a sequence).
struct Stream {
    key: (i64, u64),
    /// The line of the START.
    start: usize,
    unordered: bool,
    feed: bool,
    /// (recv_seq, response, line, index in that line's recv)
    exp_resps: Vec<(i64, Value, usize, usize)>,
    exp_docs: Vec<Value>,
    exp_end: End,
    exp_error: Value,
    /// (items so far, line whose recorded response brought them)
    owner: Vec<(usize, usize)>,
    docs: Vec<Value>,
    first: Option<Value>,
    pending: i64,
    ended: Option<End>,
    end_resp: Option<Value>,
    stop_sent: bool,
    dead: bool,
    /// Items already compared.
    checked: usize,
}

impl Stream {
    fn new(key: (i64, u64), start: usize, ex: &Ex) -> Stream {
        Stream {
            key,
            start,
            unordered: ex.unordered,
            feed: ex.recv.first().is_some_and(is_feed),
            exp_resps: Vec::new(),
            exp_docs: Vec::new(),
            exp_end: End::Open,
            exp_error: Value::Null,
            owner: Vec::new(),
            docs: Vec::new(),
            first: None,
            pending: 0,
            ended: None,
            end_resp: None,
            stop_sent: false,
            dead: false,
            checked: 0,
        }
    }
}

/// Where a recorded response leads: its stream, the items the recording
/// had by then, whether it is the stream's last, and whether it closes a
/// window of feed responses compared together.
#[derive(Clone, Copy)]
struct RespEvent {
    stream: usize,
    cum: usize,
    terminal: bool,
    window_end: bool,
}

async fn run_exchanges(
    opts: &Options,
    res: &mut FileResult,
    norm: &Norm,
    lines: &[Ex],
    fresh_db: &str,
) -> usize {
    // Which lines belong to streams.
    let mut key_order: Vec<(i64, u64)> = Vec::new();
    let mut by_token: HashMap<(i64, u64), Vec<usize>> = HashMap::new();
    for (i, ex) in lines.iter().enumerate() {
        let key = (ex.conn, ex.token);
        by_token
            .entry(key)
            .or_insert_with(|| {
                key_order.push(key);
                Vec::new()
            })
            .push(i);
    }
    let mut streams: Vec<Stream> = Vec::new();
    let mut stream_of_step: HashMap<i64, usize> = HashMap::new();
    for key in &key_order {
        let mut exs = by_token[key].clone();
        exs.sort_by_key(|&i| lines[i].seq);
        let mut current: Option<usize> = None;
        for i in exs {
            let ex = &lines[i];
            if ex.query_type == Some(START) {
                current = None;
                let first = ex.recv.first();
                if first.is_some_and(|r| {
                    r.is_object()
                        && matches!(response_type(r), Some(SUCCESS_SEQUENCE | SUCCESS_PARTIAL))
                }) {
                    let mut st = Stream::new(*key, i, ex);
                    for (k, (s, rsp)) in ex.recv_seq.iter().zip(&ex.recv).enumerate() {
                        st.exp_resps.push((*s, rsp.clone(), i, k));
                    }
                    streams.push(st);
                    current = Some(streams.len() - 1);
                    stream_of_step.insert(ex.step, streams.len() - 1);
                }
                continue;
            }
            let Some(si) = current else { continue };
            if !matches!(ex.query_type, Some(CONTINUE | STOP)) {
                continue;
            }
            let st = &mut streams[si];
            let done_before = st
                .exp_resps
                .iter()
                .any(|(rs, rsp, _, _)| *rs < ex.seq && response_type(rsp) != Some(SUCCESS_PARTIAL));
            if done_before || st.exp_end == End::Stopped {
                // Later frames on this token are plain exchanges.
                current = None;
                continue;
            }
            stream_of_step.insert(ex.step, si);
            if ex.query_type == Some(STOP) {
                st.exp_end = End::Stopped;
            }
            for (k, (s, rsp)) in ex.recv_seq.iter().zip(&ex.recv).enumerate() {
                st.exp_resps.push((*s, rsp.clone(), i, k));
            }
        }
    }
    let mut resp_event: HashMap<(i64, usize), RespEvent> = HashMap::new();
    for (si, st) in streams.iter_mut().enumerate() {
        st.exp_resps.sort_by_key(|r| r.0);
        // Feed responses that arrived with no frame sent on another
        // connection in between (no new write) are compared together.
        let mut others: Vec<i64> = lines
            .iter()
            .filter(|e| e.conn != st.key.0)
            .map(|e| e.seq)
            .collect();
        others.sort_unstable();
        let epochs: Vec<usize> = st
            .exp_resps
            .iter()
            .map(|r| others.partition_point(|&x| x < r.0))
            .collect();
        let mut cum = 0;
        let count = st.exp_resps.len();
        for n in 0..count {
            let (_, rsp, line, i) = st.exp_resps[n].clone();
            let t = response_type(&rsp);
            if matches!(t, Some(SUCCESS_SEQUENCE | SUCCESS_PARTIAL)) {
                st.exp_docs.extend(items_of(&rsp));
                cum = st.exp_docs.len();
                st.owner.push((cum, line));
                if t == Some(SUCCESS_SEQUENCE) && st.exp_end != End::Stopped {
                    st.exp_end = End::Complete;
                }
            } else {
                st.exp_end = End::Error;
                st.exp_error = rsp;
            }
            let last = n == count - 1;
            let window_end = last || !st.feed || epochs[n] != epochs[n + 1];
            resp_event.insert(
                (lines[line].step, i),
                RespEvent {
                    stream: si,
                    cum,
                    terminal: last && st.exp_end != End::Open,
                    window_end,
                },
            );
        }
    }

    // (seq, 0 = send / 1 = response, line, index of the response)
    let mut events: Vec<(i64, u8, usize, Option<usize>)> = Vec::new();
    for (i, ex) in lines.iter().enumerate() {
        events.push((ex.seq, 0, i, None));
        for (k, s) in ex.recv_seq.iter().enumerate() {
            events.push((*s, 1, i, Some(k)));
        }
    }
    events.sort_by_key(|e| (e.0, e.1));

    let mut conns: Vec<(i64, Option<Conn>)> = Vec::new();
    for (_, _, line, response) in events {
        let ex = &lines[line];
        let at = match conns.iter().position(|(n, _)| *n == ex.conn) {
            Some(at) => at,
            None => {
                match Conn::open(&opts.addr, &opts.user, &opts.password, opts.timeout).await {
                    Ok(c) => conns.push((ex.conn, Some(c))),
                    Err(e) => {
                        res.mismatch(
                            ex.step,
                            &ex.desc,
                            &format!("cannot open connection {}: {e}", ex.conn),
                        );
                        conns.push((ex.conn, None));
                        continue;
                    }
                }
                conns.len() - 1
            }
        };
        let Some(c) = conns[at].1.as_mut() else {
            if response.is_none() {
                res.mismatch(
                    ex.step,
                    &ex.desc,
                    &format!("connection {} could not be opened", ex.conn),
                );
            }
            continue;
        };
        let stream = stream_of_step.get(&ex.step).copied();
        match response {
            None => {
                if ex.wait_ms > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(ex.wait_ms / 1000.0)).await;
                }
                do_send(c, ex, stream.map(|s| &mut streams[s]), fresh_db).await;
            }
            Some(i) => match stream {
                Some(_) => {
                    let event = resp_event[&(ex.step, i)];
                    let st = &mut streams[event.stream];
                    stream_event(opts, res, norm, c, lines, line, st, event, i).await;
                }
                None => plain_recv(opts, res, norm, c, ex, i).await,
            },
        }
    }

    // Responses nobody asked for.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (cn, c) in &conns {
        let Some(c) = c else { continue };
        for (token, resps) in c.pending() {
            if let Some(st) = streams.iter().find(|s| s.key == (*cn, token)) {
                if st.stop_sent || st.ended.is_some() || st.exp_end == End::Open {
                    continue;
                }
            }
            if let Some(last) = lines.iter().rfind(|e| e.conn == *cn && e.token == token) {
                let got: Vec<Value> = resps
                    .iter()
                    .map(|r| norm.value(&strip_response(r)))
                    .collect();
                res.mismatch(
                    last.step,
                    &last.desc,
                    &format!(
                        "unexpected extra response(s): {}",
                        short(&Value::Array(got))
                    ),
                );
            }
        }
    }
    for (_, c) in conns {
        if let Some(c) = c {
            c.close().await;
        }
    }
    lines.len()
}

async fn do_send(c: &mut Conn, ex: &Ex, st: Option<&mut Stream>, fresh_db: &str) {
    let payload = ex.send.replace_in_strings(DB_PLACEHOLDER, fresh_db);
    // A failed write shows as a missing answer.
    let Some(st) = st else {
        let _ = c.send(ex.token, &payload).await;
        return;
    };
    match ex.query_type {
        Some(START) => {
            let _ = c.send(ex.token, &payload).await;
            st.pending += 1;
        }
        Some(CONTINUE) if st.ended.is_none() && !st.stop_sent && st.pending == 0 && !st.dead => {
            let _ = c.send(ex.token, &payload).await;
            st.pending += 1;
        }
        Some(STOP) if st.ended.is_none() && !st.dead => {
            let _ = c.send(ex.token, &payload).await;
            st.pending += 1;
            st.stop_sent = true;
        }
        _ => {}
    }
}

fn continue_frame() -> Json {
    Json::Array(vec![Json::Int(CONTINUE.to_string())])
}

async fn plain_recv(
    opts: &Options,
    res: &mut FileResult,
    norm: &Norm,
    c: &mut Conn,
    ex: &Ex,
    i: usize,
) {
    let exp = apply_hints(&strip_response(&norm.expected(&ex.recv[i])), &ex.hints());
    let mut act = match c.recv(ex.token, opts.timeout).await {
        Ok(v) => v,
        Err(RecvError::Timeout) => {
            let msg = format!(
                "timeout: no response within {:.1}s (expected {})",
                opts.timeout.as_secs_f64(),
                short(&exp)
            );
            return res.mismatch(ex.step, &ex.desc, &msg);
        }
        Err(RecvError::Closed(e)) => {
            return res.mismatch(
                ex.step,
                &ex.desc,
                &format!("{e} (expected {})", short(&exp)),
            );
        }
    };
    if ex.query_type == Some(START)
        && exp.is_object()
        && response_type(&exp).unwrap_or(0) >= 16
        && response_type(&act) == Some(SUCCESS_PARTIAL)
    {
        // The error was recorded in the first answer; a server with other
        // batch sizes may first return some batches: read on until the
        // error (or the end of the stream).
        while response_type(&act) == Some(SUCCESS_PARTIAL) {
            let _ = c.send(ex.token, &continue_frame()).await;
            match c.recv(ex.token, opts.timeout).await {
                Ok(v) => act = v,
                Err(e) => {
                    let kind = match e {
                        RecvError::Timeout => "TimeoutError",
                        RecvError::Closed(_) => "EOFError",
                    };
                    let msg = format!(
                        "stream stalled before the expected error {}: {kind}",
                        short(&exp)
                    );
                    return res.mismatch(ex.step, &ex.desc, &msg);
                }
            }
        }
    }
    let act = apply_hints(&strip_response(&norm.value(&act)), &ex.hints());
    if let Some(d) = first_diff(&exp, &act, "$") {
        res.mismatch(ex.step, &ex.desc, &d);
    }
}

/// Reads one response of a stream, sending CONTINUE first when nothing is
/// outstanding; false when there is nothing more to read.
async fn pull(
    opts: &Options,
    res: &mut FileResult,
    c: &mut Conn,
    st: &mut Stream,
    ex: &Ex,
) -> bool {
    if st.pending == 0 {
        if st.ended.is_some() || st.stop_sent {
            return false;
        }
        let _ = c.send(st.key.1, &continue_frame()).await;
        st.pending += 1;
    }
    let r = match c.recv(st.key.1, opts.timeout).await {
        Ok(r) => r,
        Err(RecvError::Timeout) => {
            st.dead = true;
            let msg = format!(
                "timeout: stream stalled after {} of {} expected items",
                st.docs.len(),
                st.exp_docs.len()
            );
            res.mismatch(ex.step, &ex.desc, &msg);
            return false;
        }
        Err(RecvError::Closed(e)) => {
            st.dead = true;
            res.mismatch(ex.step, &ex.desc, &e);
            return false;
        }
    };
    st.pending -= 1;
    if st.first.is_none() {
        st.first = Some(r.clone());
    }
    let t = response_type(&r);
    if matches!(t, Some(SUCCESS_PARTIAL | SUCCESS_SEQUENCE)) {
        st.docs.extend(items_of(&r));
        if t == Some(SUCCESS_SEQUENCE) && st.pending == 0 {
            st.ended = Some(if st.stop_sent {
                End::Stopped
            } else {
                End::Complete
            });
            st.end_resp = Some(r);
        }
    } else {
        st.ended = Some(End::Error);
        st.end_resp = Some(r);
    }
    true
}

fn sorted_notes(v: &Value) -> Vec<f64> {
    let mut n: Vec<f64> = v
        .get("n")
        .and_then(Value::as_array)
        .map(|n| n.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
        .unwrap_or_default();
    n.sort_by(f64::total_cmp);
    n
}

/// A recorded response of a stream: waits until the stream has as many
/// items as the recording had at that point, then compares the new ones
/// (and, at the last response, how the stream ended).
#[allow(clippy::too_many_arguments)]
async fn stream_event(
    opts: &Options,
    res: &mut FileResult,
    norm: &Norm,
    c: &mut Conn,
    lines: &[Ex],
    line: usize,
    st: &mut Stream,
    event: RespEvent,
    idx: usize,
) {
    let ex = &lines[line];
    let RespEvent {
        cum,
        terminal,
        window_end,
        ..
    } = event;
    if st.dead {
        return;
    }
    loop {
        if terminal {
            if st.ended.is_some() || (st.stop_sent && st.pending == 0) {
                break;
            }
        } else if (st.docs.len() >= cum && st.first.is_some()) || st.ended.is_some() {
            break;
        }
        if !pull(opts, res, c, st, ex).await {
            break;
        }
    }
    if st.dead {
        return;
    }
    if let (Some(first), 0, true) = (&st.first, idx, line == st.start) {
        let exp_first = norm.expected(&lines[st.start].recv[0]);
        let act_first = norm.value(first);
        if !matches!(
            response_type(&act_first),
            Some(SUCCESS_PARTIAL | SUCCESS_SEQUENCE)
        ) {
            let msg = format!(
                "expected a stream, got {}",
                short(&strip_response(&act_first))
            );
            res.mismatch(ex.step, &ex.desc, &msg);
            st.dead = true;
            return;
        }
        if sorted_notes(&exp_first) != sorted_notes(&act_first) {
            let notes = |v: &Value| short(v.get("n").unwrap_or(&Value::Null));
            let msg = format!(
                "notes: expected {}, got {}",
                notes(&exp_first),
                notes(&act_first)
            );
            res.mismatch(ex.step, &ex.desc, &msg);
        }
    }
    let exp_docs: Vec<Value> = st.exp_docs.iter().map(|d| norm.expected(d)).collect();
    let act_docs: Vec<Value> = st.docs.iter().map(|d| norm.value(d)).collect();
    if st.unordered {
        // The unordered prefix of a stopped stream is only counted.
        if terminal && st.exp_end != End::Stopped {
            let (mut e, mut a) = (exp_docs.clone(), act_docs.clone());
            sort_canonically(&mut e);
            sort_canonically(&mut a);
            if let Some(d) = first_diff(&Value::Array(e), &Value::Array(a), "$docs(sorted)") {
                res.mismatch(ex.step, &ex.desc, &d);
            }
        }
    } else {
        let mut upto = if terminal { exp_docs.len() } else { cum };
        if st.stop_sent && act_docs.len() < upto {
            // The rest was recorded after STOP was sent: how much arrives
            // depends on batch sizes.
            upto = act_docs.len();
        }
        let lo = st.checked;
        if upto > lo && (window_end || terminal) {
            let mut e_w = exp_docs[lo.min(exp_docs.len())..upto.min(exp_docs.len())].to_vec();
            let mut a_w = act_docs[lo.min(act_docs.len())..upto.min(act_docs.len())].to_vec();
            if st.feed {
                e_w = canon_window(&e_w);
                a_w = canon_window(&a_w);
            }
            let mut diff = None;
            let mut at = line;
            for (k, (x, y)) in e_w.iter().zip(&a_w).enumerate() {
                if let Some(d) = first_diff(x, y, &format!("$items[{}]", lo + k)) {
                    // Reported on the line whose recorded response held the item.
                    at = st
                        .owner
                        .iter()
                        .find(|(n, _)| *n > lo + k)
                        .map_or(line, |(_, e)| *e);
                    diff = Some(d);
                    break;
                }
            }
            if diff.is_none() && e_w.len() != a_w.len() {
                diff = Some(format!(
                    "$items: expected {upto} items up to here, got {}",
                    lo + a_w.len()
                ));
            }
            if let Some(d) = diff {
                res.mismatch(lines[at].step, &lines[at].desc, &d);
            }
            st.checked = upto;
        }
    }
    if !terminal {
        return;
    }
    match st.exp_end {
        End::Complete => {
            if st.ended != Some(End::Complete) {
                let how = st.ended.unwrap_or(End::Open).name();
                let detail = st.end_resp.as_ref().map_or(String::new(), |r| {
                    format!(": {}", short(&strip_response(&norm.value(r))))
                });
                let msg =
                    format!("stream should be complete (SUCCESS_SEQUENCE) but is {how}{detail}");
                res.mismatch(ex.step, &ex.desc, &msg);
            } else if act_docs.len() != exp_docs.len() {
                let msg = format!(
                    "stream length: expected {} items, got {}",
                    exp_docs.len(),
                    act_docs.len()
                );
                res.mismatch(ex.step, &ex.desc, &msg);
            }
        }
        End::Error => {
            let exp_err = strip_response(&norm.expected(&st.exp_error));
            let act_err = st
                .end_resp
                .as_ref()
                .map_or(Value::Null, |r| strip_response(&norm.value(r)));
            if let Some(d) = first_diff(&exp_err, &act_err, "$") {
                res.mismatch(ex.step, &ex.desc, &format!("stream error: {d}"));
            }
            if act_docs.len() != exp_docs.len() && !st.unordered {
                let msg = format!(
                    "items before the error: expected {}, got {}",
                    exp_docs.len(),
                    act_docs.len()
                );
                res.mismatch(ex.step, &ex.desc, &msg);
            }
        }
        End::Stopped => {
            if let Some(r) = &st.end_resp {
                if !matches!(response_type(r), Some(SUCCESS_SEQUENCE | SUCCESS_PARTIAL)) {
                    let msg = format!(
                        "STOP answered with {}",
                        short(&strip_response(&norm.value(r)))
                    );
                    res.mismatch(ex.step, &ex.desc, &msg);
                }
            }
            if act_docs.len() < exp_docs.len() && !st.stop_sent {
                let msg = format!(
                    "stopped stream: expected at least {} items, got {}",
                    exp_docs.len(),
                    act_docs.len()
                );
                res.mismatch(ex.step, &ex.desc, &msg);
            }
        }
        End::Open => {}
    }
}

/// The server's name, from a SERVER_INFO query, to write back as
/// `<server_name>`.
async fn server_name_of(opts: &Options) -> Option<String> {
    let mut c = match Conn::open(&opts.addr, &opts.user, &opts.password, opts.timeout).await {
        Ok(c) => c,
        Err(e) => {
            println!("cannot connect to {}: {e}", opts.addr);
            return None;
        }
    };
    let info = Json::Array(vec![Json::Int(SERVER_INFO.to_string())]);
    let name = match c.send(0, &info).await {
        Ok(()) => c.recv(0, opts.timeout).await.ok().and_then(|r| {
            (response_type(&r) == Some(SERVER_INFO) && r.get("r").is_some_and(truthy))
                .then(|| r["r"][0].get("name")?.as_str().map(str::to_owned))
                .flatten()
        }),
        Err(_) => None,
    };
    c.close().await;
    name
}

// ------------------------------------------------------------ handshakes

async fn run_handshake(opts: &Options, res: &mut FileResult, lines: &[(Value, Json)]) -> usize {
    let mut skipped = 0;
    for (line, ordered) in lines {
        let step = line.get("conn").and_then(Value::as_i64).unwrap_or_default();
        let desc = line.get("desc").and_then(Value::as_str).unwrap_or("");
        let client = line.get("client").cloned().unwrap_or(Value::Null);
        if client.get("needs_empty_password").is_some_and(truthy) && !opts.password.is_empty() {
            // Recorded for an admin user without a password.
            skipped += 1;
            continue;
        }
        let err = match tokio::time::timeout(opts.timeout * 3, one_handshake(opts, line, ordered))
            .await
        {
            Ok(Ok(diff)) => diff,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("TimeoutError: the handshake took too long".into()),
        };
        if let Some(e) = err {
            res.mismatch(step, desc, &e);
        }
    }
    lines.len() - skipped
}

fn items(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

fn ordered_items(v: Option<&Json>) -> Vec<Json> {
    match v {
        Some(Json::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// Whether the server closed the connection first.
fn server_closes(items: &[Value]) -> bool {
    let closed = |dir: &str| -> Vec<i64> {
        items
            .iter()
            .filter(|it| it.get("closed").is_some_and(truthy) && it["dir"] == dir)
            .filter_map(|it| it.get("seq").and_then(Value::as_i64))
            .collect()
    };
    let (s, c) = (closed("s2c"), closed("c2s"));
    !s.is_empty() && (c.is_empty() || s[0] < c[0])
}

/// A handshake message with its random parts masked.
fn norm_hs(m: &Value, password_set: bool) -> Value {
    let Some(auth) = m.get("authentication").and_then(Value::as_str) else {
        return m.clone();
    };
    let parts: Vec<String> = auth
        .split(',')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = match k {
                "r" => "<nonce>",
                "s" => "<salt>",
                "v" => "<signature>",
                "p" => "<proof>",
                "i" if password_set => "<iterations>",
                _ => v,
            };
            // As Python's `partition`: a part without `=` gets one.
            format!("{k}={v}")
        })
        .collect();
    let mut m = m.clone();
    m["authentication"] = Value::String(parts.join(","));
    m
}

/// One connection of `handshake.jsonl`: a difference, or `Ok(None)`.
async fn one_handshake(
    opts: &Options,
    line: &Value,
    ordered: &Json,
) -> Result<Option<String>, String> {
    let client = line.get("client").cloned().unwrap_or(Value::Null);
    let hs = items(line.get("handshake"));
    let hs_ordered = ordered_items(ordered.get("handshake"));
    let password_set = !opts.password.is_empty();
    let exp_s2c: Vec<&Value> = hs
        .iter()
        .filter(|it| it["dir"] == "s2c" && (it.get("msg").is_some() || it.get("hex").is_some()))
        .collect();
    let closes = server_closes(&hs);
    let mut c = Conn::tcp(&opts.addr, opts.timeout).await?;
    let result = async {
        if client.get("kind").and_then(Value::as_str) == Some("scram") {
            let user = client
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or("admin");
            let password = client
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or(&opts.password);
            let got = c.scram(user, password, opts.timeout).await?;
            let exp: Vec<Value> = exp_s2c
                .iter()
                .map(|it| it.get("msg").cloned().ok_or("KeyError: 'msg'"))
                .collect::<Result<_, _>>()?;
            if got.len() != exp.len() {
                return Ok(Some(format!(
                    "expected {} server messages, got {}: {}",
                    exp.len(),
                    got.len(),
                    short(&Value::Array(got))
                )));
            }
            for (n, (e, a)) in exp.iter().zip(&got).enumerate() {
                let d = first_diff(
                    &norm_hs(e, password_set),
                    &norm_hs(a, password_set),
                    &format!("$msg[{n}]"),
                );
                if d.is_some() {
                    return Ok(d);
                }
            }
            let after = items(line.get("after"));
            let after_ordered = ordered_items(ordered.get("after"));
            if client.get("query").is_some_and(|q| !q.is_null()) && !after.is_empty() {
                let q = after
                    .iter()
                    .position(|f| f["dir"] == "c2s")
                    .ok_or("IndexError")?;
                let r = after
                    .iter()
                    .find(|f| f["dir"] == "s2c")
                    .ok_or("IndexError")?;
                let token = after[q]
                    .get("token")
                    .and_then(Value::as_u64)
                    .unwrap_or_default();
                let payload = after_ordered[q].get("json").cloned().unwrap_or(Json::Null);
                c.send(token, &payload).await?;
                let head = c.read_exact(12, opts.timeout).await?;
                let got_token = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
                let len = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default()) as usize;
                let body = c.read_exact(len, opts.timeout).await?;
                let body: Value =
                    serde_json::from_slice(&body).map_err(|e| format!("JSONDecodeError: {e}"))?;
                let expected = json!([r.get("token"), r.get("json")]);
                let d = first_diff(&expected, &json!([got_token, body]), "$after");
                if d.is_some() {
                    return Ok(d);
                }
            }
        } else {
            let mut last_server_first: Option<String> = None;
            for (it, it_ordered) in hs.iter().zip(&hs_ordered) {
                if it.get("closed").is_some_and(truthy) {
                    continue;
                }
                if it["dir"] == "c2s" {
                    let data = match it_ordered.get("msg") {
                        Some(msg) => {
                            let mut msg = msg.clone();
                            if let (Some(server_first), Json::Object(fields)) =
                                (&last_server_first, &mut msg)
                            {
                                let auth = fields.iter_mut().find(|(k, _)| k == "authentication");
                                if let Some((_, Json::String(auth))) = auth {
                                    if auth.starts_with("c=biws,r=") {
                                        // The recorded proof, with the
                                        // server's current nonce.
                                        let attrs = reql_client::scram::attributes(server_first);
                                        let nonce = reql_client::scram::attribute(&attrs, 'r')
                                            .ok_or("KeyError: 'r'")?;
                                        let rest = auth.split_once(",p=").ok_or("IndexError")?.1;
                                        *auth = format!("c=biws,r={nonce},p={rest}");
                                    }
                                }
                            }
                            let mut data = dumps(&msg, PYTHON_DEFAULT).into_bytes();
                            data.push(0);
                            data
                        }
                        None => decode_hex(it.get("hex").and_then(Value::as_str).unwrap_or(""))?,
                    };
                    c.write_raw(&data).await?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else if let Some(msg) = it.get("msg") {
                    let a = c.read_json(opts.timeout).await?;
                    if let Some(auth) = a.get("authentication").and_then(Value::as_str) {
                        if auth.starts_with("r=") {
                            last_server_first = Some(auth.to_owned());
                        }
                    }
                    let d = first_diff(
                        &norm_hs(msg, password_set),
                        &norm_hs(&a, password_set),
                        "$s2c",
                    );
                    if d.is_some() {
                        return Ok(d);
                    }
                } else {
                    let want = decode_hex(it.get("hex").and_then(Value::as_str).unwrap_or(""))?;
                    let got = c.read_exact(want.len(), opts.timeout).await?;
                    if got != want {
                        return Ok(Some(format!(
                            "bytes: expected {:?}, got {:?}",
                            String::from_utf8_lossy(&want[..want.len().min(120)]),
                            String::from_utf8_lossy(&got[..got.len().min(120)])
                        )));
                    }
                }
            }
        }
        if closes {
            let extra = match c.read_some(opts.timeout).await {
                Ok(extra) => extra,
                Err(e) if e.starts_with("TimeoutError") => {
                    return Ok(Some("server did not close the connection".into()))
                }
                Err(e) => return Err(e),
            };
            if !extra.is_empty() {
                return Ok(Some(format!(
                    "unexpected bytes before close: {:?}",
                    String::from_utf8_lossy(&extra[..extra.len().min(120)])
                )));
            }
        }
        Ok(None)
    }
    .await;
    c.close().await;
    result
}
