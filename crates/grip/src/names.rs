//! Validated channel names and item ids.
//!
//! Both end up in places with a strict grammar: `Grip-Channel: name; prev-id=ID`
//! on the way out, `Grip-Last: name; last-id=ID` on the way back in, and the
//! SSE `id:` line. Pushpin splits those headers on `,` and `;` without
//! honouring quotes in the first element, and writes `Grip-Last` back by plain
//! concatenation. So the only way to guarantee a round trip is to keep those
//! characters out of names and ids in the first place.

use std::fmt;

use serde::Serialize;

/// Longest channel name or item id accepted, in bytes.
///
/// Pushpin has no documented limit; this one keeps a header with a handful of
/// channels well below the 8 KiB header limits common in proxies.
pub const MAX_NAME_LEN: usize = 1024;

/// Why a channel name or item id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The value was empty.
    #[error("{what} is empty")]
    Empty {
        /// `"channel name"` or `"item id"`.
        what: &'static str,
    },
    /// The value is longer than [`MAX_NAME_LEN`] bytes.
    #[error("{what} is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// `"channel name"` or `"item id"`.
        what: &'static str,
        /// Length of the rejected value in bytes.
        len: usize,
        /// The limit, [`MAX_NAME_LEN`].
        max: usize,
    },
    /// The value holds a character outside the allowed set.
    #[error(
        "{what} contains {found:?} at byte {at}; allowed are visible ASCII characters except \" , ; \\"
    )]
    InvalidChar {
        /// `"channel name"` or `"item id"`.
        what: &'static str,
        /// The first offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Visible ASCII (`!` to `~`) minus the characters that have a meaning in
/// GRIP header parameter lists.
fn allowed(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'"' | b',' | b';' | b'\\')
}

fn validate(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            len: s.len(),
            max: MAX_NAME_LEN,
        });
    }
    if let Some((at, found)) = s
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !allowed(c as u8))
    {
        return Err(NameError::InvalidChar { what, found, at });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            ///
            /// # Errors
            /// [`NameError`] if `s` is empty, longer than [`MAX_NAME_LEN`] bytes,
            /// or holds anything but visible ASCII other than `"` `,` `;` `\`.
            pub fn parse(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                validate($what, &s)?;
                Ok(Self(s))
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the inner string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0).finish()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }
    };
}

name_type!(
    /// A GRIP channel name: 1 to [`MAX_NAME_LEN`] visible ASCII characters,
    /// none of them `"` `,` `;` `\`.
    ///
    /// ```
    /// use grip::ChannelName;
    /// assert!(ChannelName::parse("board:42").is_ok());
    /// assert!(ChannelName::parse("a;b").is_err());
    /// assert!(ChannelName::parse("with space").is_err());
    /// ```
    ChannelName,
    "channel name"
);

name_type!(
    /// The id of a published item, also used as `prev-id` and `last-id`:
    /// 1 to [`MAX_NAME_LEN`] visible ASCII characters, none of them
    /// `"` `,` `;` `\`.
    ///
    /// ```
    /// use grip::ItemId;
    /// assert!(ItemId::parse("17-0000000042").is_ok());
    /// assert!(ItemId::parse("").is_err());
    /// ```
    ItemId,
    "item id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_typical_names() {
        for s in ["a", "board:1", "x-y_z.~!#$%&'()*+-./:<=>?@[]^_`{|}", "0"] {
            assert_eq!(ChannelName::parse(s).unwrap().as_str(), s);
            assert_eq!(ItemId::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn rejects_grammar_characters() {
        for s in [
            "", "a b", "a,b", "a;b", "a\"b", "a\\b", "a\nb", "a\rb", "é", "a\tb", "a\u{7f}",
        ] {
            assert!(ChannelName::parse(s).is_err(), "{s:?}");
            assert!(ItemId::parse(s).is_err(), "{s:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            ChannelName::parse(long),
            Err(NameError::TooLong { .. })
        ));
        assert!(ChannelName::parse("x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn error_names_the_character() {
        let err = ItemId::parse("ab;c").unwrap_err();
        assert_eq!(
            err,
            NameError::InvalidChar {
                what: "item id",
                found: ';',
                at: 2
            }
        );
        assert!(err.to_string().contains("item id"));
    }

    #[test]
    fn serialises_as_plain_string() {
        let c = ChannelName::parse("c1").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"c1\"");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_allowed(s in any::<String>()) {
            let ok = ChannelName::parse(s.clone()).is_ok();
            let expected = !s.is_empty() && s.len() <= MAX_NAME_LEN && s.bytes().all(allowed);
            prop_assert_eq!(ok, expected);
        }

        #[test]
        fn allowed_strings_round_trip(s in "[!#-+\\--:<-\\[\\]-~]{1,64}") {
            let id = ItemId::parse(s.clone()).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.to_string(), s);
        }
    }
}
