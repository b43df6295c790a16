//! Hold instructions: the `Grip-*` response headers an origin sends to make
//! the proxy hold a request open and subscribe it to channels.
//!
//! Everything is checked before a header is written, so a response can never
//! carry a header the proxy fails to parse (Pushpin answers 502 "Failed to
//! parse accept instructions" to those).

use std::fmt::Write as _;
use std::time::Duration;

use crate::names::{ChannelName, ItemId};

/// `Grip-Hold`.
pub const GRIP_HOLD: &str = "Grip-Hold";
/// `Grip-Channel`.
pub const GRIP_CHANNEL: &str = "Grip-Channel";
/// `Grip-Timeout`.
pub const GRIP_TIMEOUT: &str = "Grip-Timeout";
/// `Grip-Keep-Alive`.
pub const GRIP_KEEP_ALIVE: &str = "Grip-Keep-Alive";
/// `Grip-Link`.
pub const GRIP_LINK: &str = "Grip-Link";
/// `Grip-Status`.
pub const GRIP_STATUS: &str = "Grip-Status";

/// Largest timeout written: Pushpin reads timeouts as signed 32-bit integers.
const MAX_TIMEOUT_SECS: u64 = i32::MAX as u64;

/// Why hold instructions could not be turned into headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructError {
    /// A hold needs at least one channel.
    #[error("a hold needs at least one channel")]
    NoChannel,
    /// The same channel was added twice.
    #[error("channel {0} is listed twice")]
    DuplicateChannel(ChannelName),
    /// A stream hold with a `prev-id` makes Pushpin fetch the next link when
    /// ids do not match; without a link the stream fails.
    #[error("channel {0} has a prev-id on a stream hold, which needs a next link")]
    PrevIdWithoutNextLink(ChannelName),
    /// Keep-alive data must not be empty.
    #[error("keep-alive data is empty")]
    EmptyKeepAlive,
    /// A timeout was under one second or too large to write.
    #[error("{what} timeout must be between 1 and {MAX_TIMEOUT_SECS} seconds")]
    BadTimeout {
        /// Which timeout: `"keep-alive"`, `"link"` or `"hold"`.
        what: &'static str,
    },
    /// The link URI holds a character that would break the header.
    #[error("next link contains {found:?}; percent-encode it")]
    BadLinkChar {
        /// The offending character.
        found: char,
    },
    /// The link URI is empty.
    #[error("next link is empty")]
    EmptyLink,
    /// A `%` in the link is not followed by two hex digits.
    #[error("next link has a malformed percent-escape")]
    BadLinkEscape,
    /// `Grip-Status` codes are three digits.
    #[error("status code {0} is not between 100 and 999")]
    BadStatusCode(u16),
    /// The reason phrase holds a control character or non-ASCII text.
    #[error("status reason contains {found:?}; only printable ASCII is allowed")]
    BadReason {
        /// The offending character.
        found: char,
    },
}

/// How the proxy holds the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldMode {
    /// Long-polling: one published `http-response` ends the request.
    Response,
    /// Streaming: published `http-stream` content is appended until closed.
    Stream,
}

impl HoldMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Response => "response",
            Self::Stream => "stream",
        }
    }
}

/// A channel to subscribe the held request to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    name: ChannelName,
    prev_id: Option<ItemId>,
}

impl Channel {
    /// Subscribe to `name`, with no `prev-id`.
    pub fn new(name: ChannelName) -> Self {
        Self {
            name,
            prev_id: None,
        }
    }

    /// Sets `prev-id`: the id of the last item this client has seen on the
    /// channel, so the proxy can detect a gap (reliable mode).
    #[must_use]
    pub fn with_prev_id(mut self, prev_id: ItemId) -> Self {
        self.prev_id = Some(prev_id);
        self
    }

    /// The channel name.
    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    /// The `prev-id`, if set.
    pub fn prev_id(&self) -> Option<&ItemId> {
        self.prev_id.as_ref()
    }
}

impl From<ChannelName> for Channel {
    fn from(name: ChannelName) -> Self {
        Self::new(name)
    }
}

/// When keep-alive data is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeepAliveMode {
    /// After the stream has been idle for the timeout; publishes reset the
    /// timer (Pushpin's default).
    #[default]
    Idle,
    /// Every timeout, whatever else is sent.
    Interval,
}

/// Data the proxy sends on a held stream to keep it alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    data: Vec<u8>,
    timeout: Duration,
    mode: KeepAliveMode,
}

impl KeepAlive {
    /// Send `data` after `timeout` of idleness (whole seconds, at least one).
    /// For SSE, `":\n\n"` (an empty comment) is the usual choice.
    pub fn new(data: impl Into<Vec<u8>>, timeout: Duration) -> Self {
        Self {
            data: data.into(),
            timeout,
            mode: KeepAliveMode::Idle,
        }
    }

    /// Sets the mode (default [`KeepAliveMode::Idle`]).
    #[must_use]
    pub fn with_mode(mut self, mode: KeepAliveMode) -> Self {
        self.mode = mode;
        self
    }

    /// The header value: the data in `cstring` format plus parameters.
    fn header_value(&self) -> Result<String, InstructError> {
        if self.data.is_empty() {
            return Err(InstructError::EmptyKeepAlive);
        }
        let secs = timeout_secs(self.timeout, "keep-alive")?;
        let mut v = cstring_escape(&self.data);
        let _ = write!(v, "; format=cstring; timeout={secs}");
        if self.mode == KeepAliveMode::Interval {
            v.push_str("; mode=interval");
        }
        Ok(v)
    }
}

fn timeout_secs(d: Duration, what: &'static str) -> Result<u64, InstructError> {
    let secs = d.as_secs();
    if (1..=MAX_TIMEOUT_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(InstructError::BadTimeout { what })
    }
}

/// Escapes bytes in the `cstring` format of `Grip-Keep-Alive`.
///
/// Pushpin understands `\\`, `\n`, `\r` and `\xHH`. Anything that is not
/// printable ASCII, or that has a meaning in the header's parameter syntax
/// (`;` ends the value, `,` and `"` matter to list-aware parsers), or a space
/// at either end (it would be trimmed), is written as an escape.
pub fn cstring_escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() + 8);
    let last = data.len().saturating_sub(1);
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b' ' if i == 0 || i == last => out.push_str("\\x20"),
            b';' | b',' | b'"' => {
                let _ = write!(out, "\\x{b:02x}");
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

fn validate_link(uri: &str) -> Result<(), InstructError> {
    if uri.is_empty() {
        return Err(InstructError::EmptyLink);
    }
    if let Some(found) = uri
        .chars()
        .find(|&c| !matches!(c, '!'..='~') || matches!(c, '<' | '>' | '"' | ',' | ';' | '\\'))
    {
        return Err(InstructError::BadLinkChar { found });
    }
    let bytes = uri.as_bytes();
    for (i, _) in uri.match_indices('%') {
        let ok = bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if !ok {
            return Err(InstructError::BadLinkEscape);
        }
    }
    Ok(())
}

/// Hold instructions, written as response headers by [`Instruct::to_headers`].
///
/// ```
/// use std::time::Duration;
/// use grip::{Channel, ChannelName, Instruct, ItemId, KeepAlive};
///
/// let channel = ChannelName::parse("board:1").unwrap();
/// let headers = Instruct::stream()
///     .channel(Channel::new(channel).with_prev_id(ItemId::parse("7").unwrap()))
///     .keep_alive(KeepAlive::new(":\n\n", Duration::from_secs(20)))
///     .next_link("/boards/1/stream?after=7", Some(Duration::from_secs(120)))
///     .to_headers()
///     .unwrap();
/// assert_eq!(headers, vec![
///     ("Grip-Hold", "stream".to_string()),
///     ("Grip-Channel", "board:1; prev-id=7".to_string()),
///     ("Grip-Keep-Alive", ":\\n\\n; format=cstring; timeout=20".to_string()),
///     ("Grip-Link", "</boards/1/stream?after=7>; rel=next; timeout=120".to_string()),
/// ]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instruct {
    hold: Option<HoldMode>,
    channels: Vec<Channel>,
    timeout: Option<Duration>,
    keep_alive: Option<KeepAlive>,
    next_link: Option<(String, Option<Duration>)>,
    status: Option<(u16, Option<String>)>,
}

impl Instruct {
    /// Instructions without a hold (for example only `Grip-Status`).
    pub fn new() -> Self {
        Self::default()
    }

    /// `Grip-Hold: stream`.
    pub fn stream() -> Self {
        Self {
            hold: Some(HoldMode::Stream),
            ..Self::default()
        }
    }

    /// `Grip-Hold: response` (long-polling).
    pub fn response() -> Self {
        Self {
            hold: Some(HoldMode::Response),
            ..Self::default()
        }
    }

    /// Adds a channel; call once per channel.
    #[must_use]
    pub fn channel(mut self, channel: impl Into<Channel>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// `Grip-Timeout`: how long a response hold waits before answering with
    /// the origin's own response (whole seconds, at least one).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `Grip-Keep-Alive`.
    #[must_use]
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.keep_alive = Some(keep_alive);
        self
    }

    /// `Grip-Link: <uri>; rel=next[; timeout=N]`. The proxy GETs `uri`
    /// (relative to the request URI) when it detects a gap, or when the
    /// stream is idle past `timeout` (Pushpin's default is 120 s). `uri` must
    /// already be percent-encoded and must not contain `,` or `;`.
    #[must_use]
    pub fn next_link(mut self, uri: impl Into<String>, timeout: Option<Duration>) -> Self {
        self.next_link = Some((uri.into(), timeout));
        self
    }

    /// `Grip-Status: code [reason]`: the status the proxy gives the client,
    /// overriding the origin response's own.
    #[must_use]
    pub fn status(mut self, code: u16, reason: Option<&str>) -> Self {
        self.status = Some((code, reason.map(str::to_owned)));
        self
    }

    /// The hold mode, if any.
    pub fn hold_mode(&self) -> Option<HoldMode> {
        self.hold
    }

    /// The channels, in the order added.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Checks the instructions and writes them as `(name, value)` header
    /// pairs. Each name appears at most once (several channels share one
    /// comma-joined `Grip-Channel`), so the pairs can be inserted into any
    /// framework's response without worrying about append-versus-replace.
    ///
    /// # Errors
    /// [`InstructError`] when the instructions would give the proxy a header
    /// it rejects: a hold without channels, a duplicate channel, a stream
    /// `prev-id` without a next link, empty keep-alive data, a timeout under
    /// a second, a link with characters that break the header, or a bad
    /// status line.
    pub fn to_headers(&self) -> Result<Vec<(&'static str, String)>, InstructError> {
        let mut headers = Vec::with_capacity(6);

        if let Some(hold) = self.hold {
            if self.channels.is_empty() {
                return Err(InstructError::NoChannel);
            }
            headers.push((GRIP_HOLD, hold.as_str().to_owned()));
        }

        if !self.channels.is_empty() {
            let mut value = String::new();
            for (i, c) in self.channels.iter().enumerate() {
                if self.channels[..i].iter().any(|o| o.name == c.name) {
                    return Err(InstructError::DuplicateChannel(c.name.clone()));
                }
                if c.prev_id.is_some()
                    && self.hold == Some(HoldMode::Stream)
                    && self.next_link.is_none()
                {
                    return Err(InstructError::PrevIdWithoutNextLink(c.name.clone()));
                }
                if i > 0 {
                    value.push_str(", ");
                }
                value.push_str(c.name.as_str());
                if let Some(prev) = &c.prev_id {
                    value.push_str("; prev-id=");
                    value.push_str(prev.as_str());
                }
            }
            headers.push((GRIP_CHANNEL, value));
        }

        if let Some(t) = self.timeout {
            headers.push((GRIP_TIMEOUT, timeout_secs(t, "hold")?.to_string()));
        }

        if let Some(ka) = &self.keep_alive {
            headers.push((GRIP_KEEP_ALIVE, ka.header_value()?));
        }

        if let Some((uri, timeout)) = &self.next_link {
            validate_link(uri)?;
            let mut value = format!("<{uri}>; rel=next");
            if let Some(t) = timeout {
                let _ = write!(value, "; timeout={}", timeout_secs(*t, "link")?);
            }
            headers.push((GRIP_LINK, value));
        }

        if let Some((code, reason)) = &self.status {
            if !(100..=999).contains(code) {
                return Err(InstructError::BadStatusCode(*code));
            }
            let value = match reason {
                Some(r) => {
                    if let Some(found) = r.chars().find(|c| !matches!(c, ' '..='~' | '\t')) {
                        return Err(InstructError::BadReason { found });
                    }
                    format!("{code} {r}")
                }
                None => code.to_string(),
            };
            headers.push((GRIP_STATUS, value));
        }

        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn id(s: &str) -> ItemId {
        ItemId::parse(s).unwrap()
    }

    /// Pushpin's reading of a keep-alive header value: the part before the
    /// first `;`, trimmed, then cstring-unescaped.
    fn pushpin_keep_alive_data(header: &str) -> Option<Vec<u8>> {
        let first = header.split(';').next()?.trim().as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < first.len() {
            if first[i] == b'\\' {
                match *first.get(i + 1)? {
                    b'\\' => out.push(b'\\'),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b'x' => {
                        let hex = std::str::from_utf8(first.get(i + 2..i + 4)?).ok()?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    _ => return None,
                }
                i += 2;
            } else {
                out.push(first[i]);
                i += 1;
            }
        }
        Some(out)
    }

    #[test]
    fn simplest_stream_hold() {
        let h = Instruct::stream().channel(ch("c")).to_headers().unwrap();
        assert_eq!(
            h,
            vec![
                (GRIP_HOLD, "stream".to_owned()),
                (GRIP_CHANNEL, "c".to_owned())
            ]
        );
    }

    #[test]
    fn response_hold_with_timeout_and_prev_id() {
        let h = Instruct::response()
            .channel(Channel::new(ch("a")).with_prev_id(id("3")))
            .channel(ch("b"))
            .timeout(Duration::from_secs(30))
            .to_headers()
            .unwrap();
        assert_eq!(
            h,
            vec![
                (GRIP_HOLD, "response".to_owned()),
                (GRIP_CHANNEL, "a; prev-id=3, b".to_owned()),
                (GRIP_TIMEOUT, "30".to_owned()),
            ]
        );
    }

    #[test]
    fn keep_alive_interval_and_status() {
        let h = Instruct::stream()
            .channel(ch("c"))
            .keep_alive(
                KeepAlive::new(
                    b"event: ping\ndata: {\"a\":1}\n\n".to_vec(),
                    Duration::from_millis(15_900),
                )
                .with_mode(KeepAliveMode::Interval),
            )
            .status(200, Some("OK"))
            .to_headers()
            .unwrap();
        assert_eq!(
            h[2],
            (
                GRIP_KEEP_ALIVE,
                "event: ping\\ndata: {\\x22a\\x22:1}\\n\\n; format=cstring; timeout=15; mode=interval"
                    .to_owned()
            )
        );
        assert_eq!(h[3], (GRIP_STATUS, "200 OK".to_owned()));
    }

    #[test]
    fn status_only() {
        let h = Instruct::new().status(404, None).to_headers().unwrap();
        assert_eq!(h, vec![(GRIP_STATUS, "404".to_owned())]);
    }

    #[test]
    fn escaping_examples() {
        assert_eq!(cstring_escape(b":\n\n"), ":\\n\\n");
        assert_eq!(cstring_escape(b"a\\b\r"), "a\\\\b\\r");
        assert_eq!(cstring_escape(b" x y "), "\\x20x y\\x20");
        assert_eq!(
            cstring_escape(b"a;b,c\t\0\xff"),
            "a\\x3bb\\x2cc\\x09\\x00\\xff"
        );
        assert_eq!(cstring_escape("é".as_bytes()), "\\xc3\\xa9");
    }

    #[test]
    fn rejects_what_pushpin_would_not_parse() {
        use InstructError as E;
        let base = || Instruct::stream().channel(ch("c"));
        let cases: Vec<(Instruct, E)> = vec![
            (Instruct::stream(), E::NoChannel),
            (base().channel(ch("c")), E::DuplicateChannel(ch("c"))),
            (
                Instruct::stream().channel(Channel::new(ch("c")).with_prev_id(id("1"))),
                E::PrevIdWithoutNextLink(ch("c")),
            ),
            (
                base().keep_alive(KeepAlive::new("", Duration::from_secs(5))),
                E::EmptyKeepAlive,
            ),
            (
                base().keep_alive(KeepAlive::new(":", Duration::from_millis(999))),
                E::BadTimeout { what: "keep-alive" },
            ),
            (
                base().next_link("/a,b", None),
                E::BadLinkChar { found: ',' },
            ),
            (
                base().next_link("/a;b", None),
                E::BadLinkChar { found: ';' },
            ),
            (
                base().next_link("/a b", None),
                E::BadLinkChar { found: ' ' },
            ),
            (base().next_link("/a>", None), E::BadLinkChar { found: '>' }),
            (
                base().next_link("/a\r\nX: y", None),
                E::BadLinkChar { found: '\r' },
            ),
            (base().next_link("", None), E::EmptyLink),
            (base().next_link("/a%2", None), E::BadLinkEscape),
            (base().next_link("/a%zz", None), E::BadLinkEscape),
            (
                base().next_link("/a", Some(Duration::ZERO)),
                E::BadTimeout { what: "link" },
            ),
            (
                base().timeout(Duration::from_secs(u64::MAX)),
                E::BadTimeout { what: "hold" },
            ),
            (base().status(99, None), E::BadStatusCode(99)),
            (
                base().status(200, Some("O\nK")),
                E::BadReason { found: '\n' },
            ),
        ];
        for (instruct, expected) in cases {
            assert_eq!(instruct.to_headers(), Err(expected.clone()), "{expected}");
        }
    }

    #[test]
    fn prev_id_with_link_is_fine() {
        let h = Instruct::stream()
            .channel(Channel::new(ch("c")).with_prev_id(id("1")))
            .next_link("http://origin/s?x=%2C", None)
            .to_headers()
            .unwrap();
        assert_eq!(
            h[2],
            (GRIP_LINK, "<http://origin/s?x=%2C>; rel=next".to_owned())
        );
    }

    proptest! {
        #[test]
        fn keep_alive_round_trips_through_pushpins_reading(
            data in proptest::collection::vec(any::<u8>(), 1..200),
            secs in 1u64..100_000,
        ) {
            let value = KeepAlive::new(data.clone(), Duration::from_secs(secs)).header_value().unwrap();
            // Always a valid header value: printable ASCII only.
            prop_assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)));
            prop_assert_eq!(pushpin_keep_alive_data(&value), Some(data));
            let expected_suffix = format!("; format=cstring; timeout={secs}");
            prop_assert!(value.ends_with(&expected_suffix));
        }

        #[test]
        fn headers_are_always_single_line_ascii(
            names in proptest::collection::vec("[!-~]{1,20}", 1..5),
            reason in "\\PC{0,20}",
            link in "\\PC{0,30}",
        ) {
            let mut ins = Instruct::stream();
            for n in &names {
                if let Ok(c) = ChannelName::parse(n.as_str()) {
                    ins = ins.channel(Channel::new(c).with_prev_id(id("p")));
                }
            }
            let ins = ins.next_link(link, Some(Duration::from_secs(10))).status(200, Some(&reason));
            if let Ok(headers) = ins.to_headers() {
                for (_, v) in headers {
                    prop_assert!(v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)), "{v:?}");
                }
            }
        }
    }
}
