//! String manipulation: `upcase`, `downcase` and `split`.

use super::{ops, Evaluator, Val};
use crate::datum::Datum;
use crate::error::Result;
use crate::term::Term;

impl Evaluator<'_> {
    pub(super) fn upcase(&mut self, args: &[Term]) -> Result<Val> {
        Ok(Val::Datum(Datum::from(ops::upcase(
            &self.string(&args[0])?,
        ))))
    }

    pub(super) fn downcase(&mut self, args: &[Term]) -> Result<Val> {
        Ok(Val::Datum(Datum::from(ops::downcase(
            &self.string(&args[0])?,
        ))))
    }

    pub(super) fn split(&mut self, args: &[Term]) -> Result<Val> {
        let s = self.string(&args[0])?;
        let sep = match args.get(1) {
            Some(a) => match self.datum(a)? {
                Datum::Null => None,
                d => Some(ops::string(&d)?.to_string()),
            },
            None => None,
        };
        let max = match args.get(2) {
            Some(a) => Some(self.int(a)?),
            None => None,
        };
        Ok(Val::Datum(ops::split(&s, sep.as_deref(), max)))
    }
}
