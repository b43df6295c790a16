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

pub(super) fn now() -> Result<Val> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0);
    Ok(Val::Datum(ops::make_time(now, "+00:00")))
}
