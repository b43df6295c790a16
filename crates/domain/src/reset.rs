//! When a board resets: daily, weekly or monthly at 00:00 UTC, or on a cron
//! schedule. The period in force is kept in the board's document; the
//! worker holding the board's shard lease performs each reset.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use croner::Cron;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ValidationError;

/// The longest cron expression accepted.
const MAX_CRON_LEN: usize = 100;

/// A board's reset schedule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reset {
    /// Every day at 00:00 UTC.
    Daily,
    /// Every Monday at 00:00 UTC.
    Weekly,
    /// The first of every month at 00:00 UTC.
    Monthly,
    /// A cron expression (five fields, or six with seconds first), in UTC.
    Cron(String),
}

impl Reset {
    /// Checks a schedule: `daily`, `weekly`, `monthly`, or a cron expression
    /// that has a next occurrence.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let reset = match raw {
            "daily" => Reset::Daily,
            "weekly" => Reset::Weekly,
            "monthly" => Reset::Monthly,
            other => {
                let other = other.trim();
                if other.is_empty() || other.len() > MAX_CRON_LEN {
                    return Err(invalid());
                }
                Reset::Cron(other.to_owned())
            }
        };
        let now = Utc::now().timestamp_millis();
        reset.next_after(now).ok_or_else(invalid)?;
        Ok(reset)
    }

    fn cron(&self) -> Option<Cron> {
        let pattern = match self {
            Reset::Daily => "0 0 * * *",
            Reset::Weekly => "0 0 * * MON",
            Reset::Monthly => "0 0 1 * *",
            Reset::Cron(c) => c,
        };
        Cron::from_str(pattern).ok()
    }

    /// The first reset strictly after `ms` (milliseconds since the epoch),
    /// or `None` if the schedule has none.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        // Schedules fall on whole seconds; the cron library keeps the
        // fraction of the time it starts from, so start from the second.
        let at = Utc.timestamp_opt(ms.div_euclid(1000), 0).single()?;
        let next = self.cron()?.find_next_occurrence(&at, false).ok()?;
        Some(next.timestamp_millis())
    }
}

fn invalid() -> ValidationError {
    ValidationError::new(
        "reset",
        "must be \"daily\", \"weekly\", \"monthly\" or a cron expression (UTC, five fields or six with seconds first)",
    )
}

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reset::Daily => "daily",
            Reset::Weekly => "weekly",
            Reset::Monthly => "monthly",
            Reset::Cron(c) => c,
        })
    }
}

impl Serialize for Reset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Reset::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn named_schedules_fall_at_midnight_utc() {
        let t = ms("2026-12-05T13:20:00.754Z");
        assert_eq!(
            rfc3339(Reset::Daily.next_after(t).unwrap()),
            "2026-12-06T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Reset::Weekly.next_after(t).unwrap()),
            "2026-12-07T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Reset::Monthly.next_after(t).unwrap()),
            "2027-01-01T00:00:00.000Z"
        );
        // Strictly after: at a boundary, the next one.
        let midnight = ms("2026-12-06T00:00:00Z");
        assert_eq!(
            rfc3339(Reset::Daily.next_after(midnight).unwrap()),
            "2026-12-07T00:00:00.000Z"
        );
    }

    #[test]
    fn cron_with_seconds_and_refusals() {
        let every3 = Reset::parse("*/3 * * * * *").unwrap();
        let t = ms("2026-12-05T13:20:01Z");
        assert_eq!(
            rfc3339(every3.next_after(t).unwrap()),
            "2026-12-05T13:20:03.000Z"
        );
        assert_eq!(Reset::parse("weekly").unwrap(), Reset::Weekly);
        for bad in ["", "hourly-ish", "61 * * * *", "* * *", &"*".repeat(200)] {
            assert!(Reset::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&every3).unwrap();
        assert_eq!(json, "\"*/3 * * * * *\"");
        assert_eq!(serde_json::from_str::<Reset>(&json).unwrap(), every3);
    }
}
