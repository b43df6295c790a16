//! Changefeeds. The table side keeps a list of subscribers and hands each change to
//! them while the write still holds the table lock, so every feed sees changes in
//! the order they were made. Top-N feeds (`orderBy(index).limit(n).changes()`)
//! recompute their window there too, since only the table knows which document
//! moves up when one leaves. The client side (`FeedSource`) turns raw changes into
//! the documents a feed returns, waiting without polling until there is one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::datum::{Datum, Obj};
use crate::error::{ReqlError, Result};

/// Position of an entry in an index: the index value and the primary key (for the
/// primary index, the key and `null`).
pub type SortKey = (Datum, Datum);

#[derive(Debug)]
pub enum FeedMsg {
    Change {
        old: Option<Datum>,
        new: Option<Datum>,
    },
    TopN {
        old: Option<(usize, Datum)>,
        new: Option<(usize, Datum)>,
    },
    Abort,
    /// The client stopped reading and too many changes queued up.
    Overflow,
}

/// Changes a feed may have queued before the client reads them, by default.
pub const DEFAULT_QUEUE_SIZE: usize = 100_000;

/// Counts changes sent to a feed and not yet taken by it.
#[derive(Clone)]
pub struct Backlog {
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl Backlog {
    pub fn new(limit: usize) -> Backlog {
        Backlog {
            queued: Arc::new(AtomicUsize::new(0)),
            limit: limit.max(1),
        }
    }

    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Subscriber {
    pub kind: SubKind,
    pub tx: mpsc::UnboundedSender<FeedMsg>,
    pub backlog: Backlog,
}

impl Subscriber {
    /// Queues a change; false once the feed has overflowed and must be dropped.
    pub fn deliver(&self, m: FeedMsg) -> bool {
        if self.backlog.queued.fetch_add(1, Ordering::SeqCst) >= self.backlog.limit {
            let _ = self.tx.send(FeedMsg::Overflow);
            return false;
        }
        self.tx.send(m).is_ok()
    }
}

pub enum SubKind {
    Table,
    Point(Datum),
    TopN(TopN),
}

/// A top-N window: the first `limit` entries of an index range in one direction.
pub struct TopN {
    pub spec: crate::storage::ScanSpec,
    pub limit: usize,
    pub current: Vec<(SortKey, Datum)>,
}

impl TopN {
    /// Compares the stored window with a freshly computed one and reports what
    /// left and what entered, with their positions.
    pub fn diff(&mut self, fresh: Vec<(SortKey, Datum)>) -> Vec<FeedMsg> {
        let same = |a: &(SortKey, Datum), b: &(SortKey, Datum)| a.0 == b.0 && a.1 == b.1;
        let removed: Vec<(usize, Datum)> = self
            .current
            .iter()
            .enumerate()
            .filter(|(_, e)| !fresh.iter().any(|f| same(e, f)))
            .map(|(i, e)| (i, e.1.clone()))
            .collect();
        let added: Vec<(usize, Datum)> = fresh
            .iter()
            .enumerate()
            .filter(|(_, f)| !self.current.iter().any(|e| same(e, f)))
            .map(|(i, f)| (i, f.1.clone()))
            .collect();
        self.current = fresh;
        let n = removed.len().max(added.len());
        let mut removed = removed.into_iter();
        let mut added = added.into_iter();
        (0..n)
            .map(|_| FeedMsg::TopN {
                old: removed.next(),
                new: added.next(),
            })
            .collect()
    }
}

// ------------------------------------------------------------------ client side

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Squash {
    Off,
    On,
    Wait(f64),
}

#[derive(Clone, Copy, Debug)]
pub struct FeedOpts {
    pub include_states: bool,
    pub include_initial: bool,
    pub include_offsets: bool,
    pub include_types: bool,
    pub squash: Squash,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FeedKind {
    Range,
    Point,
    TopN,
}

impl FeedKind {
    /// The response note RethinkDB attaches to this kind of feed.
    pub fn note(self) -> u32 {
        match self {
            FeedKind::Range => 1,
            FeedKind::Point => 2,
            FeedKind::TopN => 3,
        }
    }
}

/// Applied to each old and new value: `None` when the value is outside the feed
/// (a filter rejects it or it is outside the range), otherwise the value the feed
/// shows.
pub type Transform = Box<dyn FnMut(&Datum) -> Result<Option<Datum>> + Send>;

/// Turns one change into the changes a feed reports. A `getAll` feed
/// reports a change once for each of its keys the document has, as
/// RethinkDB does, so a key given twice reports it twice.
pub type Split = Box<dyn Fn(FeedMsg) -> Vec<FeedMsg> + Send>;

pub struct FeedSource {
    rx: mpsc::UnboundedReceiver<FeedMsg>,
    backlog: Backlog,
    pub kind: FeedKind,
    opts: FeedOpts,
    primary_key: String,
    transform: Transform,
    split: Option<Split>,
    raw: VecDeque<FeedMsg>,
    ready: VecDeque<Datum>,
    error: Option<ReqlError>,
}

fn obj(pairs: Vec<(&str, Datum)>) -> Datum {
    let mut o = Obj::new();
    for (k, v) in pairs {
        o.insert(k.to_string(), v);
    }
    Datum::object(o)
}

pub fn state_doc(state: &str, types: bool) -> Datum {
    let mut pairs = vec![("state", Datum::from(state))];
    if types {
        pairs.push(("type", Datum::from("state")));
    }
    obj(pairs)
}

impl FeedSource {
    pub fn new(
        rx: mpsc::UnboundedReceiver<FeedMsg>,
        backlog: Backlog,
        kind: FeedKind,
        opts: FeedOpts,
        primary_key: String,
        transform: Transform,
    ) -> FeedSource {
        FeedSource {
            rx,
            backlog,
            kind,
            opts,
            primary_key,
            transform,
            split: None,
            raw: VecDeque::new(),
            ready: VecDeque::new(),
            error: None,
        }
    }

    /// Reports each change as `split` makes it into several.
    pub fn split_changes(&mut self, split: Split) {
        self.split = Some(split);
    }

    /// Queues the documents of the first batch: states and initial values.
    pub fn start(&mut self, initial: Option<Vec<Datum>>) {
        let types = self.opts.include_types;
        if self.opts.include_states && initial.is_some() {
            self.ready.push_back(state_doc("initializing", types));
        }
        if let Some(docs) = initial {
            for (i, d) in docs.into_iter().enumerate() {
                let mut pairs = Vec::new();
                if self.kind == FeedKind::TopN && self.opts.include_offsets {
                    pairs.push(("new_offset", Datum::from(i)));
                }
                pairs.push(("new_val", d));
                if types {
                    pairs.push(("type", Datum::from("initial")));
                }
                self.ready.push_back(obj(pairs));
            }
        }
        if self.opts.include_states {
            self.ready.push_back(state_doc("ready", types));
        }
    }

    /// Takes the next document that is ready, or the error that ended the feed.
    pub fn next_ready(&mut self) -> Option<Result<Datum>> {
        if let Some(d) = self.ready.pop_front() {
            return Some(Ok(d));
        }
        self.error.clone().map(Err)
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty() || self.error.is_some()
    }

    /// Waits until at least one change has arrived (or the feed ended) and turns
    /// everything that arrived into ready documents. Cancel-safe: what was received
    /// is kept in `raw` before any further wait.
    pub async fn wait(&mut self) {
        while !self.has_ready() {
            if self.raw.is_empty() {
                match self.rx.recv().await {
                    Some(m) => {
                        self.backlog.taken();
                        self.raw.push_back(m)
                    }
                    None => {
                        self.error = Some(aborted());
                        return;
                    }
                }
                if let Squash::Wait(secs) = self.opts.squash {
                    let secs = if secs.is_finite() {
                        secs.clamp(0.0, 3600.0)
                    } else {
                        0.0
                    };
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
            }
            while let Ok(m) = self.rx.try_recv() {
                self.backlog.taken();
                self.raw.push_back(m);
            }
            self.process_raw();
        }
    }

    fn key_of(&self, m: &FeedMsg) -> Option<Datum> {
        let pk = |d: &Option<Datum>| d.as_ref().and_then(|d| d.get(&self.primary_key)).cloned();
        match m {
            FeedMsg::Change { old, new } => pk(new).or_else(|| pk(old)),
            _ => None,
        }
    }

    fn process_raw(&mut self) {
        // Split first: squashing then folds the copies a `getAll` feed
        // makes of one change into one, as RethinkDB does.
        let raw = self.raw.drain(..);
        let mut msgs: Vec<FeedMsg> = match &self.split {
            Some(split) => raw.flat_map(split).collect(),
            None => raw.collect(),
        };
        if self.opts.squash != Squash::Off {
            // Later changes to a document fold into its first pending change.
            let mut out: Vec<FeedMsg> = Vec::with_capacity(msgs.len());
            for m in msgs {
                let key = self.key_of(&m);
                let pos = key
                    .as_ref()
                    .and_then(|k| out.iter().position(|o| self.key_of(o).as_ref() == Some(k)));
                match (pos, m) {
                    (Some(i), FeedMsg::Change { new, .. }) => {
                        if let FeedMsg::Change { new: n, .. } = &mut out[i] {
                            *n = new;
                        }
                    }
                    (_, m) => out.push(m),
                }
            }
            msgs = out;
        }
        for m in msgs {
            match self.render(m) {
                Ok(Some(d)) => self.ready.push_back(d),
                Ok(None) => {}
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
    }

    fn render(&mut self, m: FeedMsg) -> Result<Option<Datum>> {
        let types = self.opts.include_types;
        let type_of = |old: &Datum, new: &Datum| {
            if old.is_null() {
                "add"
            } else if new.is_null() {
                "remove"
            } else {
                "change"
            }
        };
        match m {
            FeedMsg::Abort => Err(aborted()),
            FeedMsg::Overflow => Err(ReqlError::resource(format!(
                "Changefeed cache over array size limit, skipped changes beyond {}.",
                self.backlog.limit
            ))),
            FeedMsg::Change { old, new } => {
                let o = match old {
                    Some(d) => (self.transform)(&d)?,
                    None => None,
                };
                let n = match new {
                    Some(d) => (self.transform)(&d)?,
                    None => None,
                };
                if o.is_none() && n.is_none() || o == n {
                    return Ok(None);
                }
                let (o, n) = (o.unwrap_or(Datum::Null), n.unwrap_or(Datum::Null));
                let mut pairs = vec![("new_val", n.clone()), ("old_val", o.clone())];
                if types {
                    pairs.push(("type", Datum::from(type_of(&o, &n))));
                }
                Ok(Some(obj(pairs)))
            }
            FeedMsg::TopN { old, new } => {
                let mut pairs = Vec::new();
                let o = old.as_ref().map(|x| x.1.clone()).unwrap_or(Datum::Null);
                let n = new.as_ref().map(|x| x.1.clone()).unwrap_or(Datum::Null);
                if self.opts.include_offsets {
                    if let Some((i, _)) = &new {
                        pairs.push(("new_offset", Datum::from(*i)));
                    }
                    if let Some((i, _)) = &old {
                        pairs.push(("old_offset", Datum::from(*i)));
                    }
                }
                if types {
                    pairs.push(("type", Datum::from(type_of(&o, &n))));
                }
                pairs.push(("new_val", n));
                pairs.push(("old_val", o));
                Ok(Some(obj(pairs)))
            }
        }
    }
}

pub fn aborted() -> ReqlError {
    ReqlError::op_failed("Changefeed aborted (unavailable).")
}
