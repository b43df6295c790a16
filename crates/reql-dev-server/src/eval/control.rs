//! Control structures: variables, function calls, `branch`, `default`, `error`, `range`, `coerceTo`...

use uuid::Uuid;

use super::seq::{self, Seq, SeqKind, Source};
use super::{ops, Bound, Evaluator, Single, Val};
use crate::datum::Datum;
use crate::error::{ReqlError, Result};
use crate::term::{Kind, Term};

impl Evaluator<'_> {
    pub(super) fn make_array(&mut self, args: &[Term]) -> Result<Val> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            out.push(self.datum(a)?);
        }
        if out.len() > self.ctx.array_limit {
            return Err(seq::array_limit_error(self.ctx.array_limit));
        }
        Ok(Val::Datum(Datum::array(out)))
    }

    pub(super) fn var(&mut self, args: &[Term]) -> Result<Val> {
        let id = args
            .first()
            .and_then(|a| a.as_datum())
            .and_then(Datum::as_num)
            .map(|n| n as i64);
        self.env
            .vars
            .iter()
            .rev()
            .find(|(p, _)| Some(*p) == id)
            .map(|(_, b)| b.to_val())
            .ok_or_else(|| ReqlError::compile("Variable name not found."))
    }

    pub(super) fn implicit_var(&mut self) -> Result<Val> {
        self.env
            .implicit
            .as_ref()
            .map(Bound::to_val)
            .ok_or_else(|| ReqlError::compile("r.row is not defined in this context."))
    }

    pub(super) fn funcall(&mut self, args: &[Term]) -> Result<Val> {
        let f = self.func(&args[0])?;
        let mut call_args = Vec::new();
        // RethinkDB 2.4.4 passes every argument of `do` as a datum: a
        // `get` arrives as its document (so `.update` on it is refused), a
        // table is refused ("Expected type DATUM but found TABLE").
        for a in &args[1..] {
            call_args.push(Bound::Datum(self.datum(a)?));
        }
        f.call(call_args)
    }

    pub(super) fn error(&mut self, args: &[Term]) -> Result<Val> {
        if args.is_empty() {
            return Err(self
                .env
                .default_error
                .clone()
                .unwrap_or_else(|| ReqlError::logic("Empty ERROR term outside a default block.")));
        }
        let msg = self.string(&args[0])?;
        Err(ReqlError::user(msg))
    }

    pub(super) fn branch(&mut self, args: &[Term]) -> Result<Val> {
        if args.len() % 2 == 0 {
            return Err(ReqlError::compile(format!(
                "Expected an odd number of arguments to branch but found {}.",
                args.len()
            )));
        }
        let mut i = 0;
        while i + 1 < args.len() {
            if self.datum(&args[i])?.truthy() {
                return self.eval(&args[i + 1]);
            }
            i += 2;
        }
        self.eval(&args[args.len() - 1])
    }

    pub(super) fn default(&mut self, args: &[Term]) -> Result<Val> {
        // `default` stands in for null and for errors about missing data;
        // other errors pass through.
        let missing = match self.eval(&args[0]) {
            Ok(Val::Datum(Datum::Null)) | Ok(Val::Single(Single { doc: None, .. })) => None,
            Ok(v) => return Ok(v),
            Err(e) if e.is_non_existence() => Some(e),
            Err(e) => return Err(e),
        };
        let saved = std::mem::replace(&mut self.env.default_error, missing.clone());
        let out = match (args[1].kind(), self.func_of(&args[1])) {
            (Kind::Func { .. }, Some(f)) => {
                let arg = missing
                    .map(|e| Datum::from(e.message()))
                    .unwrap_or(Datum::Null);
                f.call(vec![Bound::Datum(arg)])
            }
            _ => self.eval(&args[1]),
        };
        self.env.default_error = saved;
        out
    }

    pub(super) fn range(&mut self, args: &[Term]) -> Result<Val> {
        let (start, end) = match args.len() {
            0 => (0, None),
            1 => (0, Some(self.int(&args[0])?)),
            _ => (self.int(&args[0])?, Some(self.int(&args[1])?)),
        };
        Ok(Val::Seq(Box::new(Seq::new(
            Source::Range {
                next: start as f64,
                end: end.map(|e| e as f64),
            },
            SeqKind::Stream,
            self.ctx.clone(),
        ))))
    }

    pub(super) fn json(&mut self, args: &[Term]) -> Result<Val> {
        let s = self.string(&args[0])?;
        Datum::parse_json(&s)
            .map(Val::Datum)
            .map_err(|e| ReqlError::logic(format!("Failed to parse \"{s}\" as JSON: {e}")))
    }

    pub(super) fn json_string(&mut self, args: &[Term]) -> Result<Val> {
        Ok(Val::Datum(Datum::from(self.datum(&args[0])?.to_json()?)))
    }

    pub(super) fn binary(&mut self, args: &[Term]) -> Result<Val> {
        let d = self.datum(&args[0])?;
        if d.ptype() == Some("BINARY") {
            return Ok(Val::Datum(d));
        }
        Ok(Val::Datum(ops::coerce(&d, "binary")?))
    }

    pub(super) fn type_of(&mut self, args: &[Term]) -> Result<Val> {
        let v = self.eval(&args[0])?;
        Ok(Val::Datum(Datum::from(v.type_name())))
    }

    pub(super) fn coerce_to(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        let to = self.string(&args[1])?;
        let lower = to.to_ascii_lowercase();
        match first {
            v @ (Val::Seq(_) | Val::Table(_) | Val::ArraySel(..)) if lower == "array" => {
                Ok(Val::Datum(Datum::array(self.ctx.to_array(v)?)))
            }
            v @ (Val::Seq(_) | Val::Table(_)) if lower == "object" => {
                let arr = Datum::array(self.ctx.to_array(v)?);
                Ok(Val::Datum(ops::coerce(&arr, "object")?))
            }
            v => {
                let d = self.ctx.to_datum(v)?;
                Ok(Val::Datum(ops::coerce(&d, &to)?))
            }
        }
    }
}

pub(super) fn uuid() -> Result<Val> {
    Ok(Val::Datum(Datum::from(Uuid::new_v4().to_string())))
}
