//! Transformations: `map`, `concatMap`, `orderBy`, `skip`, `limit`, `slice`, `nth`, `union`...

use std::sync::Arc;

use super::seq::{self, Op, Seq, SeqKind, Source, TableScan};
use super::{ops, Evaluator, FuncLike, Val};
use crate::datum::Datum;
use crate::error::{ReqlError, Result};
use crate::storage::ScanSpec;
use crate::term::{tt, Term};

impl Evaluator<'_> {
    /// Applies a per-document operation to a value of any sequence-like kind.
    pub(super) fn apply_op(&mut self, v: Val, op: Op) -> Result<Val> {
        match v {
            Val::Datum(Datum::Array(a)) => {
                let mut s = Seq::from_items(Arc::unwrap_or_clone(a), self.ctx.clone());
                s.push_op(op);
                Ok(Val::Datum(Datum::array(s.collect()?)))
            }
            Val::ArraySel(t, items) => {
                let keeps = op.keeps_selection();
                let mut s = Seq::from_items(items, self.ctx.clone());
                s.push_op(op);
                let items = s.collect()?;
                Ok(if keeps {
                    Val::ArraySel(t, items)
                } else {
                    Val::Datum(Datum::array(items))
                })
            }
            other => {
                let mut s = self.seq(other)?;
                s.push_op(op);
                Ok(Val::Seq(Box::new(s)))
            }
        }
    }

    pub(super) fn map(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        if args.len() > 2 {
            return Err(ReqlError::logic(
                "`map` over several sequences is not supported by this development server.",
            ));
        }
        let f = self.func(&args[1])?;
        self.apply_op(first, Op::Map(f))
    }

    pub(super) fn concat_map(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        let f = self.func(&args[1])?;
        self.apply_op(first, Op::ConcatMap(f))
    }

    pub(super) fn order_by(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        if let Some(ix) = t.optarg("index") {
            let (name_term, desc) = match ix.ty() {
                tt::DESC => (ix.args().first().cloned(), true),
                tt::ASC => (ix.args().first().cloned(), false),
                _ => (Some(ix.clone()), false),
            };
            let name = match name_term {
                Some(n) => self.string(&n)?,
                None => return Err(ReqlError::compile("Expected 1 argument but found 0.")),
            };
            if args.len() > 1 {
                return Err(ReqlError::logic(
                    "orderBy with both an index and other keys is not supported by this development server.",
                ));
            }
            let mut seq = match first {
                Val::Table(table) => {
                    let mut s = Seq::new(
                        Source::Scan(Box::new(TableScan::new(
                            table.clone(),
                            ScanSpec::all(),
                            false,
                        ))),
                        SeqKind::Table,
                        self.ctx.clone(),
                    );
                    s.table = Some(table);
                    s
                }
                Val::Seq(s)
                    if s.scan()
                        .is_some_and(|sc| sc.local.is_empty() && !sc.ordered) =>
                {
                    *s
                }
                _ => {
                    return Err(ReqlError::logic(
                        "Indexed order_by can only be performed on a TABLE or TABLE_SLICE.",
                    ))
                }
            };
            let Some(scan) = seq.scan_mut() else {
                return Err(ReqlError::internal("order_by lost its table"));
            };
            let table = scan.table.clone();
            let index = self.require_index(&table, &name)?;
            let has_range = !matches!(
                (&scan.spec.lo, &scan.spec.hi),
                (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            );
            if has_range && scan.spec.index != index {
                let between_on = scan
                    .spec
                    .index
                    .clone()
                    .unwrap_or_else(|| table.primary_key.clone());
                return Err(ReqlError::logic(format!(
                    "Cannot order by index `{name}` after calling BETWEEN on index `{between_on}`."
                )));
            }
            scan.spec.index = index;
            scan.spec.desc = desc;
            scan.ordered = true;
            seq.kind = SeqKind::TableSlice;
            return Ok(Val::Seq(Box::new(seq)));
        }
        // Without an index the whole sequence is read and sorted in memory.
        let mut keys = Vec::new();
        for a in &args[1..] {
            let (inner, desc) = match a.ty() {
                tt::DESC => (a.args().first().cloned(), true),
                tt::ASC => (a.args().first().cloned(), false),
                _ => (Some(a.clone()), false),
            };
            let Some(inner) = inner else {
                return Err(ReqlError::compile("Expected 1 argument but found 0."));
            };
            keys.push((self.func_like(&inner)?, desc));
        }
        let table = match &first {
            Val::Table(t) => Some(t.clone()),
            Val::Seq(s) => s.table.clone(),
            Val::ArraySel(t, _) => Some(t.clone()),
            _ => None,
        };
        let items = self.ctx.to_array(first)?;
        let mut keyed = Vec::with_capacity(items.len());
        for d in items {
            let mut ks = Vec::with_capacity(keys.len());
            for (k, _) in &keys {
                let v = match k {
                    FuncLike::Value(Datum::Str(f)) => match seq::get_field(&d, f) {
                        Ok(v) => v,
                        Err(e) if e.is_non_existence() => Datum::MinVal,
                        Err(e) => return Err(e),
                    },
                    other => other.call1(&d)?,
                };
                ks.push(v);
            }
            keyed.push((ks, d));
        }
        keyed.sort_by(|a, b| {
            for (i, (_, desc)) in keys.iter().enumerate() {
                let o = a.0[i].cmp(&b.0[i]);
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        let sorted: Vec<Datum> = keyed.into_iter().map(|(_, d)| d).collect();
        Ok(match table {
            Some(t) => Val::ArraySel(t, sorted),
            None => Val::Datum(Datum::array(sorted)),
        })
    }

    pub(super) fn skip_or_limit(&mut self, ty: u32, first: Val, args: &[Term]) -> Result<Val> {
        use tt::*;
        // RethinkDB reads LIMIT's argument as a 32-bit integer and
        // SKIP's as a 64-bit one (`limits.jsonl`).
        let n = if ty == LIMIT {
            self.int32(&args[1])?
        } else {
            self.int(&args[1])?
        };
        let n = count_arg(ty, n)?;
        if let Val::Datum(Datum::Str(_)) = first {
            return Err(ReqlError::logic("Cannot convert STRING to SEQUENCE"));
        }
        self.apply_op(
            first,
            if ty == LIMIT {
                Op::Limit(n)
            } else {
                Op::Skip(n)
            },
        )
    }

    pub(super) fn slice(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        let start = self.int(&args[1])?;
        let end = match args.get(2) {
            Some(a) => Some(self.int(a)?),
            None => None,
        };
        let left_open = matches!(
            self.opt(t, "left_bound")?.as_ref().and_then(Datum::as_str),
            Some("open")
        );
        let right_closed = matches!(
            self.opt(t, "right_bound")?.as_ref().and_then(Datum::as_str),
            Some("closed")
        );
        if let Val::Datum(Datum::Str(s)) = &first {
            let chars: Vec<char> = s.chars().collect();
            let (a, b) = slice_bounds(start, end, chars.len(), left_open, right_closed);
            return Ok(Val::Datum(Datum::from(
                chars[a..b].iter().collect::<String>(),
            )));
        }
        if start < 0 || end.is_some_and(|e| e < 0) {
            let items = self.ctx.to_array(first)?;
            let (a, b) = slice_bounds(start, end, items.len(), left_open, right_closed);
            return Ok(Val::Datum(Datum::array(items[a..b].to_vec())));
        }
        let mut a = start as usize + usize::from(left_open);
        let b = end.map(|e| e as usize + usize::from(right_closed));
        if let Some(b) = b {
            a = a.min(b);
        }
        let v = self.apply_op(first, Op::Skip(a))?;
        match b {
            Some(b) => self.apply_op(v, Op::Limit(b - a)),
            None => Ok(v),
        }
    }

    pub(super) fn nth(&mut self, first: Val, i: i64) -> Result<Val> {
        match first {
            Val::Datum(d) => {
                let a = ops::array(&d)?;
                ops::index_into(i, a.len())
                    .map(|k| Val::Datum(a[k].clone()))
                    .ok_or_else(|| ops::out_of_bounds(i))
            }
            other => {
                if i < -1 {
                    return Err(stream_index_error(i));
                }
                let mut s = self.seq(other)?;
                if i < 0 {
                    let all = s.collect()?;
                    return ops::index_into(i, all.len())
                        .map(|k| Val::Datum(all[k].clone()))
                        .ok_or_else(|| ops::out_of_bounds(i));
                }
                let mut k = 0;
                while let Some(d) = s.next()? {
                    if k == i {
                        return Ok(Val::Datum(d));
                    }
                    k += 1;
                }
                Err(ops::out_of_bounds(i))
            }
        }
    }

    pub(super) fn is_empty(&mut self, first: Val) -> Result<Val> {
        let empty = match first {
            Val::Datum(d) => ops::array(&d)?.is_empty(),
            other => {
                let mut s = self.seq(other)?;
                s.next()?.is_none()
            }
        };
        Ok(Val::Datum(Datum::Bool(empty)))
    }

    pub(super) fn union(&mut self, args: &[Term]) -> Result<Val> {
        let mut vals = Vec::new();
        for a in args {
            vals.push(self.eval(a)?);
        }
        let all_arrays = vals.iter().all(|v| matches!(v, Val::Datum(_)));
        if all_arrays {
            let mut out = Vec::new();
            for v in vals {
                out.extend(self.ctx.to_array(v)?);
            }
            return Ok(Val::Datum(Datum::array(out)));
        }
        let mut parts = Vec::new();
        for v in vals {
            parts.push(self.seq(v)?);
        }
        let feeds: Vec<&Seq> = parts.iter().filter(|p| p.is_feed()).collect();
        if !feeds.is_empty() {
            if feeds.len() != parts.len() {
                return Err(ReqlError::logic(
                    "Cannot union a changefeed with a sequence that is not a changefeed.",
                ));
            }
            let first_notes: Vec<u32> =
                parts[0].notes.iter().copied().filter(|n| *n != 5).collect();
            let same = parts.iter().all(|p| {
                p.notes
                    .iter()
                    .copied()
                    .filter(|n| *n != 5)
                    .collect::<Vec<_>>()
                    == first_notes
            });
            let mut notes = if same { first_notes } else { vec![4] };
            if parts.iter().all(|p| p.notes.contains(&5)) {
                notes.push(5);
            }
            let mut s = Seq::new(Source::Union(parts, 0), SeqKind::Feed, self.ctx.clone());
            s.notes = notes;
            return Ok(Val::Seq(Box::new(s)));
        }
        Ok(Val::Seq(Box::new(Seq::new(
            Source::Union(parts, 0),
            SeqKind::Stream,
            self.ctx.clone(),
        ))))
    }
}

fn slice_bounds(
    start: i64,
    end: Option<i64>,
    len: usize,
    left_open: bool,
    right_closed: bool,
) -> (usize, usize) {
    let norm = |i: i64| -> i64 {
        if i < 0 {
            (len as i64 + i).max(0)
        } else {
            i.min(len as i64)
        }
    };
    let mut a = norm(start) + i64::from(left_open);
    let mut b = match end {
        Some(e) => norm(e) + i64::from(right_closed),
        None => len as i64,
    };
    a = a.clamp(0, len as i64);
    b = b.clamp(0, len as i64);
    if b < a {
        b = a;
    }
    (a as usize, b as usize)
}

/// The count `limit` or `skip` (`ty`) was given, which may not be negative.
pub(super) fn count_arg(ty: u32, n: i64) -> Result<usize> {
    usize::try_from(n).map_err(|_| {
        ReqlError::logic(format!(
            "{} takes a non-negative argument (got {n})",
            if ty == tt::LIMIT { "LIMIT" } else { "SKIP" }
        ))
    })
}

/// `nth(i)` on a stream counts from the end only for -1: the stream is not
/// kept in memory.
pub(super) fn stream_index_error(i: i64) -> ReqlError {
    ReqlError::logic(format!("Cannot use an index < -1 ({i}) on a stream."))
}
