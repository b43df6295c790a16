//! `changes()`: turns a table, a document, a range, a filtered table or an
//! `orderBy(index).limit(n)` into a changefeed.

use std::sync::Arc;

use super::seq::{self, Op, Seq, SeqKind, Source};
use super::{ops, Evaluator, Single, Val};
use crate::datum::Datum;
use crate::error::{ReqlError, Result};
use crate::feed::{
    Backlog, FeedKind, FeedMsg, FeedOpts, FeedSource, Squash, SubKind, TopN, Transform,
    DEFAULT_QUEUE_SIZE,
};
use crate::storage::{ScanSpec, Table};
use crate::term::Term;

fn eager() -> ReqlError {
    ReqlError::logic("Cannot call `changes` on an eager stream.")
}

fn squash_opt(d: Option<Datum>) -> Result<Squash> {
    match d {
        None | Some(Datum::Bool(false)) => Ok(Squash::Off),
        Some(Datum::Bool(true)) => Ok(Squash::On),
        Some(Datum::Num(n)) if n < 0.0 => Err(ReqlError::logic(
            "Expected BOOL or a positive NUMBER but found a negative NUMBER.",
        )),
        Some(Datum::Num(0.0)) => Ok(Squash::On),
        Some(Datum::Num(n)) => Ok(Squash::Wait(n)),
        Some(other) => Err(ReqlError::logic(format!(
            "Expected BOOL or NUMBER but found {}.",
            other.type_name()
        ))),
    }
}

pub(super) fn changes(ev: &mut Evaluator<'_>, target: Val, t: &Term) -> Result<Val> {
    let squash = squash_opt(ev.opt(t, "squash")?)?;
    let opts = FeedOpts {
        include_states: ev.opt_bool(t, "include_states")?,
        include_initial: ev.opt_bool(t, "include_initial")?,
        include_offsets: ev.opt_bool(t, "include_offsets")?,
        include_types: ev.opt_bool(t, "include_types")?,
        squash,
    };
    let backlog = match ev.opt(t, "changefeed_queue_size")? {
        Some(q) => match ops::int(&q)? {
            n if n >= 1 => Backlog::new(n as usize),
            n => {
                return Err(ReqlError::logic(format!(
                    "Changefeed queue size must be at least 1 (got {n})."
                )))
            }
        },
        None => Backlog::new(DEFAULT_QUEUE_SIZE),
    };
    let feed = match target {
        Val::Table(table) => range_feed(
            table,
            Scope::Range(ScanSpec::all()),
            Vec::new(),
            opts,
            backlog,
        )?,
        Val::Single(Single { table, key, .. }) => {
            if opts.include_offsets {
                return Err(ReqlError::logic("Cannot include offsets for point subs."));
            }
            let k = key.clone();
            let (rx, initial) =
                table.subscribe(SubKind::Point(key), backlog.clone(), move |data| {
                    vec![data.get(&k).cloned().unwrap_or(Datum::Null)]
                })?;
            let mut f = FeedSource::new(
                rx,
                backlog,
                FeedKind::Point,
                opts,
                table.primary_key.clone(),
                Box::new(|d: &Datum| Ok(Some(d.clone()))),
            );
            f.start(opts.include_initial.then_some(initial));
            f
        }
        Val::Seq(s) => {
            let s = *s;
            if s.is_feed() {
                return Err(ReqlError::logic("Cannot call `changes` on a changefeed."));
            }
            if let (Some((index, keys)), Some(table)) = (s.get_all.clone(), s.table.clone()) {
                return finish(
                    ev,
                    range_feed(table, Scope::Keys(index, keys), Vec::new(), opts, backlog)?,
                    opts,
                );
            }
            let Source::Scan(scan) = s.src else {
                return Err(eager());
            };
            match s.ops.as_slice() {
                [] => range_feed(
                    scan.table.clone(),
                    Scope::Range(scan.spec.clone()),
                    scan.local.clone(),
                    opts,
                    backlog,
                )?,
                [Op::Limit(n)] if scan.ordered && scan.local.is_empty() => {
                    top_n_feed(scan.table.clone(), scan.spec.clone(), *n, opts, backlog)?
                }
                _ => return Err(eager()),
            }
        }
        _ => return Err(eager()),
    };
    finish(ev, feed, opts)
}

fn finish(ev: &Evaluator<'_>, feed: FeedSource, opts: FeedOpts) -> Result<Val> {
    let mut notes = vec![feed.kind.note()];
    if opts.include_states {
        notes.push(5);
    }
    let mut seq = Seq::new(Source::Feed(Box::new(feed)), SeqKind::Feed, ev.ctx.clone());
    seq.notes = notes;
    Ok(Val::Seq(Box::new(seq)))
}

/// The documents a range feed covers: an index range, or the keys of a `getAll`.
enum Scope {
    Range(ScanSpec),
    Keys(Option<String>, Vec<Datum>),
}

impl Scope {
    fn index(&self) -> Option<&String> {
        match self {
            Scope::Range(spec) => spec.index.as_ref(),
            Scope::Keys(index, _) => index.as_ref(),
        }
    }

    fn covers(&self, key: &Datum) -> bool {
        match self {
            Scope::Range(spec) => spec.contains(key),
            Scope::Keys(_, keys) => keys.contains(key),
        }
    }
}

fn range_feed(
    table: Arc<Table>,
    scope: Scope,
    local: Vec<Op>,
    opts: FeedOpts,
    backlog: Backlog,
) -> Result<FeedSource> {
    if opts.include_offsets {
        return Err(ReqlError::logic("Cannot include offsets for range subs."));
    }
    let def = match scope.index() {
        Some(name) => Some(table.read().index_def(name).ok_or_else(|| {
            ReqlError::op_failed(format!(
                "Index `{name}` was not found on table `{}`.",
                table.full_name()
            ))
        })?),
        None => None,
    };
    let pk = table.primary_key.clone();
    let want_initial = opts.include_initial;
    // A `getAll` feed reports each change once per matching key.
    let (keys, key_def) = match &scope {
        Scope::Keys(_, keys) => (Some(keys.clone()), def.clone()),
        Scope::Range(_) => (None, None),
    };
    let init_scope = match &scope {
        Scope::Range(spec) => Scope::Range(ScanSpec {
            desc: false,
            ..spec.clone()
        }),
        Scope::Keys(index, keys) => Scope::Keys(index.clone(), keys.clone()),
    };
    let (rx, raw_initial) = table.subscribe(SubKind::Table, backlog.clone(), move |data| {
        if !want_initial {
            return Vec::new();
        }
        match &init_scope {
            Scope::Range(spec) => data
                .ordered(spec, usize::MAX)
                .into_iter()
                .map(|e| e.1)
                .collect(),
            Scope::Keys(index, keys) => keys
                .iter()
                .flat_map(|k| data.lookup(index.as_deref(), k))
                .collect(),
        }
    })?;
    let mut transform_ops = local;
    let pk_field = pk.clone();
    let mut transform: Transform = Box::new(move |d: &Datum| {
        let in_range = match &def {
            None => match d.get(&pk_field) {
                Some(k) => scope.covers(k),
                None => false,
            },
            Some(def) => def.keys_of(d).iter().any(|k| scope.covers(k)),
        };
        if !in_range {
            return Ok(None);
        }
        seq::apply_local(&mut transform_ops, d.clone())
    });
    let initial = if want_initial {
        let mut out = Vec::with_capacity(raw_initial.len());
        for d in &raw_initial {
            if let Some(v) = transform(d)? {
                out.push(v);
            }
        }
        Some(out)
    } else {
        None
    };
    let mut f = FeedSource::new(rx, backlog, FeedKind::Range, opts, pk.clone(), transform);
    if let Some(keys) = keys {
        let has = move |d: &Datum, k: &Datum| match &key_def {
            None => d.get(&pk) == Some(k),
            Some(def) => def.keys_of(d).contains(k),
        };
        // Each key the old value matches and each one the new value
        // matches stands for one message; RethinkDB pairs them up into
        // changes as far as they go, and reports the rest as removals or
        // additions.
        f.split_changes(Box::new(move |m| match m {
            FeedMsg::Change { old, new } => {
                let matches = |v: &Option<Datum>| match v {
                    Some(d) => keys.iter().filter(|k| has(d, k)).count(),
                    None => 0,
                };
                let (olds, news) = (matches(&old), matches(&new));
                let mut out = Vec::with_capacity(olds.max(news));
                for i in 0..olds.max(news) {
                    out.push(FeedMsg::Change {
                        old: if i < olds { old.clone() } else { None },
                        new: if i < news { new.clone() } else { None },
                    });
                }
                out
            }
            other => vec![other],
        }));
    }
    f.start(initial);
    Ok(f)
}

fn top_n_feed(
    table: Arc<Table>,
    spec: ScanSpec,
    limit: usize,
    opts: FeedOpts,
    backlog: Backlog,
) -> Result<FeedSource> {
    let init_spec = spec.clone();
    let (rx, initial) = table.subscribe(
        SubKind::TopN(TopN {
            spec,
            limit,
            current: Vec::new(),
        }),
        backlog.clone(),
        move |data| {
            data.ordered(&init_spec, limit)
                .into_iter()
                .map(|e| e.1)
                .collect()
        },
    )?;
    let mut f = FeedSource::new(
        rx,
        backlog,
        FeedKind::TopN,
        opts,
        table.primary_key.clone(),
        Box::new(|d: &Datum| Ok(Some(d.clone()))),
    );
    f.start(opts.include_initial.then_some(initial));
    Ok(f)
}
