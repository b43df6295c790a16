//! Server-Sent Events encoding, for content published to `http-stream`
//! channels or written at the start of a held stream.
//!
//! ```
//! use grip::sse::{Event, EventId, EventName};
//!
//! let e = Event::new("line one\nline two")
//!     .with_id(EventId::parse("42").unwrap())
//!     .with_event(EventName::parse("update").unwrap());
//! assert_eq!(e.encode(), "id: 42\nevent: update\ndata: line one\ndata: line two\n\n");
//! ```

use std::fmt;
use std::time::Duration;

use crate::names::ItemId;

/// The SSE media type, for the `Content-Type` of a streamed response.
pub const CONTENT_TYPE: &str = "text/event-stream";
/// The request header a reconnecting client sends with the last id it saw.
pub const LAST_EVENT_ID: &str = "Last-Event-ID";

/// Why an SSE field value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event id may not contain NUL, CR or LF (a client ignores an id with
    /// NUL, and a line break would end the field early).
    #[error("SSE event id contains {found:?}; NUL, CR and LF are not allowed")]
    BadId {
        /// The offending character.
        found: char,
    },
    /// An event name may not contain CR or LF, nor be empty.
    #[error("SSE event name is empty or contains a line break")]
    BadEventName,
}

/// An SSE event id: any text without NUL, CR or LF.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// Checks and wraps an id.
    ///
    /// # Errors
    /// [`SseError::BadId`] if `s` contains NUL, CR or LF.
    pub fn parse(s: impl Into<String>) -> Result<Self, SseError> {
        let s = s.into();
        if let Some(found) = s.chars().find(|c| matches!(c, '\0' | '\r' | '\n')) {
            return Err(SseError::BadId { found });
        }
        Ok(Self(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Item ids are a subset of event ids, so reliable-mode streams can use the
/// published item id as the SSE id.
impl From<ItemId> for EventId {
    fn from(id: ItemId) -> Self {
        Self(id.into_string())
    }
}

impl From<&ItemId> for EventId {
    fn from(id: &ItemId) -> Self {
        Self(id.as_str().to_owned())
    }
}

/// An SSE event type (the `event:` field): non-empty text without CR or LF.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventName(String);

impl EventName {
    /// Checks and wraps an event name.
    ///
    /// # Errors
    /// [`SseError::BadEventName`] if `s` is empty or contains CR or LF.
    pub fn parse(s: impl Into<String>) -> Result<Self, SseError> {
        let s = s.into();
        if s.is_empty() || s.contains(['\r', '\n']) {
            return Err(SseError::BadEventName);
        }
        Ok(Self(s))
    }

    /// An event name written in the source, such as `"update"`.
    ///
    /// # Panics
    /// If `name` is not a valid event name: a bug in the caller, as with
    /// `http::HeaderValue::from_static`.
    ///
    /// ```
    /// let update = grip::sse::EventName::from_static("update");
    /// assert_eq!(update.as_str(), "update");
    /// ```
    pub fn from_static(name: &'static str) -> Self {
        match Self::parse(name) {
            Ok(name) => name,
            Err(e) => panic!("{e}: {name:?}"),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One SSE event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    id: Option<EventId>,
    event: Option<EventName>,
    retry: Option<Duration>,
    data: String,
}

impl Event {
    /// An event carrying `data`. Line breaks in `data` (LF, CRLF or CR)
    /// become separate `data:` lines; a client joins them back with LF.
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            id: None,
            event: None,
            retry: None,
            data: data.into(),
        }
    }

    /// Sets the `id:` field.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<EventId>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the `event:` field (the client sees it as the event type).
    #[must_use]
    pub fn with_event(mut self, event: EventName) -> Self {
        self.event = Some(event);
        self
    }

    /// Sets the `retry:` field: the client's reconnection delay, in whole
    /// milliseconds.
    #[must_use]
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The event's data.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The event in wire format, ending with the blank line that dispatches
    /// it.
    pub fn encode(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "field: value": the client strips exactly one space after the
        // colon, so values that start with a space survive.
        if let Some(id) = &self.id {
            writeln!(f, "id: {id}")?;
        }
        if let Some(event) = &self.event {
            writeln!(f, "event: {event}")?;
        }
        if let Some(retry) = self.retry {
            writeln!(f, "retry: {}", retry.as_millis())?;
        }
        // At least one data line, so an event with empty data is still
        // dispatched (with data "").
        for line in lines(&self.data) {
            writeln!(f, "data: {line}")?;
        }
        writeln!(f)
    }
}

/// Splits on LF, CRLF and CR, the three line ends SSE recognises. Always
/// yields at least one (possibly empty) line.
fn lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// An SSE comment: each line of `text` prefixed with `:`, then a blank line.
/// Clients ignore comments; they are useful as padding or keep-alives.
///
/// ```
/// assert_eq!(grip::sse::comment(""), ":\n\n");
/// assert_eq!(grip::sse::comment("a\nb"), ": a\n: b\n\n");
/// ```
pub fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for line in lines(text) {
        if line.is_empty() {
            out.push_str(":\n");
        } else {
            out.push_str(": ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// Reads a `Last-Event-ID` request header value. Any text without NUL, CR or
/// LF is an id; an empty value means no id.
///
/// ```
/// use grip::sse::parse_last_event_id;
/// assert_eq!(parse_last_event_id("17").unwrap().as_str(), "17");
/// assert!(parse_last_event_id("").is_none());
/// assert!(parse_last_event_id("a\0b").is_none());
/// ```
pub fn parse_last_event_id(value: &str) -> Option<EventId> {
    if value.is_empty() {
        return None;
    }
    EventId::parse(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal SSE parser following the WHATWG event-stream
    /// interpretation, returning (id, event type, data) per dispatched event.
    fn parse_stream(s: &str) -> Vec<(Option<String>, String, String)> {
        let mut events = Vec::new();
        let mut data = String::new();
        let mut event_type = String::new();
        let mut last_id: Option<String> = None;
        for line in lines(s) {
            if line.is_empty() {
                if !data.is_empty() {
                    data.pop(); // trailing LF
                    let ty = if event_type.is_empty() {
                        "message".to_owned()
                    } else {
                        event_type.clone()
                    };
                    events.push((last_id.clone(), ty, std::mem::take(&mut data)));
                }
                data.clear();
                event_type.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "event" => event_type = value.to_owned(),
                "id" if !value.contains('\0') => last_id = Some(value.to_owned()),
                _ => {}
            }
        }
        events
    }

    #[test]
    fn simple_event() {
        assert_eq!(Event::new("hi").encode(), "data: hi\n\n");
        assert_eq!(Event::new("").encode(), "data: \n\n");
        assert_eq!(
            Event::new("x")
                .with_retry(Duration::from_millis(1500))
                .encode(),
            "retry: 1500\ndata: x\n\n"
        );
    }

    #[test]
    fn all_line_ends_split_data() {
        assert_eq!(
            Event::new("a\r\nb\rc\nd").encode(),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(Event::new("a\n").encode(), "data: a\ndata: \n\n");
    }

    #[test]
    fn leading_spaces_survive() {
        let e = Event::new("  x").with_id(EventId::parse(" i").unwrap());
        assert_eq!(
            parse_stream(&e.encode()),
            vec![(Some(" i".into()), "message".into(), "  x".into())]
        );
    }

    #[test]
    fn ids_and_names_reject_line_breaks() {
        assert_eq!(EventId::parse("a\nb"), Err(SseError::BadId { found: '\n' }));
        assert_eq!(EventId::parse("a\rb"), Err(SseError::BadId { found: '\r' }));
        assert_eq!(EventId::parse("a\0b"), Err(SseError::BadId { found: '\0' }));
        assert!(EventId::parse("").is_ok());
        assert_eq!(EventName::parse("a\nb"), Err(SseError::BadEventName));
        assert_eq!(EventName::parse(""), Err(SseError::BadEventName));
    }

    #[test]
    #[should_panic(expected = "line break")]
    fn a_static_name_with_a_line_break_is_a_bug() {
        let _ = EventName::from_static("a\nb");
    }

    #[test]
    fn item_id_converts() {
        let id = ItemId::parse("5-1").unwrap();
        assert_eq!(
            Event::new("d").with_id(&id).encode(),
            "id: 5-1\ndata: d\n\n"
        );
    }

    #[test]
    fn comments_do_not_dispatch() {
        let s = format!("{}{}", comment("x\ny"), Event::new("d").encode());
        assert_eq!(parse_stream(&s), vec![(None, "message".into(), "d".into())]);
        assert_eq!(comment("x\r\ny"), ": x\n: y\n\n");
    }

    fn normalise(s: &str) -> String {
        s.replace("\r\n", "\n").replace('\r', "\n")
    }

    proptest! {
        #[test]
        fn encoded_events_parse_back(
            data in "\\PC*|[a\r\n ]*",
            id in proptest::option::of("[^\r\n\0]*"),
            name in proptest::option::of("[^\r\n]+"),
        ) {
            let mut e = Event::new(data.clone());
            if let Some(id) = &id { e = e.with_id(EventId::parse(id.clone()).unwrap()); }
            if let Some(n) = &name { e = e.with_event(EventName::parse(n.clone()).unwrap()); }
            let parsed = parse_stream(&e.encode());
            prop_assert_eq!(parsed.len(), 1);
            let (pid, pty, pdata) = &parsed[0];
            prop_assert_eq!(pid, &id);
            prop_assert_eq!(pty, &name.unwrap_or_else(|| "message".to_owned()));
            prop_assert_eq!(pdata, &normalise(&data));
        }

        #[test]
        fn comments_never_produce_events(text in any::<String>()) {
            prop_assert!(parse_stream(&comment(&text)).is_empty());
        }

        #[test]
        fn last_event_id_rule(s in any::<String>()) {
            let parsed = parse_last_event_id(&s);
            let valid = !s.is_empty() && !s.contains(['\0', '\r', '\n']);
            prop_assert_eq!(parsed.is_some(), valid);
            if let Some(id) = parsed { prop_assert_eq!(id.as_str(), s.as_str()); }
        }

        #[test]
        fn arbitrary_strings_never_break_framing(data in any::<String>()) {
            let encoded = Event::new(data).encode();
            prop_assert!(encoded.ends_with("\n\n"));
            for line in lines(encoded.trim_end_matches('\n')) {
                prop_assert!(line.starts_with("data: "));
            }
        }
    }
}
