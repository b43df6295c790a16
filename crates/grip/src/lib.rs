//! GRIP, the Generic Realtime Intermediary Protocol spoken by
//! [Pushpin](https://pushpin.org/) and Fastly Fanout, for Rust origins and
//! publishers.
//!
//! A GRIP proxy holds long-lived client connections (HTTP streaming,
//! long-polling) on behalf of an ordinary request/response origin. The origin
//! answers a request with hold instructions in `Grip-*` headers; later, any
//! process publishes data to channels through the proxy's control endpoint
//! and the proxy fans it out to the held connections.
//!
//! This crate is framework-neutral. It covers:
//!
//! - [`GripUrl`]: the `GRIP_URL` configuration convention (control endpoint,
//!   publish auth, `Grip-Sig` verification key), one URL or a comma-separated
//!   list;
//! - [`Publisher`]: publishing [`Item`]s to every control endpoint at once
//!   over HTTP, with JWT, Bearer or Basic auth;
//! - [`Instruct`]: hold instructions as `(name, value)` header pairs, checked
//!   so the proxy never receives a header it cannot parse;
//! - [`parse_grip_last`] and [`GripFeatures`]: the request headers the proxy
//!   adds;
//! - [`validate_sig`] and [`SigVerifier`]: `Grip-Sig` checking;
//! - [`sse`]: Server-Sent Events encoding for the published content.
//!
//! # Example
//!
//! An origin handler holding an SSE stream, and a worker publishing to it:
//!
//! ```
//! use std::time::Duration;
//! use grip::{sse, ChannelName, GripUrl, Instruct, Item, KeepAlive, Publisher};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Origin: answer a proxied GET with hold instructions.
//! let channel = ChannelName::parse("scores")?;
//! let headers = Instruct::stream()
//!     .channel(channel.clone())
//!     .keep_alive(KeepAlive::new(sse::comment(""), Duration::from_secs(20)))
//!     .to_headers()?;
//! assert_eq!(headers[0], ("Grip-Hold", "stream".to_string()));
//! // ...insert `headers` into the response, with Content-Type text/event-stream.
//!
//! // Worker: publish an SSE event to every configured proxy.
//! let publisher = Publisher::new(GripUrl::parse_list("http://127.0.0.1:5561")?)?;
//! let event = sse::Event::new(r#"{"score":10}"#)
//!     .with_event(sse::EventName::parse("update")?);
//! let item = Item::stream(channel, event.encode());
//! # let _ = (publisher, item);
//! // publisher.publish(&[item]).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Reliable streams
//!
//! To let a client resume without gaps, publish every item with an `id` and
//! the `prev-id` of the item before it on the channel
//! ([`Item::with_id`], [`Item::with_prev_id`]), and hold streams with the
//! id the response already covers ([`Channel::with_prev_id`]) plus a next
//! link ([`Instruct::next_link`]). When the proxy sees an item whose
//! `prev-id` does not match what it delivered last, it drops the item and
//! GETs the next link with `Grip-Last: <channel>; last-id=<id>` (read it
//! with [`parse_grip_last`]); the body of that answer is appended to the
//! stream. The proxy may send that request twice in a row, so answer it
//! idempotently.
//!
//! # Crypto backend
//!
//! JWTs are handled by `jsonwebtoken` with its `rust_crypto` backend. If
//! another crate in the same build enables its `aws_lc_rs` backend too,
//! `jsonwebtoken` cannot pick one and panics when signing or verifying, so
//! keep exactly one enabled.

#![warn(missing_docs)]

mod grip_url;
mod instruct;
mod item;
mod key;
mod names;
mod publish;
mod request;
mod sig;
pub mod sse;

pub use grip_url::{ControlAuth, GripUrl, GripUrlError, GripUrlListError};
pub use instruct::{
    cstring_escape, Channel, HoldMode, Instruct, InstructError, KeepAlive, KeepAliveMode,
    GRIP_CHANNEL, GRIP_HOLD, GRIP_KEEP_ALIVE, GRIP_LINK, GRIP_STATUS, GRIP_TIMEOUT,
};
pub use item::{Format, HttpResponseFormat, HttpStreamFormat, Item, WsMessageFormat};
pub use key::{Key, KeyError};
pub use names::{ChannelName, ItemId, NameError, MAX_NAME_LEN};
pub use publish::{
    EndpointError, EndpointErrorKind, PublishError, Publisher, PublisherBuildError,
    PublisherBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT,
};
pub use request::{
    parse_grip_last, GripFeatures, GripLast, GripLastError, GRIP_FEATURE, GRIP_LAST, GRIP_SIG,
};
pub use sig::{validate_sig, SigClaims, SigError, SigVerifier};

/// The README's examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
