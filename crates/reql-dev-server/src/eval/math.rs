//! Math and logic: comparisons, `not`, `and`, `or`, arithmetic and rounding.

use super::{ops, Evaluator, Val};
use crate::datum::Datum;
use crate::error::Result;
use crate::term::{tt, Term};

impl Evaluator<'_> {
    pub(super) fn compare(&mut self, ty: u32, args: &[Term]) -> Result<Val> {
        use tt::*;
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.datum(a)?);
        }
        let result = if ty == NE {
            // `ne` over several values is the negation of `eq` over them.
            !vals.windows(2).all(|w| w[0] == w[1])
        } else {
            vals.windows(2).all(|w| ops::compare(ty, &w[0], &w[1]))
        };
        Ok(Val::Datum(Datum::Bool(result)))
    }

    pub(super) fn not(&mut self, args: &[Term]) -> Result<Val> {
        Ok(Val::Datum(Datum::Bool(!self.datum(&args[0])?.truthy())))
    }

    pub(super) fn and_or(&mut self, ty: u32, args: &[Term]) -> Result<Val> {
        use tt::*;
        let mut last = Datum::Bool(ty == AND);
        for a in args {
            let v = self.datum(a)?;
            let stop = if ty == OR { v.truthy() } else { !v.truthy() };
            last = v;
            if stop {
                break;
            }
        }
        Ok(Val::Datum(last))
    }

    pub(super) fn arithmetic(&mut self, ty: u32, args: &[Term]) -> Result<Val> {
        use tt::*;
        let mut acc = self.datum(&args[0])?;
        for a in &args[1..] {
            let b = self.datum(a)?;
            acc = match ty {
                ADD => ops::add(&acc, &b)?,
                SUB => ops::sub(&acc, &b)?,
                MUL => ops::mul(&acc, &b)?,
                _ => ops::div(&acc, &b)?,
            };
        }
        Ok(Val::Datum(acc))
    }

    pub(super) fn modulo(&mut self, args: &[Term]) -> Result<Val> {
        let a = self.datum(&args[0])?;
        let b = self.datum(&args[1])?;
        Ok(Val::Datum(ops::modulo(&a, &b)?))
    }

    pub(super) fn rounding(&mut self, ty: u32, args: &[Term]) -> Result<Val> {
        use tt::*;
        let n = ops::num(&self.datum(&args[0])?)?;
        Ok(Val::Datum(Datum::Num(match ty {
            FLOOR => n.floor(),
            CEIL => n.ceil(),
            _ => n.round(),
        })))
    }
}
