//! Reading a term's arguments as datums, strings, integers, optional arguments and functions.

use std::sync::Arc;

use super::seq::Seq;
use super::{ops, to_seq, Evaluator, FuncLike, FuncVal, Val};
use crate::datum::Datum;
use crate::error::{ReqlError, Result};
use crate::term::{Kind, Term};

impl Evaluator<'_> {
    pub fn datum(&mut self, t: &Term) -> Result<Datum> {
        let v = self.eval(t)?;
        self.ctx.to_datum(v)
    }

    pub(super) fn string(&mut self, t: &Term) -> Result<String> {
        let d = self.datum(t)?;
        Ok(ops::string(&d)?.to_string())
    }

    pub(super) fn int(&mut self, t: &Term) -> Result<i64> {
        let d = self.datum(t)?;
        ops::int(&d)
    }

    /// An argument RethinkDB reads as a 32-bit integer (`limit`, `nth`):
    /// anything outside that range is refused, whichever its sign.
    pub(super) fn int32(&mut self, t: &Term) -> Result<i64> {
        let n = self.int(t)?;
        if i32::try_from(n).is_err() {
            return Err(ReqlError::logic(format!("Integer too large: {n}")));
        }
        Ok(n)
    }

    pub(super) fn opt(&mut self, t: &Term, name: &str) -> Result<Option<Datum>> {
        match t.optarg(name) {
            Some(o) => Ok(Some(self.datum(o)?)),
            None => Ok(None),
        }
    }

    pub(super) fn opt_bool(&mut self, t: &Term, name: &str) -> Result<bool> {
        match self.opt(t, name)? {
            None => Ok(false),
            Some(d) => ops::boolean(&d),
        }
    }

    pub(super) fn func_of(&self, t: &Term) -> Option<FuncVal> {
        match t.kind() {
            Kind::Func { params, body, .. } => Some(FuncVal {
                params: Arc::new(params.clone()),
                body: body.clone(),
                env: self.env.clone(),
                ctx: self.ctx.clone(),
                implicit_only: false,
            }),
            _ if t.uses_implicit_var() => Some(FuncVal {
                params: Arc::new(Vec::new()),
                body: t.clone(),
                env: self.env.clone(),
                ctx: self.ctx.clone(),
                implicit_only: true,
            }),
            _ => None,
        }
    }

    pub(super) fn func_like(&mut self, t: &Term) -> Result<FuncLike> {
        if let Some(f) = self.func_of(t) {
            return Ok(FuncLike::Func(f));
        }
        match self.eval(t)? {
            Val::Func(f) => Ok(FuncLike::Func(f)),
            v => Ok(FuncLike::Value(self.ctx.to_datum(v)?)),
        }
    }

    pub(super) fn func(&mut self, t: &Term) -> Result<FuncVal> {
        match self.func_like(t)? {
            FuncLike::Func(f) => Ok(f),
            FuncLike::Value(d) => Err(ReqlError::logic(format!(
                "Expected type FUNCTION but found {}.",
                d.type_name()
            ))),
        }
    }

    pub(super) fn seq(&self, v: Val) -> Result<Seq> {
        to_seq(self.ctx, v)
    }
}
