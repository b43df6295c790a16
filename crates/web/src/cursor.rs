//! The opaque cursor of a paged board listing: the position (score, then
//! player id) of the last player of the page, so the next page starts right
//! after it whatever was written in between.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{PlayerId, MAX_SCORE};

use crate::error::ApiError;

/// A position in a board's rank order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    score: i64,
    player: String,
}

impl Cursor {
    /// The position of the player `player` with score `score`.
    pub fn new(score: i64, player: String) -> Self {
        Self { score, player }
    }

    /// URL-safe base64 of `[score, "player"]`. Clients treat it as opaque.
    pub fn encode(&self) -> String {
        let json = serde_json::json!([self.score, self.player]).to_string();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a cursor this API gave; anything else is a 400.
    pub fn decode(raw: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::BadRequest("cursor is not one this API gave out".into());
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let (score, player): (i64, String) =
            serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if score.abs() > MAX_SCORE || PlayerId::parse(&player).is_err() {
            return Err(invalid());
        }
        Ok(Self { score, player })
    }

    /// The position: score and player id.
    pub fn into_position(self) -> (i64, String) {
        (self.score, self.player)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let c = Cursor::new(-42, "ann_1".into());
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in [
            "",
            "!!",
            "bm90IGpzb24",
            &URL_SAFE_NO_PAD.encode("[1, \"a:b\"]"),
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
        let huge = URL_SAFE_NO_PAD.encode(format!("[{}, \"a\"]", MAX_SCORE as i128 + 1));
        assert!(Cursor::decode(&huge).is_err());
    }
}
