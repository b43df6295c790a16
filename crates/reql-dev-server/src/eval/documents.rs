//! Document manipulation: field access, `pluck`, `without`, `merge`, `keys`, `literal`, `object`...

use super::seq::{self, MergeArg, Op};
use super::{ops, Evaluator, FuncLike, Val};
use crate::datum::{Datum, Obj, REQL_TYPE};
use crate::error::{ReqlError, Result};
use crate::term::{tt, Kind, Term};

impl Evaluator<'_> {
    pub(super) fn make_obj(&mut self, t: &Term) -> Result<Val> {
        let mut o = Obj::new();
        if let Kind::Op { optargs, .. } = t.kind() {
            for (k, v) in optargs {
                o.insert(k.clone(), self.datum(v)?);
            }
        }
        Ok(Val::Datum(Datum::object(o)))
    }

    pub(super) fn object(&mut self, args: &[Term]) -> Result<Val> {
        if args.len() % 2 != 0 {
            return Err(ReqlError::logic(
                "OBJECT expects an even number of arguments.",
            ));
        }
        let mut o = Obj::new();
        for pair in args.chunks(2) {
            let k = self.string(&pair[0])?;
            let v = self.datum(&pair[1])?;
            o.insert(k, v);
        }
        Ok(Val::Datum(Datum::object(o)))
    }

    pub(super) fn literal(&mut self, args: &[Term]) -> Result<Val> {
        let mut o = Obj::new();
        o.insert(REQL_TYPE.into(), Datum::from("LITERAL"));
        if let Some(a) = args.first() {
            o.insert("value".into(), self.datum(a)?);
        }
        Ok(Val::Datum(Datum::object(o)))
    }

    pub(super) fn get_field(&mut self, ty: u32, first: Val, args: &[Term]) -> Result<Val> {
        use tt::*;
        let key = self.datum(&args[1])?;
        if let (BRACKET, Datum::Num(_)) = (ty, &key) {
            return self.nth(first, ops::int(&key)?);
        }
        let field = ops::string(&key)?.to_string();
        let opname = if ty == BRACKET {
            "bracket"
        } else {
            "get_field"
        };
        match first {
            Val::Datum(d @ Datum::Array(_)) => self.apply_op(Val::Datum(d), Op::GetField(field)),
            Val::Datum(d) => Ok(Val::Datum(get_field_named(&d, &field, opname)?)),
            Val::Single(s) => Ok(Val::Datum(get_field_named(
                &s.doc.unwrap_or(Datum::Null),
                &field,
                opname,
            )?)),
            other => self.apply_op(other, Op::GetField(field)),
        }
    }

    /// `pluck`, `without`, `hasFields` and `withFields`, which all take field paths.
    pub(super) fn field_paths(&mut self, ty: u32, first: Val, args: &[Term]) -> Result<Val> {
        use tt::*;
        let mut paths = Vec::new();
        for a in &args[1..] {
            paths.push(self.datum(a)?);
        }
        let single = match &first {
            Val::Datum(d @ Datum::Object(_)) => Some(d.clone()),
            Val::Single(s) => Some(s.doc.clone().unwrap_or(Datum::Null)),
            Val::Datum(d) if !matches!(d, Datum::Array(_)) => Some(d.clone()),
            _ => None,
        };
        if let Some(d) = single {
            return Ok(Val::Datum(match ty {
                PLUCK => seq::pluck(&d, &paths)?,
                WITHOUT => seq::without(&d, &paths)?,
                HAS_FIELDS => Datum::Bool(seq::has_fields(&d, &paths)?),
                _ => {
                    return Err(ReqlError::logic(format!(
                        "Cannot convert {} to SEQUENCE",
                        d.type_name()
                    )))
                }
            }));
        }
        let op = match ty {
            PLUCK => Op::Pluck(paths),
            WITHOUT => Op::Without(paths),
            HAS_FIELDS => Op::HasFields(paths),
            _ => Op::WithFields(paths),
        };
        self.apply_op(first, op)
    }

    pub(super) fn merge(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        let mut margs = Vec::new();
        for a in &args[1..] {
            margs.push(match self.func_like(a)? {
                FuncLike::Func(f) => MergeArg::Func(f),
                FuncLike::Value(v) => MergeArg::Value(v),
            });
        }
        let single = match &first {
            Val::Datum(d @ Datum::Object(_)) => Some(d.clone()),
            Val::Single(s) => match &s.doc {
                Some(d) => Some(d.clone()),
                None => return Err(seq::not_object_or_sequence("merge", &Datum::Null)),
            },
            Val::Datum(d) if !matches!(d, Datum::Array(_)) => {
                return Err(seq::not_object_or_sequence("merge", d))
            }
            _ => None,
        };
        if let Some(mut cur) = single {
            for m in &margs {
                let patch = match m {
                    MergeArg::Value(v) => v.clone(),
                    MergeArg::Func(f) => f.call_datum(std::slice::from_ref(&cur))?,
                };
                cur = seq::merge_values(&cur, &patch);
            }
            return Ok(Val::Datum(cur));
        }
        self.apply_op(first, Op::Merge(margs))
    }

    pub(super) fn keys(&mut self, first: Val) -> Result<Val> {
        Ok(Val::Datum(ops::keys(&self.ctx.to_datum(first)?)?))
    }

    pub(super) fn values(&mut self, first: Val) -> Result<Val> {
        Ok(Val::Datum(ops::values(&self.ctx.to_datum(first)?)?))
    }

    pub(super) fn append_or_prepend(&mut self, ty: u32, first: Val, args: &[Term]) -> Result<Val> {
        use tt::*;
        let arr = self.ctx.to_datum(first)?;
        let mut v = ops::array(&arr)?.clone();
        let x = self.datum(&args[1])?;
        if ty == APPEND {
            v.push(x);
        } else {
            v.insert(0, x);
        }
        Ok(Val::Datum(Datum::array(v)))
    }
}

fn get_field_named(d: &Datum, field: &str, opname: &str) -> Result<Datum> {
    seq::get_field(d, field).map_err(|e| match e {
        ReqlError::Runtime(kind, msg) => {
            ReqlError::Runtime(kind, msg.replacen("bracket", opname, 1))
        }
        other => other,
    })
}
