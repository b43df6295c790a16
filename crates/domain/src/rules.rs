//! A board's rules, fixed when it is created: which way scores rank, what a
//! submitted score does, and how many players its snapshot shows.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Reset, ValidationError};

/// The default size of a board's snapshot and stream, as in the original
/// example.
pub const TOP_N: usize = 5;
/// The largest `top` a board may have.
pub const MAX_TOP: usize = 100;

/// Which scores rank first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Higher is better (points).
    #[default]
    Desc,
    /// Lower is better (lap times).
    Asc,
}

impl Order {
    /// Whether `a` ranks strictly before `b` under this order, scores alone.
    pub fn better(self, a: i64, b: i64) -> bool {
        match self {
            Order::Desc => a > b,
            Order::Asc => a < b,
        }
    }
}

/// What `POST .../score/` does with the value it is given.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// Adds the value (what `score-add` always does).
    #[default]
    Incr,
    /// Replaces the score with the value.
    Set,
    /// Keeps the better of the score and the value, under the board's
    /// [`Order`].
    Best,
}

/// A board's rules. Stored in the board's document as `rules`; a board of an
/// earlier release, without them, has the defaults, which are that
/// release's behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rules {
    /// Which scores rank first (highest by default).
    #[serde(default)]
    #[schema(required)]
    pub order: Order,
    /// What a submitted value does to a score (adds to it by default).
    #[serde(default)]
    #[schema(required)]
    pub operator: Operator,
    /// How many players the board's snapshot and stream show.
    #[serde(default = "default_top")]
    #[schema(required, minimum = 1, maximum = 100)]
    top: usize,
    /// When the board resets, if it does: `daily`, `weekly`, `monthly` or
    /// a cron expression in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, examples("daily"))]
    pub reset: Option<Reset>,
}

fn default_top() -> usize {
    TOP_N
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            order: Order::default(),
            operator: Operator::default(),
            top: TOP_N,
            reset: None,
        }
    }
}

impl Rules {
    /// Rules with a checked `top` (1 to [`MAX_TOP`]).
    pub fn new(
        order: Order,
        operator: Operator,
        top: usize,
        reset: Option<Reset>,
    ) -> Result<Self, ValidationError> {
        if !(1..=MAX_TOP).contains(&top) {
            return Err(ValidationError::new(
                "top",
                format!("must be a number from 1 to {MAX_TOP}"),
            ));
        }
        Ok(Self {
            order,
            operator,
            top,
            reset,
        })
    }

    /// How many players the board's snapshot and stream show. A stored
    /// value out of range (edited by hand) is brought back into it.
    pub fn top(&self) -> usize {
        self.top.clamp(1, MAX_TOP)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::Desc => "desc",
            Order::Asc => "asc",
        })
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Incr => "incr",
            Operator::Set => "set",
            Operator::Best => "best",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_board_without_rules_has_the_defaults() {
        let rules: Rules = serde_json::from_str("{}").unwrap();
        assert_eq!(rules, Rules::default());
        assert_eq!(
            serde_json::to_value(rules).unwrap(),
            serde_json::json!({"order": "desc", "operator": "incr", "top": 5})
        );
    }

    #[test]
    fn top_is_checked() {
        assert!(Rules::new(Order::Asc, Operator::Best, 0, None).is_err());
        assert!(Rules::new(Order::Asc, Operator::Best, 101, None).is_err());
        assert_eq!(
            Rules::new(Order::Asc, Operator::Set, 100, None)
                .unwrap()
                .top(),
            100
        );
        let stored: Rules = serde_json::from_str(r#"{"top": 1000}"#).unwrap();
        assert_eq!(stored.top(), MAX_TOP);
    }

    #[test]
    fn better_follows_the_order() {
        assert!(Order::Desc.better(3, 2));
        assert!(Order::Asc.better(2, 3));
        assert!(!Order::Asc.better(2, 2));
    }
}
