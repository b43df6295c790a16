//! Dates and times: `epochTime`, `now` and `toEpochTime`.

use super::{ops, Evaluator, Val};
use crate::error::{ReqlError, Result};
use crate::term::Term;

impl Evaluator<'_> {
    pub(super) fn epoch_time(&mut self, args: &[Term]) -> Result<Val> {
        let n = ops::num(&self.datum(&args[0])?)?;
        Ok(Val::Datum(ops::make_time(n, "+00:00")))
    }

    pub(super) fn epoch_seconds(&mut self, args: &[Term]) -> Result<Val> {
        let d = self.datum(&args[0])?;
        match (d.ptype(), d.get("epoch_time")) {
            (Some("TIME"), Some(e)) => Ok(Val::Datum(e.clone())),
            _ => Err(ReqlError::logic(format!(
                "Not a TIME pseudotype: `{}`.",
                d.to_json().unwrap_or_default()
            ))),
        }
    }
}

/// `r.now()`: the time the query arrived, the same wherever it appears in it.
pub(super) fn now(at: f64) -> Result<Val> {
    Ok(Val::Datum(ops::make_time(at, "+00:00")))
}
