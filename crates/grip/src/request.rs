//! Request headers the proxy adds: `Grip-Last` and `Grip-Feature`.

use crate::names::{ChannelName, ItemId, NameError};

/// `Grip-Last`.
pub const GRIP_LAST: &str = "Grip-Last";
/// `Grip-Feature`.
pub const GRIP_FEATURE: &str = "Grip-Feature";
/// `Grip-Sig`.
pub const GRIP_SIG: &str = "Grip-Sig";

/// Why a `Grip-Last` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GripLastError {
    /// An element has no `last-id` parameter.
    #[error("Grip-Last element for channel {channel:?} has no last-id")]
    MissingLastId {
        /// The channel named by the element.
        channel: String,
    },
    /// The channel name is not a valid [`ChannelName`].
    #[error("Grip-Last channel: {0}")]
    BadChannel(#[source] NameError),
    /// The `last-id` is not a valid [`ItemId`].
    #[error("Grip-Last last-id: {0}")]
    BadLastId(#[source] NameError),
    /// A quoted parameter value is not terminated.
    #[error("Grip-Last has an unterminated quoted string")]
    UnterminatedQuote,
    /// The same channel appears twice with different ids.
    #[error("Grip-Last names channel {0} twice with different ids")]
    Conflict(ChannelName),
}

/// One `Grip-Last` element: the id of the last item the proxy delivered on a
/// channel before it noticed a gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GripLast {
    /// The channel.
    pub channel: ChannelName,
    /// The id of the last item delivered on it.
    pub last_id: ItemId,
}

/// Splits on `sep` outside double-quoted strings (with `\` escapes inside).
fn split_unquoted(s: &str, sep: char) -> Result<Vec<&str>, GripLastError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if in_quote {
        return Err(GripLastError::UnterminatedQuote);
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// A parameter value: a token, or a quoted string with `\` escapes.
fn param_value(raw: &str) -> Result<String, GripLastError> {
    let raw = raw.trim();
    let Some(inner) = raw.strip_prefix('"') else {
        return Ok(raw.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or(GripLastError::UnterminatedQuote)?),
            '"' => return Ok(out),
            c => out.push(c),
        }
    }
    Err(GripLastError::UnterminatedQuote)
}

/// Parses every `Grip-Last` header of a request.
///
/// Pass all the header's values (a request may carry several headers, and
/// each may list several comma-separated elements). Each element reads
/// `<channel>; last-id=<id>`; other parameters are ignored. Empty elements
/// are skipped. A channel named twice with the same id counts once.
///
/// ```
/// use grip::parse_grip_last;
/// let last = parse_grip_last(["a; last-id=1", "b;last-id=\"2\", c; x=y; last-id=3"]).unwrap();
/// let got: Vec<_> = last.iter().map(|l| (l.channel.as_str(), l.last_id.as_str())).collect();
/// assert_eq!(got, [("a", "1"), ("b", "2"), ("c", "3")]);
/// ```
///
/// # Errors
/// [`GripLastError`] when an element lacks `last-id`, the channel or id is
/// not valid, quoting is broken, or one channel has two different ids.
pub fn parse_grip_last<'a, I>(values: I) -> Result<Vec<GripLast>, GripLastError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out: Vec<GripLast> = Vec::new();
    for value in values {
        for element in split_unquoted(value, ',')? {
            if element.trim().is_empty() {
                continue;
            }
            // Pushpin does not honour quotes in the first element, so
            // neither do we: the channel ends at the first `;`.
            let (channel, params) = element.split_once(';').unwrap_or((element, ""));
            let channel = channel.trim();
            let mut last_id = None;
            for param in split_unquoted(params, ';')? {
                let (name, value) = param.split_once('=').unwrap_or((param, ""));
                if name.trim().eq_ignore_ascii_case("last-id") {
                    last_id = Some(param_value(value)?);
                }
            }
            let Some(last_id) = last_id else {
                return Err(GripLastError::MissingLastId {
                    channel: channel.to_owned(),
                });
            };
            let entry = GripLast {
                channel: ChannelName::parse(channel).map_err(GripLastError::BadChannel)?,
                last_id: ItemId::parse(last_id).map_err(GripLastError::BadLastId)?,
            };
            match out.iter().find(|e| e.channel == entry.channel) {
                Some(existing) if existing.last_id == entry.last_id => {}
                Some(_) => return Err(GripLastError::Conflict(entry.channel)),
                None => out.push(entry),
            }
        }
    }
    Ok(out)
}

/// The features the proxy announces in `Grip-Feature`, such as `status`,
/// `session` or `link:next`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GripFeatures(Vec<String>);

impl GripFeatures {
    /// Reads every `Grip-Feature` header value of a request. Elements are
    /// comma-separated; any `;` parameters are dropped.
    ///
    /// ```
    /// use grip::GripFeatures;
    /// let f = GripFeatures::parse(["status, session, link:next"]);
    /// assert!(f.supports("link:next"));
    /// assert!(!f.supports("filter:skip-self"));
    /// ```
    pub fn parse<'a, I>(values: I) -> Self
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut features = Vec::new();
        for value in values {
            for element in value.split(',') {
                let name = element.split(';').next().unwrap_or("").trim();
                if !name.is_empty() && !features.iter().any(|f: &String| f == name) {
                    features.push(name.to_owned());
                }
            }
        }
        Self(features)
    }

    /// Whether the proxy announced `feature` (case-sensitive).
    pub fn supports(&self, feature: &str) -> bool {
        self.0.iter().any(|f| f == feature)
    }

    /// The announced features, in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether no feature was announced (no `Grip-Feature` header: the
    /// request probably did not come through a GRIP proxy).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn what_pushpin_sends() {
        let l = parse_grip_last(["board:1; last-id=17-3"]).unwrap();
        assert_eq!(
            l,
            vec![GripLast {
                channel: ChannelName::parse("board:1").unwrap(),
                last_id: ItemId::parse("17-3").unwrap()
            }]
        );
    }

    #[test]
    fn nothing_gives_nothing() {
        assert!(parse_grip_last(std::iter::empty()).unwrap().is_empty());
        assert!(parse_grip_last([" , "]).unwrap().is_empty());
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_grip_last(["a"]),
            Err(GripLastError::MissingLastId { channel }) if channel == "a"
        ));
        assert!(matches!(
            parse_grip_last(["a; last-id="]),
            Err(GripLastError::BadLastId(_))
        ));
        assert!(matches!(
            parse_grip_last(["; last-id=1"]),
            Err(GripLastError::BadChannel(_))
        ));
        assert!(matches!(
            parse_grip_last(["a; last-id=\"1"]),
            Err(GripLastError::UnterminatedQuote)
        ));
        assert!(matches!(
            parse_grip_last(["a; last-id=\"x;y\""]),
            Err(GripLastError::BadLastId(_))
        ));
        assert!(matches!(
            parse_grip_last(["a; last-id=1", "a; last-id=2"]),
            Err(GripLastError::Conflict(_))
        ));
        assert_eq!(
            parse_grip_last(["a; last-id=1", "a; last-id=1"])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn case_insensitive_parameter_name() {
        assert_eq!(
            parse_grip_last(["a; Last-ID=9"]).unwrap()[0]
                .last_id
                .as_str(),
            "9"
        );
    }

    #[test]
    fn features() {
        let f = GripFeatures::parse([
            "status, session, link:next, filter:skip-self",
            "x; p=1, status",
        ]);
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            ["status", "session", "link:next", "filter:skip-self", "x"]
        );
        assert!(GripFeatures::parse(std::iter::empty()).is_empty());
    }

    fn name() -> impl Strategy<Value = String> {
        "[!#-+\\--:<-\\[\\]-~]{1,20}"
    }

    proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(any::<String>(), 0..4)) {
            let _ = parse_grip_last(values.iter().map(String::as_str));
            let _ = GripFeatures::parse(values.iter().map(String::as_str));
        }

        #[test]
        fn round_trips_what_pushpin_writes(
            entries in proptest::collection::btree_map(name(), name(), 1..6),
            one_header in any::<bool>(),
            spaces in any::<bool>(),
        ) {
            let sep = if spaces { "; " } else { ";" };
            let elements: Vec<String> =
                entries.iter().map(|(c, id)| format!("{c}{sep}last-id={id}")).collect();
            let headers: Vec<String> = if one_header { vec![elements.join(", ")] } else { elements };
            let parsed = parse_grip_last(headers.iter().map(String::as_str)).unwrap();
            let got: Vec<(String, String)> = parsed
                .into_iter()
                .map(|l| (l.channel.into_string(), l.last_id.into_string()))
                .collect();
            let want: Vec<(String, String)> = entries.into_iter().collect();
            prop_assert_eq!(got, want);
        }
    }
}
