//! Aggregation: `group`, `reduce`, `count`, `sum`, `avg`, `min`, `max`, `distinct`, `contains`.

use std::collections::BTreeMap;

use super::Single;
use super::{ops, table_of, val_kind, Evaluator, FuncLike, Val, MAX_DEPTH};
use crate::datum::{Datum, Obj};
use crate::error::{ReqlError, Result};
use crate::storage::ScanSpec;
use crate::term::{tt, Term};

impl Evaluator<'_> {
    pub(super) fn group(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        let multi = self.opt_bool(t, "multi")?;
        let mut keys = Vec::new();
        for a in &args[1..] {
            keys.push(self.func_like(a)?);
        }
        if let Some(ix) = t.optarg("index") {
            let index = self.datum(ix)?;
            let index = ops::string(&index)?.to_string();
            let table = table_of(first)?;
            let index = self.require_index(&table, &index)?;
            let mut groups: BTreeMap<Datum, Vec<Datum>> = BTreeMap::new();
            let spec = ScanSpec {
                index,
                ..ScanSpec::all()
            };
            for ((k, _), d) in table.read().ordered(&spec, usize::MAX) {
                groups.entry(k).or_default().push(d);
            }
            return Ok(Val::Grouped(
                groups
                    .into_iter()
                    .map(|(k, v)| (k, Datum::array(v)))
                    .collect(),
            ));
        }
        let mut s = self.seq(first)?.finite()?;
        let mut groups: BTreeMap<Datum, Vec<Datum>> = BTreeMap::new();
        while let Some(d) = s.next()? {
            let mut vals = Vec::with_capacity(keys.len());
            for k in &keys {
                let v = match k {
                    FuncLike::Value(Datum::Str(f)) => d.get(f).cloned().unwrap_or(Datum::Null),
                    FuncLike::Value(other) => {
                        return Err(ReqlError::logic(format!(
                            "Expected type STRING but found {}.",
                            other.type_name()
                        )))
                    }
                    FuncLike::Func(f) => match f.call_datum(std::slice::from_ref(&d)) {
                        Ok(v) => v,
                        Err(e) if e.is_non_existence() => Datum::Null,
                        Err(e) => return Err(e),
                    },
                };
                vals.push(v);
            }
            let key = if vals.len() == 1 {
                vals.pop().unwrap_or(Datum::Null)
            } else {
                Datum::array(vals)
            };
            match (&key, multi) {
                (Datum::Array(items), true) => {
                    for k in items.iter() {
                        groups.entry(k.clone()).or_default().push(d.clone());
                    }
                }
                _ => groups.entry(key).or_default().push(d),
            }
        }
        Ok(Val::Grouped(
            groups
                .into_iter()
                .map(|(k, v)| (k, Datum::array(v)))
                .collect(),
        ))
    }

    pub(super) fn ungroup(&mut self, args: &[Term]) -> Result<Val> {
        match self.eval(&args[0])? {
            Val::Grouped(g) => Ok(Val::Datum(Datum::array(
                g.into_iter()
                    .map(|(k, v)| {
                        let mut o = Obj::new();
                        o.insert("group".into(), k);
                        o.insert("reduction".into(), v);
                        Datum::object(o)
                    })
                    .collect(),
            ))),
            other => Err(ReqlError::logic(format!(
                "Expected type GROUPED_DATA but found {}.",
                val_kind(&other)
            ))),
        }
    }

    pub(super) fn reduce(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        let f = self.func(&args[1])?;
        let mut s = self.seq(first)?.finite()?;
        let mut acc = match s.next()? {
            Some(d) => d,
            None => return Err(ReqlError::missing("Cannot reduce over an empty stream.")),
        };
        while let Some(d) = s.next()? {
            acc = f.call_datum(&[acc, d])?;
            if acc.deeper_than(MAX_DEPTH) {
                return Err(ReqlError::resource(format!(
                    "Nesting depth limit exceeded ({MAX_DEPTH} levels)."
                )));
            }
        }
        Ok(Val::Datum(acc))
    }

    pub(super) fn count(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        if let Some(a) = args.get(1) {
            let p = self.func_like(a)?;
            let mut s = self.seq(first)?.finite()?;
            let mut n = 0usize;
            while let Some(d) = s.next()? {
                let hit = match &p {
                    FuncLike::Func(f) => f.call_datum(std::slice::from_ref(&d))?.truthy(),
                    FuncLike::Value(v) => &d == v,
                };
                if hit {
                    n += 1;
                }
            }
            return Ok(Val::Datum(Datum::from(n)));
        }
        let n = match first {
            Val::Table(t) => t.read().len(),
            Val::Datum(Datum::Array(a)) => a.len(),
            Val::Datum(Datum::Str(s)) => s.chars().count(),
            Val::Datum(Datum::Object(o)) => o.len(),
            Val::Single(Single {
                doc: Some(Datum::Object(o)),
                ..
            }) => o.len(),
            Val::ArraySel(_, items) => items.len(),
            other => {
                let mut s = self.seq(other)?.finite()?;
                if let Some(n) = s.known_len() {
                    return Ok(Val::Datum(Datum::from(n)));
                }
                let mut n = 0usize;
                while s.next()?.is_some() {
                    n += 1;
                }
                n
            }
        };
        Ok(Val::Datum(Datum::from(n)))
    }

    pub(super) fn aggregate(
        &mut self,
        ty: u32,
        first: Val,
        t: &Term,
        args: &[Term],
    ) -> Result<Val> {
        let name = match ty {
            tt::SUM => "sum",
            tt::AVG => "avg",
            tt::MIN => "min",
            _ => "max",
        };
        if let Some(ix) = t.optarg("index") {
            let index = self.datum(ix)?;
            let index = ops::string(&index)?.to_string();
            let table = table_of(first)?;
            let index = self.require_index(&table, &index)?;
            let spec = ScanSpec {
                index,
                desc: ty == tt::MAX,
                ..ScanSpec::all()
            };
            let top = table.read().ordered(&spec, 1);
            return top
                .into_iter()
                .next()
                .map(|e| Val::Datum(e.1))
                .ok_or_else(|| empty_aggregate(name));
        }
        let key = match args.get(1) {
            Some(a) => Some(self.func_like(a)?),
            None => None,
        };
        let mut s = self.seq(first)?.finite()?;
        let mut sum = 0.0;
        let mut n = 0usize;
        let mut best: Option<(Datum, Datum)> = None;
        while let Some(d) = s.next()? {
            let v = match &key {
                None => d.clone(),
                Some(FuncLike::Value(Datum::Str(f))) => match d.get(f) {
                    Some(v) => v.clone(),
                    None => continue,
                },
                Some(FuncLike::Func(f)) => match f.call_datum(std::slice::from_ref(&d)) {
                    Ok(v) => v,
                    Err(e) if e.is_non_existence() => continue,
                    Err(e) => return Err(e),
                },
                Some(FuncLike::Value(other)) => {
                    return Err(ReqlError::logic(format!(
                        "Expected type STRING but found {}.",
                        other.type_name()
                    )))
                }
            };
            match ty {
                tt::SUM | tt::AVG => {
                    sum += ops::num(&v)?;
                    n += 1;
                }
                _ => {
                    let better = match &best {
                        None => true,
                        Some((b, _)) => {
                            if ty == tt::MIN {
                                v < *b
                            } else {
                                v > *b
                            }
                        }
                    };
                    if better {
                        best = Some((v, d));
                    }
                }
            }
        }
        match ty {
            tt::SUM => Ok(Val::Datum(Datum::Num(sum))),
            tt::AVG => {
                if n == 0 {
                    return Err(empty_aggregate(name));
                }
                Ok(Val::Datum(Datum::Num(sum / n as f64)))
            }
            _ => best
                .map(|(_, d)| Val::Datum(d))
                .ok_or_else(|| empty_aggregate(name)),
        }
    }

    pub(super) fn distinct(&mut self, t: &Term, first: Val) -> Result<Val> {
        if let Some(ix) = t.optarg("index") {
            let name = self.datum(ix)?;
            let name = ops::string(&name)?.to_string();
            let table = table_of(first)?;
            let index = self.require_index(&table, &name)?;
            let spec = ScanSpec {
                index,
                ..ScanSpec::all()
            };
            let data = table.read();
            let mut keys: Vec<Datum> = data
                .ordered(&spec, usize::MAX)
                .into_iter()
                .map(|e| e.0 .0)
                .collect();
            keys.dedup();
            return Ok(Val::Datum(Datum::array(keys)));
        }
        let mut items = self.ctx.to_array(first)?;
        items.sort();
        items.dedup();
        Ok(Val::Datum(Datum::array(items)))
    }

    pub(super) fn contains(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        let mut preds = Vec::new();
        for a in &args[1..] {
            preds.push(self.func_like(a)?);
        }
        let items = self.ctx.to_array(first)?;
        for p in &preds {
            let mut found = false;
            for d in &items {
                let hit = match p {
                    FuncLike::Func(f) => f.call_datum(std::slice::from_ref(d))?.truthy(),
                    FuncLike::Value(v) => d == v,
                };
                if hit {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(Val::Datum(Datum::Bool(false)));
            }
        }
        Ok(Val::Datum(Datum::Bool(true)))
    }
}

fn empty_aggregate(name: &str) -> ReqlError {
    let what = if name == "avg" { "the average" } else { name };
    let what = if name == "min" || name == "max" {
        format!("the {name}")
    } else {
        what.to_string()
    };
    ReqlError::missing(format!(
        "Cannot take {what} of an empty stream.  (If you passed `{name}` a field name, it may be that no elements of the stream had that field.)"
    ))
}
