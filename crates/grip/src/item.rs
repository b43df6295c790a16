//! Items to publish, and their JSON form on the EPCP publish endpoint.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::names::{ChannelName, ItemId};

/// The `http-stream` format: what held streams on the channel receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpStreamFormat {
    /// Text appended to every open stream, e.g. an encoded SSE event.
    Content(String),
    /// Bytes appended to every open stream (sent as `content-bin`).
    ContentBin(Vec<u8>),
    /// Close every stream held on the channel (`{"action":"close"}`).
    Close,
}

/// The `http-response` format: the response given to long-polling requests
/// held with `Grip-Hold: response`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponseFormat {
    /// Status code; the proxy uses 200 when absent.
    pub code: Option<u16>,
    /// Reason phrase; the proxy picks the standard one when absent.
    pub reason: Option<String>,
    /// Response headers.
    pub headers: BTreeMap<String, String>,
    /// Response body.
    pub body: String,
}

impl HttpResponseFormat {
    /// A 200 response with this body and no extra headers.
    pub fn body(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }
}

/// The `ws-message` format: a message sent to WebSocket connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsMessageFormat {
    /// A text message.
    Content(String),
    /// A binary message (sent as `content-bin`).
    ContentBin(Vec<u8>),
}

/// One format of an item; an item carries at most one of each kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// `http-stream`.
    HttpStream(HttpStreamFormat),
    /// `http-response`.
    HttpResponse(HttpResponseFormat),
    /// `ws-message`.
    WsMessage(WsMessageFormat),
}

impl From<HttpStreamFormat> for Format {
    fn from(f: HttpStreamFormat) -> Self {
        Self::HttpStream(f)
    }
}

impl From<HttpResponseFormat> for Format {
    fn from(f: HttpResponseFormat) -> Self {
        Self::HttpResponse(f)
    }
}

impl From<WsMessageFormat> for Format {
    fn from(f: WsMessageFormat) -> Self {
        Self::WsMessage(f)
    }
}

/// One item to publish to a channel.
///
/// An item always has at least one format, because the proxy rejects items
/// without one (Pushpin answers 400).
///
/// ```
/// use grip::{ChannelName, HttpStreamFormat, Item, ItemId};
///
/// let channel = ChannelName::parse("board:1").unwrap();
/// let item = Item::new(channel, HttpStreamFormat::Content("data: hi\n\n".into()))
///     .with_id(ItemId::parse("2").unwrap())
///     .with_prev_id(ItemId::parse("1").unwrap());
/// assert_eq!(
///     serde_json::to_string(&item).unwrap(),
///     r#"{"channel":"board:1","id":"2","prev-id":"1","formats":{"http-stream":{"content":"data: hi\n\n"}}}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    channel: ChannelName,
    id: Option<ItemId>,
    prev_id: Option<ItemId>,
    no_seq: bool,
    http_stream: Option<HttpStreamFormat>,
    http_response: Option<HttpResponseFormat>,
    ws_message: Option<WsMessageFormat>,
}

impl Item {
    /// An item for `channel` with one format.
    pub fn new(channel: ChannelName, format: impl Into<Format>) -> Self {
        Self {
            channel,
            id: None,
            prev_id: None,
            no_seq: false,
            http_stream: None,
            http_response: None,
            ws_message: None,
        }
        .with_format(format)
    }

    /// An `http-stream` item carrying `content`.
    pub fn stream(channel: ChannelName, content: impl Into<String>) -> Self {
        Self::new(channel, HttpStreamFormat::Content(content.into()))
    }

    /// An `http-stream` item that closes the streams held on `channel`.
    pub fn close(channel: ChannelName) -> Self {
        Self::new(channel, HttpStreamFormat::Close)
    }

    /// Adds a format, replacing any earlier one of the same kind.
    #[must_use]
    pub fn with_format(mut self, format: impl Into<Format>) -> Self {
        match format.into() {
            Format::HttpStream(f) => self.http_stream = Some(f),
            Format::HttpResponse(f) => self.http_response = Some(f),
            Format::WsMessage(f) => self.ws_message = Some(f),
        }
        self
    }

    /// Sets the item id. Subscribers' `prev-id` / `last-id` refer to it.
    #[must_use]
    pub fn with_id(mut self, id: ItemId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the id of the item published just before this one on the same
    /// channel. The proxy uses it to detect gaps (reliable mode).
    #[must_use]
    pub fn with_prev_id(mut self, prev_id: ItemId) -> Self {
        self.prev_id = Some(prev_id);
        self
    }

    /// Sets `"no-seq": true`: deliver at once even if `prev-id` does not
    /// match, instead of holding the item back while waiting for the gap to
    /// fill.
    #[must_use]
    pub fn with_no_seq(mut self, no_seq: bool) -> Self {
        self.no_seq = no_seq;
        self
    }

    /// The channel the item is published to.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The item id, if set.
    pub fn id(&self) -> Option<&ItemId> {
        self.id.as_ref()
    }

    /// The previous item id, if set.
    pub fn prev_id(&self) -> Option<&ItemId> {
        self.prev_id.as_ref()
    }

    /// Whether `no-seq` is set.
    pub fn is_no_seq(&self) -> bool {
        self.no_seq
    }

    /// The `http-stream` format, if any.
    pub fn http_stream(&self) -> Option<&HttpStreamFormat> {
        self.http_stream.as_ref()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Serialize for HttpStreamFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::Content(c) => m.serialize_entry("content", c)?,
            Self::ContentBin(b) => m.serialize_entry("content-bin", &b64(b))?,
            Self::Close => m.serialize_entry("action", "close")?,
        }
        m.end()
    }
}

impl Serialize for WsMessageFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::Content(c) => m.serialize_entry("content", c)?,
            Self::ContentBin(b) => m.serialize_entry("content-bin", &b64(b))?,
        }
        m.end()
    }
}

impl Serialize for HttpResponseFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(code) = self.code {
            m.serialize_entry("code", &code)?;
        }
        if let Some(reason) = &self.reason {
            m.serialize_entry("reason", reason)?;
        }
        if !self.headers.is_empty() {
            m.serialize_entry("headers", &self.headers)?;
        }
        m.serialize_entry("body", &self.body)?;
        m.end()
    }
}

#[derive(Serialize)]
struct WireFormats<'a> {
    #[serde(rename = "http-stream", skip_serializing_if = "Option::is_none")]
    http_stream: Option<&'a HttpStreamFormat>,
    #[serde(rename = "http-response", skip_serializing_if = "Option::is_none")]
    http_response: Option<&'a HttpResponseFormat>,
    #[serde(rename = "ws-message", skip_serializing_if = "Option::is_none")]
    ws_message: Option<&'a WsMessageFormat>,
}

#[derive(Serialize)]
struct WireItem<'a> {
    channel: &'a ChannelName,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a ItemId>,
    #[serde(rename = "prev-id", skip_serializing_if = "Option::is_none")]
    prev_id: Option<&'a ItemId>,
    #[serde(rename = "no-seq", skip_serializing_if = "std::ops::Not::not")]
    no_seq: bool,
    formats: WireFormats<'a>,
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireItem {
            channel: &self.channel,
            id: self.id.as_ref(),
            prev_id: self.prev_id.as_ref(),
            no_seq: self.no_seq,
            formats: WireFormats {
                http_stream: self.http_stream.as_ref(),
                http_response: self.http_response.as_ref(),
                ws_message: self.ws_message.as_ref(),
            },
        }
        .serialize(s)
    }
}

/// The body of a publish request: `{"items":[...]}`.
#[derive(Serialize)]
pub(crate) struct PublishBody<'a> {
    pub(crate) items: &'a [Item],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn to_value(item: &Item) -> Value {
        serde_json::to_value(item).unwrap()
    }

    #[test]
    fn minimal_stream_item() {
        assert_eq!(
            to_value(&Item::stream(ch("c"), "x")),
            json!({"channel":"c","formats":{"http-stream":{"content":"x"}}})
        );
    }

    #[test]
    fn close_with_no_seq() {
        assert_eq!(
            to_value(&Item::close(ch("c")).with_no_seq(true)),
            json!({"channel":"c","no-seq":true,"formats":{"http-stream":{"action":"close"}}})
        );
    }

    #[test]
    fn several_formats() {
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_owned(), "text/plain".to_owned());
        let item = Item::new(ch("c"), HttpStreamFormat::ContentBin(vec![0, 255]))
            .with_format(HttpResponseFormat {
                code: Some(200),
                reason: None,
                headers,
                body: "b".into(),
            })
            .with_format(WsMessageFormat::Content("w".into()))
            .with_id(ItemId::parse("i2").unwrap())
            .with_prev_id(ItemId::parse("i1").unwrap());
        assert_eq!(
            to_value(&item),
            json!({
                "channel":"c","id":"i2","prev-id":"i1",
                "formats":{
                    "http-stream":{"content-bin":"AP8="},
                    "http-response":{"code":200,"headers":{"Content-Type":"text/plain"},"body":"b"},
                    "ws-message":{"content":"w"}
                }
            })
        );
    }

    #[test]
    fn later_format_of_same_kind_replaces() {
        let item = Item::stream(ch("c"), "a").with_format(HttpStreamFormat::Close);
        assert_eq!(item.http_stream(), Some(&HttpStreamFormat::Close));
    }

    #[test]
    fn body_wraps_items() {
        let items = [Item::stream(ch("a"), "1"), Item::stream(ch("b"), "2")];
        let v = serde_json::to_value(PublishBody { items: &items }).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        assert_eq!(v["items"][1]["channel"], "b");
    }
}
