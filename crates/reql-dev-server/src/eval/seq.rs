//! Lazy sequences: table reads, ranges, arrays and changefeeds, with the
//! transformations applied to them as documents are pulled.
//!
//! A table read keeps one cursor per hash shard. Per-document transformations
//! (map, filter, pluck, ...) run inside each shard's pipeline, and the shards
//! are then merged in index order or visited in turn for unordered reads. That is
//! how RethinkDB evaluates them, which decides which document an error names.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Bound, Env, Evaluator, FuncVal, QueryCtx};
use crate::datum::{Datum, Obj, SHARDS};
use crate::error::{ReqlError, Result};
use crate::feed::{FeedSource, SortKey};
use crate::storage::{ScanSpec, Table};
use crate::term::Term;

/// A `filter` predicate.
#[derive(Clone)]
pub enum Pred {
    Func(FuncVal),
    /// An object: documents match when they have these fields with these values.
    Match(Datum),
    Const(bool),
}

/// What `filter` does when its predicate hits a missing field.
#[derive(Clone)]
pub enum FilterDefault {
    Skip,
    Lazy(Term, Env),
}

#[derive(Clone)]
pub enum MergeArg {
    Func(FuncVal),
    Value(Datum),
}

#[derive(Clone)]
pub enum Op {
    Map(FuncVal),
    Filter(Pred, FilterDefault),
    ConcatMap(FuncVal),
    Pluck(Vec<Datum>),
    Without(Vec<Datum>),
    Merge(Vec<MergeArg>),
    GetField(String),
    HasFields(Vec<Datum>),
    WithFields(Vec<Datum>),
    Skip(usize),
    Limit(usize),
}

impl Op {
    /// Stateless per-document operations, which a table read runs per shard.
    fn is_local(&self) -> bool {
        !matches!(self, Op::Skip(_) | Op::Limit(_))
    }

    /// Whether the operation can remove documents from the stream.
    fn may_drop(&self) -> bool {
        matches!(
            self,
            Op::Filter(..)
                | Op::HasFields(_)
                | Op::WithFields(_)
                | Op::GetField(_)
                | Op::ConcatMap(_)
                | Op::Skip(_)
        )
    }

    /// Whether the operation keeps documents whole (so writes can still follow).
    pub fn keeps_selection(&self) -> bool {
        matches!(
            self,
            Op::Filter(..) | Op::HasFields(_) | Op::Skip(_) | Op::Limit(_)
        )
    }
}

/// Result of matching an object predicate against a document.
pub fn matches_object(doc: &Datum, pattern: &Datum) -> Result<bool> {
    match (doc, pattern) {
        (Datum::Object(d), Datum::Object(p)) if pattern.ptype().is_none() => {
            for (k, pv) in p.iter() {
                match d.get(k) {
                    None => {
                        return Err(ReqlError::missing(format!(
                            "No attribute `{k}` in object:\n{}",
                            doc.pretty()
                        )))
                    }
                    Some(dv) => {
                        if pv.as_obj().is_some() && pv.ptype().is_none() {
                            if !matches_object(dv, pv)? {
                                return Ok(false);
                            }
                        } else if dv != pv {
                            return Ok(false);
                        }
                    }
                }
            }
            Ok(true)
        }
        _ => Ok(doc == pattern),
    }
}

// ------------------------------------------------------------------ pluck and friends

fn field_paths(paths: &[Datum], out: &mut Vec<(String, Option<Vec<Datum>>)>) -> Result<()> {
    for p in paths {
        match p {
            Datum::Str(s) => out.push((s.to_string(), None)),
            Datum::Array(a) => field_paths(a, out)?,
            Datum::Object(o) => {
                for (k, v) in o.iter() {
                    match v {
                        Datum::Bool(true) => out.push((k.clone(), None)),
                        Datum::Bool(false) => {}
                        other => out.push((k.clone(), Some(vec![other.clone()]))),
                    }
                }
            }
            other => {
                return Err(ReqlError::logic(format!(
                    "Invalid path argument `{}`.",
                    other.to_json().unwrap_or_default()
                )))
            }
        }
    }
    Ok(())
}

pub fn pluck(doc: &Datum, paths: &[Datum]) -> Result<Datum> {
    match doc {
        Datum::Array(items) => Ok(Datum::array(
            items
                .iter()
                .map(|d| pluck(d, paths))
                .collect::<Result<_>>()?,
        )),
        Datum::Object(o) => {
            let mut fields = Vec::new();
            field_paths(paths, &mut fields)?;
            let mut out = Obj::new();
            for (k, sub) in fields {
                if let Some(v) = o.get(&k) {
                    let v = match &sub {
                        Some(s) => pluck(v, s)?,
                        None => v.clone(),
                    };
                    out.insert(k, v);
                }
            }
            Ok(Datum::object(out))
        }
        other => Err(not_object_or_sequence("pluck", other)),
    }
}

/// RethinkDB's error for an object operation on a value that is neither an
/// object nor a sequence. On `null` (a missing document, say) it is a
/// missing value, which `default` catches.
pub fn not_object_or_sequence(op: &str, d: &Datum) -> ReqlError {
    let msg = format!(
        "Cannot perform {op} on a non-object non-sequence `{}`.",
        d.pretty()
    );
    if d.is_null() {
        ReqlError::missing(msg)
    } else {
        ReqlError::logic(msg)
    }
}

pub fn without(doc: &Datum, paths: &[Datum]) -> Result<Datum> {
    match doc {
        Datum::Array(items) => Ok(Datum::array(
            items
                .iter()
                .map(|d| without(d, paths))
                .collect::<Result<_>>()?,
        )),
        Datum::Object(o) => {
            let mut fields = Vec::new();
            field_paths(paths, &mut fields)?;
            let mut out: Obj = (**o).clone();
            for (k, sub) in fields {
                match sub {
                    None => {
                        out.remove(&k);
                    }
                    Some(s) => {
                        if let Some(v) = out.get(&k).cloned() {
                            out.insert(k, without(&v, &s)?);
                        }
                    }
                }
            }
            Ok(Datum::object(out))
        }
        other => Err(not_object_or_sequence("without", other)),
    }
}

pub fn has_fields(doc: &Datum, paths: &[Datum]) -> Result<bool> {
    let Some(o) = doc.as_obj() else {
        return Err(not_object_or_sequence("has_fields", doc));
    };
    let mut fields = Vec::new();
    field_paths(paths, &mut fields)?;
    for (k, sub) in fields {
        match o.get(&k) {
            None | Some(Datum::Null) => return Ok(false),
            Some(v) => {
                if let Some(s) = sub {
                    if v.as_obj().is_none() || !has_fields(v, &s)? {
                        return Ok(false);
                    }
                }
            }
        }
    }
    Ok(true)
}

/// The stray-literal check and removal RethinkDB does when a merge finishes.
pub fn merge_values(base: &Datum, patch: &Datum) -> Datum {
    if let Some(lit) = literal_value(patch) {
        return lit.unwrap_or(Datum::Null);
    }
    match (base, patch) {
        (Datum::Object(b), Datum::Object(p)) if patch.ptype().is_none() => {
            let mut out: Obj = (**b).clone();
            for (k, v) in p.iter() {
                if let Some(lit) = literal_value(v) {
                    match lit {
                        Some(l) => {
                            out.insert(k.clone(), l);
                        }
                        None => {
                            out.remove(k);
                        }
                    }
                    continue;
                }
                let merged = match out.get(k) {
                    Some(existing) => merge_values(existing, v),
                    None => strip_literals(v),
                };
                out.insert(k.clone(), merged);
            }
            Datum::object(out)
        }
        _ => strip_literals(patch),
    }
}

/// `Some(Some(v))` for `r.literal(v)`, `Some(None)` for `r.literal()`.
fn literal_value(d: &Datum) -> Option<Option<Datum>> {
    if d.ptype() == Some("LITERAL") {
        Some(d.get("value").cloned())
    } else {
        None
    }
}

fn strip_literals(d: &Datum) -> Datum {
    match d {
        Datum::Object(o) => {
            if let Some(l) = literal_value(d) {
                return l.unwrap_or(Datum::Null);
            }
            Datum::object(
                o.iter()
                    .filter(|(_, v)| literal_value(v) != Some(None))
                    .map(|(k, v)| (k.clone(), strip_literals(v)))
                    .collect(),
            )
        }
        _ => d.clone(),
    }
}

pub fn get_field(doc: &Datum, field: &str) -> Result<Datum> {
    match doc {
        Datum::Object(o) => o.get(field).cloned().ok_or_else(|| {
            ReqlError::missing(format!(
                "No attribute `{field}` in object:\n{}",
                doc.pretty()
            ))
        }),
        Datum::Null => Err(ReqlError::missing(
            "Cannot perform bracket on a non-object non-sequence `null`.",
        )),
        other => Err(ReqlError::logic(format!(
            "Cannot perform bracket on a non-object non-sequence `{}`.",
            other.pretty()
        ))),
    }
}

// ------------------------------------------------------------------ applying operations

enum Step {
    Continue,
    /// A limit has been reached: nothing after this can come out.
    Stop,
}

fn apply_ops(ops: &mut [Op], d: Datum, out: &mut VecDeque<Datum>) -> Result<Step> {
    let Some((op, rest)) = ops.split_first_mut() else {
        out.push_back(d);
        return Ok(Step::Continue);
    };
    match op {
        Op::Map(f) => apply_ops(rest, f.call_datum(&[d])?, out),
        Op::Filter(pred, default) => {
            if filter_keeps(pred, default, &d)? {
                apply_ops(rest, d, out)
            } else {
                Ok(Step::Continue)
            }
        }
        Op::ConcatMap(f) => {
            let v = f.call(vec![Bound::Datum(d)])?;
            let items = f.ctx.to_array(v)?;
            for x in items {
                if let Step::Stop = apply_ops(rest, x, out)? {
                    return Ok(Step::Stop);
                }
            }
            Ok(Step::Continue)
        }
        Op::Pluck(p) => apply_ops(rest, pluck(&d, p)?, out),
        Op::Without(p) => apply_ops(rest, without(&d, p)?, out),
        Op::Merge(args) => {
            let mut cur = d;
            for a in args.iter() {
                let patch = match a {
                    MergeArg::Value(v) => v.clone(),
                    MergeArg::Func(f) => f.call_datum(std::slice::from_ref(&cur))?,
                };
                cur = merge_values(&cur, &patch);
            }
            apply_ops(rest, cur, out)
        }
        Op::GetField(name) => match get_field(&d, name) {
            Ok(v) => apply_ops(rest, v, out),
            Err(e) if e.is_non_existence() => Ok(Step::Continue),
            Err(e) => Err(e),
        },
        Op::HasFields(p) => {
            if has_fields(&d, p)? {
                apply_ops(rest, d, out)
            } else {
                Ok(Step::Continue)
            }
        }
        Op::WithFields(p) => {
            if has_fields(&d, p)? {
                apply_ops(rest, pluck(&d, p)?, out)
            } else {
                Ok(Step::Continue)
            }
        }
        Op::Skip(n) => {
            if *n > 0 {
                *n -= 1;
                Ok(Step::Continue)
            } else {
                apply_ops(rest, d, out)
            }
        }
        Op::Limit(n) => {
            if *n == 0 {
                return Ok(Step::Stop);
            }
            *n -= 1;
            let step = apply_ops(rest, d, out)?;
            if *n == 0 {
                Ok(Step::Stop)
            } else {
                Ok(step)
            }
        }
    }
}

/// Runs per-document operations on one document; `None` when it is filtered out.
pub fn apply_local(ops: &mut [Op], d: Datum) -> Result<Option<Datum>> {
    let mut out = VecDeque::new();
    apply_ops(ops, d, &mut out)?;
    Ok(out.pop_front())
}

fn filter_keeps(pred: &Pred, default: &FilterDefault, d: &Datum) -> Result<bool> {
    let r = match pred {
        Pred::Const(b) => Ok(*b),
        Pred::Match(p) => matches_object(d, p),
        Pred::Func(f) => f.call_datum(std::slice::from_ref(d)).map(|v| v.truthy()),
    };
    match r {
        Err(e) if e.is_non_existence() => match default {
            FilterDefault::Skip => Ok(false),
            FilterDefault::Lazy(term, env) => {
                let ctx = match pred {
                    Pred::Func(f) => f.ctx.clone(),
                    _ => return Ok(false),
                };
                let mut env = env.clone();
                env.default_error = Some(e);
                let mut ev = Evaluator::with_env(&ctx, env);
                let v = ev.eval(term)?;
                let v = match v {
                    super::Val::Func(f) => f.call_datum(&[Datum::Null])?,
                    other => ctx.to_datum(other)?,
                };
                Ok(v.truthy())
            }
        },
        other => other,
    }
}

// ------------------------------------------------------------------ table reads

struct ShardCursor {
    raw: VecDeque<(SortKey, Datum)>,
    out: VecDeque<(SortKey, Datum)>,
    after: Option<SortKey>,
    exhausted: bool,
    chunk: usize,
}

pub struct TableScan {
    pub table: Arc<Table>,
    pub spec: ScanSpec,
    pub ordered: bool,
    pub local: Vec<Op>,
    shards: Vec<ShardCursor>,
    rr_order: Vec<usize>,
    rr_pos: usize,
}

impl TableScan {
    pub fn new(table: Arc<Table>, spec: ScanSpec, ordered: bool) -> TableScan {
        TableScan {
            table,
            spec,
            ordered,
            local: Vec::new(),
            shards: (0..SHARDS)
                .map(|_| ShardCursor {
                    raw: VecDeque::new(),
                    out: VecDeque::new(),
                    after: None,
                    exhausted: false,
                    chunk: 16,
                })
                .collect(),
            rr_order: (0..SHARDS).collect(),
            rr_pos: 0,
        }
    }

    /// Makes sure shard `s` has a transformed document ready, unless it is done.
    fn fill(&mut self, s: usize) -> Result<()> {
        loop {
            let cur = &mut self.shards[s];
            if !cur.out.is_empty() {
                return Ok(());
            }
            if let Some((key, doc)) = cur.raw.pop_front() {
                let mut produced = VecDeque::new();
                apply_ops(&mut self.local, doc, &mut produced)?;
                let cur = &mut self.shards[s];
                for d in produced {
                    cur.out.push_back((key.clone(), d));
                }
                continue;
            }
            if cur.exhausted {
                return Ok(());
            }
            let n = cur.chunk;
            let page = self
                .table
                .read()
                .scan_shard(s, &self.spec, cur.after.as_ref(), n);
            let cur = &mut self.shards[s];
            cur.chunk = (cur.chunk * 4).min(4096);
            if page.len() < n {
                cur.exhausted = true;
            }
            if let Some(last) = page.last() {
                cur.after = Some(last.0.clone());
            }
            cur.raw.extend(page);
        }
    }

    fn next(&mut self) -> Result<Option<Datum>> {
        if self.ordered {
            for s in 0..SHARDS {
                self.fill(s)?;
            }
            let desc = self.spec.desc;
            let mut best: Option<usize> = None;
            for s in 0..SHARDS {
                if let Some((k, _)) = self.shards[s].out.front() {
                    let better = match best {
                        None => true,
                        Some(b) => {
                            let bk = &self.shards[b].out[0].0;
                            if desc {
                                k > bk
                            } else {
                                k < bk
                            }
                        }
                    };
                    if better {
                        best = Some(s);
                    }
                }
            }
            return Ok(best
                .and_then(|b| self.shards[b].out.pop_front())
                .map(|e| e.1));
        }
        // RethinkDB's unordered reads take one document from each shard in turn; a
        // finished shard is replaced by the last one in the rotation.
        loop {
            if self.rr_order.is_empty() {
                return Ok(None);
            }
            if self.rr_pos >= self.rr_order.len() {
                self.rr_pos = 0;
            }
            let s = self.rr_order[self.rr_pos];
            self.fill(s)?;
            if let Some((_, d)) = self.shards[s].out.pop_front() {
                self.rr_pos += 1;
                return Ok(Some(d));
            }
            let last = self.rr_order.len() - 1;
            self.rr_order.swap(self.rr_pos, last);
            self.rr_order.pop();
            self.rr_pos += 1;
        }
    }
}

// ------------------------------------------------------------------ sequences

pub enum Source {
    Items(std::vec::IntoIter<Datum>),
    Range { next: f64, end: Option<f64> },
    Scan(Box<TableScan>),
    Feed(Box<FeedSource>),
    Union(Vec<Seq>, usize),
}

/// What kind of sequence this is, for `typeOf` and for what may follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqKind {
    /// A whole table read.
    Table,
    /// A range or ordering of a table through an index.
    TableSlice,
    /// Table documents after filtering or limiting.
    Selection,
    Stream,
    Feed,
}

pub enum Pull {
    Item(Datum),
    End,
    /// A changefeed with nothing new yet.
    Wait,
}

pub struct Seq {
    pub src: Source,
    pub ops: Vec<Op>,
    pending: VecDeque<Datum>,
    stopped: bool,
    pub table: Option<Arc<Table>>,
    pub kind: SeqKind,
    /// Feed notes for the response (`n`), when this is a changefeed.
    pub notes: Vec<u32>,
    /// For a plain `getAll`: the index and keys, so it can become a feed.
    pub get_all: Option<(Option<String>, Vec<Datum>)>,
    pub ctx: Arc<QueryCtx>,
}

impl Seq {
    pub fn new(src: Source, kind: SeqKind, ctx: Arc<QueryCtx>) -> Seq {
        Seq {
            src,
            ops: Vec::new(),
            pending: VecDeque::new(),
            stopped: false,
            table: None,
            kind,
            notes: Vec::new(),
            get_all: None,
            ctx,
        }
    }

    pub fn from_items(items: Vec<Datum>, ctx: Arc<QueryCtx>) -> Seq {
        Seq::new(Source::Items(items.into_iter()), SeqKind::Stream, ctx)
    }

    /// An endless `r.range()` or a changefeed, unless a `limit` bounds it.
    pub fn is_infinite(&self) -> bool {
        let endless = match &self.src {
            Source::Range { end: None, .. } | Source::Feed(_) => true,
            Source::Union(parts, _) => parts.iter().any(Seq::is_infinite),
            _ => false,
        };
        endless && !self.ops.iter().any(|o| matches!(o, Op::Limit(_)))
    }

    /// The number of elements, when it is known without reading them.
    pub fn known_len(&self) -> Option<usize> {
        if !self.ops.is_empty() || !self.pending.is_empty() {
            return None;
        }
        match &self.src {
            Source::Range {
                next,
                end: Some(end),
            } => Some((end - next).max(0.0) as usize),
            Source::Items(it) => Some(it.len()),
            _ => None,
        }
    }

    /// Fails for sequences that would never end when read whole.
    pub fn finite(self) -> Result<Seq> {
        if self.is_infinite() {
            return Err(ReqlError::logic(
                "Cannot use an infinite stream with an aggregation function (`reduce`, `count`, etc.) or coerce it to an array.",
            ));
        }
        Ok(self)
    }

    pub fn is_feed(&self) -> bool {
        self.kind == SeqKind::Feed
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SeqKind::Table => "TABLE",
            SeqKind::TableSlice => "TABLE_SLICE",
            SeqKind::Selection => "SELECTION<STREAM>",
            SeqKind::Stream | SeqKind::Feed => "STREAM",
        }
    }

    /// The scan underneath, if this is still a plain table read (no global ops).
    pub fn scan(&self) -> Option<&TableScan> {
        match &self.src {
            Source::Scan(s) if self.ops.is_empty() => Some(s),
            _ => None,
        }
    }

    pub fn scan_mut(&mut self) -> Option<&mut TableScan> {
        match &mut self.src {
            Source::Scan(s) if self.ops.is_empty() => Some(s),
            _ => None,
        }
    }

    pub fn push_op(&mut self, op: Op) {
        self.get_all = None;
        if !op.keeps_selection() {
            self.table = None;
        }
        if self.kind == SeqKind::Table || self.kind == SeqKind::TableSlice {
            self.kind = if self.table.is_some() {
                SeqKind::Selection
            } else {
                SeqKind::Stream
            };
        } else if self.kind == SeqKind::Selection && self.table.is_none() {
            self.kind = SeqKind::Stream;
        }
        if self.ops.is_empty() {
            if let Source::Scan(scan) = &mut self.src {
                if op.is_local() {
                    scan.local.push(op);
                    return;
                }
                // A limit right after a read that drops nothing needs no more
                // than that many documents from any shard.
                if let Op::Limit(n) = op {
                    if !scan.local.iter().any(Op::may_drop) {
                        for cur in scan.shards.iter_mut() {
                            cur.chunk = cur.chunk.min(n + 1).max(1);
                        }
                    }
                }
            }
        }
        self.ops.push(op);
    }

    fn pull_raw(&mut self) -> Result<Pull> {
        match &mut self.src {
            Source::Items(it) => Ok(it.next().map(Pull::Item).unwrap_or(Pull::End)),
            Source::Range { next, end } => {
                if end.is_some_and(|e| *next >= e) {
                    return Ok(Pull::End);
                }
                let v = *next;
                *next += 1.0;
                Ok(Pull::Item(Datum::Num(v)))
            }
            Source::Scan(scan) => Ok(scan.next()?.map(Pull::Item).unwrap_or(Pull::End)),
            Source::Feed(f) => match f.next_ready() {
                Some(r) => r.map(Pull::Item),
                None => Ok(Pull::Wait),
            },
            Source::Union(parts, pos) => {
                if parts.is_empty() {
                    return Ok(Pull::End);
                }
                let n = parts.len();
                let mut ended = 0;
                for i in 0..n {
                    let k = (*pos + i) % n;
                    match parts[k].pull()? {
                        Pull::Item(d) => {
                            *pos = (k + 1) % n;
                            return Ok(Pull::Item(d));
                        }
                        Pull::End => ended += 1,
                        Pull::Wait => {}
                    }
                }
                Ok(if ended == n { Pull::End } else { Pull::Wait })
            }
        }
    }

    /// The next document, the end of the sequence, or (for feeds) nothing yet.
    pub fn pull(&mut self) -> Result<Pull> {
        loop {
            if let Some(d) = self.pending.pop_front() {
                return Ok(Pull::Item(d));
            }
            if self.stopped {
                return Ok(Pull::End);
            }
            match self.pull_raw()? {
                Pull::Item(d) => {
                    if let Step::Stop = apply_ops(&mut self.ops, d, &mut self.pending)? {
                        self.stopped = true;
                    }
                }
                other => return Ok(other),
            }
        }
    }

    /// Like `pull`, for sequences that are not feeds.
    pub fn next(&mut self) -> Result<Option<Datum>> {
        match self.pull()? {
            Pull::Item(d) => Ok(Some(d)),
            Pull::End | Pull::Wait => Ok(None),
        }
    }

    /// Whether the sequence has ended; a feed never has.
    pub fn at_end(&mut self) -> Result<bool> {
        if !self.pending.is_empty() {
            return Ok(false);
        }
        match self.pull()? {
            Pull::Item(d) => {
                self.pending.push_front(d);
                Ok(false)
            }
            Pull::End => Ok(true),
            Pull::Wait => Ok(false),
        }
    }

    /// Reads the whole sequence into an array, within the array size limit.
    pub fn collect(self) -> Result<Vec<Datum>> {
        let mut this = self.finite()?;
        let limit = this.ctx.array_limit;
        let mut out = Vec::new();
        while let Some(d) = this.next()? {
            if out.len() >= limit {
                return Err(array_limit_error(limit));
            }
            out.push(d);
        }
        Ok(out)
    }

    /// For feeds: waits until something can be pulled. Cancel-safe.
    pub fn wait(&mut self) -> BoxFuture<'_, ()> {
        async move {
            if !self.pending.is_empty() {
                return;
            }
            match &mut self.src {
                Source::Feed(f) => f.wait().await,
                Source::Union(parts, _) => {
                    let waits: Vec<_> = parts.iter_mut().map(|p| p.wait()).collect();
                    if !waits.is_empty() {
                        futures::future::select_all(waits).await;
                    }
                }
                _ => {}
            }
        }
        .boxed()
    }
}

pub fn array_limit_error(limit: usize) -> ReqlError {
    ReqlError::resource(format!(
        "Array over size limit `{limit}`.  To raise the number of allowed elements, modify the `array_limit` option to `.run` (not available in the Data Explorer), or use an index."
    ))
}
