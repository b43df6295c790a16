use std::fmt;

use grip::sse::{Event, EventId, EventName};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::Rules;

/// A player as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Player {
    /// The player's id, 1 to 63 characters of `[A-Za-z0-9_-]`.
    #[schema(examples("ann"))]
    pub id: String,
    /// The player's display name.
    #[schema(examples("Ann"))]
    pub name: String,
    /// `None` until the player's first submission on a `set` or `best`
    /// board: such a player is not ranked yet.
    #[serde(default, deserialize_with = "optional_score")]
    #[schema(required, minimum = -9_007_199_254_740_991_i64, maximum = 9_007_199_254_740_991_i64)]
    pub score: Option<i64>,
    /// The player's 1-based position under the board's order, ties broken
    /// by player id (see the store's ranking queries); absent where it was
    /// not asked for (a score-add's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1)]
    pub rank: Option<u64>,
}

/// RethinkDB numbers are doubles. Scores written through this API are always
/// integral, but a document edited by hand may not be; reading it must not
/// fail the whole board, so a fractional score is truncated toward zero.
/// For `#[serde(deserialize_with)]` on any type that holds a stored score.
pub fn integral_score<'de, D: Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(de)?;
    if let Some(i) = number.as_i64() {
        return Ok(i);
    }
    let f = number.as_f64().unwrap_or(0.0);
    // `as` saturates on out-of-range floats, which is the right clamp here.
    Ok(f.trunc() as i64)
}

/// [`integral_score`] for a score that may be absent or null.
pub fn optional_score<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    let number = Option::<serde_json::Number>::deserialize(de)?;
    Ok(number.map(|n| match n.as_i64() {
        Some(i) => i,
        None => n.as_f64().unwrap_or(0.0).trunc() as i64,
    }))
}

/// A board as listed by `GET /boards/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BoardSummary {
    /// The board's id, as in its URL.
    pub id: String,
    /// The board's display name (empty for a board stored without one).
    #[serde(default)]
    pub name: String,
}

/// A board with its rules and its top players in rank order, each with its
/// rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Board {
    /// The board's id, as in its URL.
    pub id: String,
    /// The board's display name.
    pub name: String,
    /// How the board ranks and scores (the defaults for a board stored
    /// without rules).
    #[serde(default)]
    pub rules: Rules,
    /// The period in force, on a board that resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub period: Option<PeriodInfo>,
    /// When the period in force ends (RFC 3339), on a board that resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub next_reset: Option<String>,
    /// The same, in milliseconds since the epoch; not part of the JSON.
    #[serde(skip)]
    pub ends_at_ms: Option<i64>,
    /// The last period's reset is under way (the board is switched, its
    /// players not all moved yet); not part of the JSON.
    #[serde(skip)]
    pub resetting: bool,
    /// The top players under the board's rules, best first; at most
    /// `rules.top()` of them.
    pub players: Vec<Player>,
}

/// A board's period: its number (1 for the first) and when it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeriodInfo {
    /// Which period this is, counting from 1.
    #[schema(minimum = 1)]
    pub number: u64,
    /// When the period began (RFC 3339).
    #[schema(format = DateTime)]
    pub start: String,
}

/// The identity of a board's state: a short hash of its snapshot's JSON.
///
/// It is the SSE `id:` of every event and the GRIP `prev-id` chain. A hash of
/// the content (rather than a counter) needs no extra write, is the same in
/// every process that computes it, and makes "has the board changed since the
/// client's Last-Event-ID?" a plain comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotVersion(String);

impl SnapshotVersion {
    fn of(json: &str) -> Self {
        let digest = Sha256::digest(json.as_bytes());
        let mut hex = String::with_capacity(16);
        for byte in &digest[..8] {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self(hex)
    }

    /// The version as hex text: the SSE event id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a client-supplied event id names this version.
    pub fn matches(&self, last_event_id: &str) -> bool {
        self.0 == last_event_id.trim()
    }
}

/// A version is the SSE `id:` of its snapshot's event.
impl From<&SnapshotVersion> for EventId {
    fn from(version: &SnapshotVersion) -> Self {
        // Hex digits: never a NUL, CR or LF.
        EventId::parse(version.as_str()).expect("a hex version is a valid event id")
    }
}

impl fmt::Display for SnapshotVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A board rendered once: its compact JSON, its version and its SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    board: Board,
    json: String,
    version: SnapshotVersion,
}

impl Snapshot {
    /// Renders `board` once: its JSON, and the version that hashes it.
    pub fn new(board: Board) -> Self {
        // Serialising plain strings and integers cannot fail.
        let json = serde_json::to_string(&board).unwrap_or_default();
        let version = SnapshotVersion::of(&json);
        Self {
            board,
            json,
            version,
        }
    }

    /// The board the snapshot was rendered from.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The board as compact JSON: the body of a board read and the data of
    /// its event.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The hash of [`Snapshot::json`] that identifies this state.
    pub fn version(&self) -> &SnapshotVersion {
        &self.version
    }

    /// The SSE frame every subscriber receives:
    /// `id: <version>\nevent: update\ndata: <compact JSON>\n\n`.
    ///
    /// Compact JSON never holds a raw newline (serde_json escapes them in
    /// strings), so one `data:` line is always enough.
    pub fn sse_event(&self) -> String {
        Event::new(self.json.as_str())
            .with_id(&self.version)
            .with_event(EventName::from_static("update"))
            .encode()
    }
}

/// The SSE frame sent to a deleted board's subscribers before their stream
/// is closed: `event: deleted\ndata: {"id":"<board>"}\n\n`.
pub fn deleted_event(board_id: &str) -> String {
    Event::new(serde_json::json!({ "id": board_id }).to_string())
        .with_event(EventName::from_static("deleted"))
        .encode()
}

/// The SSE frame sent when a board resets, before its new snapshot:
/// `event: reset\ndata: <the archived period>\n\n`.
pub fn reset_event(period: &serde_json::Value) -> String {
    Event::new(period.to_string())
        .with_event(EventName::from_static("reset"))
        .encode()
}

/// The default channel prefix, as in the original example.
pub const DEFAULT_CHANNEL_PREFIX: &str = "leaderboard-";

/// Checks a channel prefix (GRIP_PREFIX). It ends up in `Grip-Channel`
/// headers and publish items, so it is held to the id characters plus `.`
/// and `:`, at most 64 of them.
pub fn check_channel_prefix(raw: &str) -> Result<String, crate::ValidationError> {
    let ok = raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(crate::ValidationError::new(
            "channel prefix",
            "may contain only letters, digits and - _ . : (at most 64)",
        ))
    }
}

/// The channel prefix setting (`GRIP_PREFIX`): `raw` when set, else the
/// default, checked either way.
pub fn channel_prefix(raw: Option<&str>) -> Result<String, crate::ValidationError> {
    check_channel_prefix(raw.unwrap_or(DEFAULT_CHANNEL_PREFIX))
}

/// The GRIP channel of a board: `<prefix><board id>`.
pub fn channel_name(prefix: &str, board_id: &str) -> String {
    format!("{prefix}{board_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(scores: &[(&str, i64)]) -> Board {
        Board {
            id: "b1".into(),
            name: "Weekly".into(),
            rules: Rules::default(),
            period: None,
            next_reset: None,
            ends_at_ms: None,
            resetting: false,
            players: scores
                .iter()
                .map(|(id, score)| Player {
                    id: (*id).into(),
                    name: format!("name {id}\nline two"),
                    score: Some(*score),
                    rank: None,
                })
                .collect(),
        }
    }

    #[test]
    fn event_is_one_compact_data_line() {
        let snap = Snapshot::new(board(&[("p1", 3), ("p2", 1)]));
        let event = snap.sse_event();
        assert!(event.starts_with(&format!("id: {}\nevent: update\ndata: {{", snap.version())));
        assert!(event.ends_with("}\n\n"));
        assert_eq!(event.matches('\n').count(), 4);
        let data = event
            .lines()
            .nth(2)
            .unwrap()
            .strip_prefix("data: ")
            .unwrap();
        let parsed: Board = serde_json::from_str(data).unwrap();
        assert_eq!(&parsed, snap.board());
    }

    #[test]
    fn deleted_event_names_the_board() {
        assert_eq!(
            deleted_event("b1"),
            "event: deleted\ndata: {\"id\":\"b1\"}\n\n"
        );
    }

    #[test]
    fn version_follows_content() {
        let a = Snapshot::new(board(&[("p1", 3)]));
        let b = Snapshot::new(board(&[("p1", 3)]));
        let c = Snapshot::new(board(&[("p1", 4)]));
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
        assert_eq!(a.version().as_str().len(), 16);
        assert!(a.version().matches(&format!(" {} ", a.version())));
    }

    #[test]
    fn fractional_scores_are_read_not_rejected() {
        let p: Player = serde_json::from_str(r#"{"id":"a","name":"A","score":2.7}"#).unwrap();
        assert_eq!(p.score, Some(2));
        let p: Player = serde_json::from_str(r#"{"id":"a","name":"A","score":5}"#).unwrap();
        assert_eq!(p.score, Some(5));
    }
}
