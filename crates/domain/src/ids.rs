use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted for a board or a player. Generated ids are UUIDs (36).
/// A player is stored under `<board id>:<player id>`, and RethinkDB's
/// primary keys hold at most 127 bytes: 63 + 1 + 63.
pub const MAX_ID_LEN: usize = 63;
/// Longest name accepted, counted in characters.
pub const MAX_NAME_LEN: usize = 100;
/// Largest score magnitude. RethinkDB stores every number as an IEEE double, so
/// only integers up to 2^53 - 1 are exact; beyond that increments would be lost.
pub const MAX_SCORE: i64 = (1 << 53) - 1;

/// Why a client-supplied value was refused. The message is written for the
/// client: it names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field at fault, as the client named it (`board id`, `value`).
    pub field: &'static str,
    /// The rule it broke, for the client to read (`must not be empty`).
    pub message: String,
}

impl ValidationError {
    /// A refusal of `field` for the reason `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

fn parse_id(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    if raw.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ValidationError::new(
            field,
            "may contain only letters, digits, '-' and '_'",
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `raw` against the id rules: 1 to 63 characters of
            /// `[A-Za-z0-9_-]`, so an id is always safe in a URL path, a
            /// channel name and a header.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                parse_id($field, raw).map(Self)
            }

            /// The id as the client wrote it, to put in a document, a
            /// query or a URL.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A board's id, as it appears in `/boards/{id}/` and in channel names.
    BoardId,
    "board id"
);
id_type!(
    /// A player's id, unique across all boards.
    PlayerId,
    "player id"
);

/// A display name for a board or a player: trimmed, 1 to 100 characters, no
/// control characters (they would corrupt terminals and log lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Checks `raw` against the name rules; the name kept is `raw` trimmed.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new("name", "must not be empty"));
        }
        if trimmed.chars().count() > MAX_NAME_LEN {
            return Err(ValidationError::new(
                "name",
                format!("must be at most {MAX_NAME_LEN} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The trimmed name, to store or show.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount to add to a score: a integer whose magnitude
/// is at most [`MAX_SCORE`]. Whether the *result* stays in range is checked by
/// the database write itself, atomically with the increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreDelta(i64);

impl ScoreDelta {
    /// One point: what a score-add without a value adds.
    pub const ONE: ScoreDelta = ScoreDelta(1);

    /// `value`, unless its magnitude is above [`MAX_SCORE`].
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if !(-MAX_SCORE..=MAX_SCORE).contains(&value) {
            return Err(ValidationError::new(
                "value",
                format!("must be an integer between -{MAX_SCORE} and {MAX_SCORE}"),
            ));
        }
        Ok(Self(value))
    }

    /// Parses the decimal text of a form field or query parameter.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let value = raw.trim().parse::<i64>().map_err(|_| {
            ValidationError::new("value", format!("must be an integer, got {raw:?}"))
        })?;
        Self::new(value)
    }

    /// The amount, to send to the database.
    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_accept_uuids_and_slugs() {
        assert!(BoardId::parse("3ec81994-b8ab-455b-9716-49d7eb8f7b8d").is_ok());
        assert!(PlayerId::parse("player_1").is_ok());
    }

    #[test]
    fn ids_refuse_empty_long_and_unsafe() {
        assert!(BoardId::parse("").is_err());
        assert!(BoardId::parse(&"a".repeat(64)).is_err());
        assert!(BoardId::parse(&"a".repeat(63)).is_ok());
        for bad in ["a b", "a/b", "a;b", "a,b", "é", "a\nb", "..", "a%20"] {
            assert!(BoardId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Alice ").unwrap().as_str(), "Alice");
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse(&"é".repeat(100)).is_ok());
        assert!(Name::parse(&"é".repeat(101)).is_err());
        assert!(Name::parse("a\u{0}b").is_err());
    }

    #[test]
    fn deltas_are_bounded() {
        assert_eq!(ScoreDelta::parse(" 7 ").unwrap().get(), 7);
        assert!(ScoreDelta::parse("1.5").is_err());
        assert!(ScoreDelta::parse("abc").is_err());
        assert!(ScoreDelta::new(MAX_SCORE).is_ok());
        assert!(ScoreDelta::new(MAX_SCORE + 1).is_err());
        assert!(ScoreDelta::new(i64::MIN).is_err());
    }

    proptest! {
        #[test]
        fn parsed_ids_are_header_and_path_safe(raw in ".{0,80}") {
            if let Ok(id) = BoardId::parse(&raw) {
                prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                prop_assert!(!id.as_str().is_empty() && id.as_str().len() <= MAX_ID_LEN);
            }
        }

        #[test]
        fn names_never_hold_controls(raw in "\\PC{0,120}|.{0,120}") {
            if let Ok(name) = Name::parse(&raw) {
                prop_assert!(!name.as_str().chars().any(char::is_control));
                prop_assert!(name.as_str().chars().count() <= MAX_NAME_LEN);
            }
        }

        #[test]
        fn delta_parse_never_panics(raw in ".{0,30}") {
            let _ = ScoreDelta::parse(&raw);
        }
    }
}
