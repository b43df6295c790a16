//! Streams as GRIP instructions: the hold response a subscriber gets, the
//! recovery answer Pushpin gets when it notices a lost publish, and the
//! Grip-Sig check that makes sure only the proxy is told to hold.
//!
//! Reliable mode: the hold sets `Grip-Channel: <channel>; prev-id=<version>`
//! and a `Grip-Link: <...?recover=1>; rel=next`. The worker publishes each
//! snapshot with `id` = its version and `prev-id` = the version it published
//! before. When an item's `prev-id` is not what a stream last received,
//! Pushpin drops the item and requests the link with
//! `Grip-Last: <channel>; last-id=<what it has>`; the answer here holds the
//! stream again and carries the current snapshot, or nothing when the stream
//! already has it. That answer depends only on the database, so Pushpin may
//! ask twice in a row and get the same, correct result.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use domain::{BoardId, Snapshot};
use grip::{sse, Channel, ChannelName, Instruct, ItemId, KeepAlive, SigVerifier};

use crate::error::ApiError;

/// How streams are set up, from the configuration.
#[derive(Clone)]
pub struct StreamSettings {
    /// `GRIP_PREFIX`: prepended to a board id to name its channel.
    pub prefix: String,
    /// An idle stream gets an SSE comment this often.
    pub keep_alive: Duration,
    /// Pushpin follows the recovery link after this much silence too, which
    /// bounds how long a lost publish can go unnoticed on a quiet board.
    pub recovery_timeout: Duration,
    /// When set, hold instructions go only to requests signed by the proxy.
    pub signature: Option<SigVerifier>,
}

/// What a request to `/boards/{id}/` says about streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// A recovery request from Pushpin (it followed the next link).
    pub recovery: bool,
    /// The version the subscriber already has, if it said: `Grip-Last` for
    /// this channel, else `Last-Event-ID`, else `?lastEventId=`.
    pub last_event_id: Option<String>,
}

fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl StreamSettings {
    /// The GRIP channel a board's updates are published to.
    pub fn channel(&self, board: &BoardId) -> String {
        domain::channel_name(&self.prefix, board.as_str())
    }

    /// Reads the stream-related parts of a request. `None` when this is not
    /// a recovery request (the caller then decides by `Accept`).
    pub fn recovery_request(&self, req: &HttpRequest, board: &BoardId) -> Option<StreamRequest> {
        let grip_last = req
            .headers()
            .get_all(grip::GRIP_LAST)
            .filter_map(|v| v.to_str().ok());
        let channel = self.channel(board);
        // A malformed Grip-Last is treated as "no last id": the answer is
        // then the full snapshot, which is always correct.
        let last = grip::parse_grip_last(grip_last)
            .unwrap_or_default()
            .into_iter()
            .find(|l| l.channel.as_str() == channel)
            .map(|l| l.last_id.as_str().to_owned());
        let marked = query_param(req, "recover").as_deref() == Some("1");
        (last.is_some() || marked).then_some(StreamRequest {
            recovery: true,
            last_event_id: last,
        })
    }

    /// The subscriber's own resume point, for a first request.
    pub fn client_request(&self, req: &HttpRequest) -> StreamRequest {
        let last_event_id = req
            .headers()
            .get(sse::LAST_EVENT_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_param(req, "lastEventId"));
        StreamRequest {
            recovery: false,
            last_event_id,
        }
    }

    /// Refuses to hold a stream for a request the proxy did not sign, when a
    /// signature key is configured: without a proxy in front, a client
    /// would get a one-shot answer and wait for events that never come.
    pub fn check_signature(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(verifier) = &self.signature else {
            return Ok(());
        };
        let token = req
            .headers()
            .get(grip::GRIP_SIG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::StreamRequiresProxy("no Grip-Sig header".into()))?;
        verifier
            .verify(token)
            .map(|_| ())
            .map_err(|e| ApiError::StreamRequiresProxy(e.to_string()))
    }

    /// The hold: Pushpin keeps the connection open on the board's channel,
    /// and sends the body (the snapshot, unless the subscriber has it) at once.
    pub fn hold(
        &self,
        board: &BoardId,
        snapshot: &Snapshot,
        request: &StreamRequest,
    ) -> Result<HttpResponse, ApiError> {
        let version = snapshot.version();
        let channel =
            ChannelName::parse(self.channel(board)).map_err(|e| ApiError::Internal(e.into()))?;
        let has_it = request
            .last_event_id
            .as_deref()
            .is_some_and(|id| version.matches(id));
        // Between a period's end and its reset, writes move their players
        // into the next period before the board is switched, so a snapshot
        // shows the old period's number over scores of both. A subscriber
        // that has a board (a reconnect, a recovery) keeps it: held on what
        // it has, it gets the reset and the new board from the worker.
        let kept = (!has_it && period_over(snapshot))
            .then_some(request.last_event_id.as_deref())
            .flatten()
            .and_then(|id| ItemId::parse(id.trim()).ok());
        let prev_id = match &kept {
            Some(id) => id.clone(),
            None => ItemId::parse(version.as_str()).map_err(|e| ApiError::Internal(e.into()))?,
        };
        let headers = Instruct::stream()
            .channel(Channel::new(channel).with_prev_id(prev_id))
            .next_link(
                format!("/boards/{board}/?recover=1"),
                Some(self.recovery_timeout),
            )
            .keep_alive(KeepAlive::new(sse::comment(""), self.keep_alive))
            .to_headers()
            .map_err(|e| ApiError::Internal(e.into()))?;
        let body = if has_it || kept.is_some() {
            String::new()
        } else {
            snapshot.sse_event()
        };
        let mut response = HttpResponse::Ok();
        response
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static(sse::CONTENT_TYPE),
            ))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .insert_header((header::VARY, HeaderValue::from_static("Accept")));
        for (name, value) in headers {
            response.insert_header((name, value));
        }
        Ok(response.body(body))
    }

    /// The answer to a recovery request for a board that no longer exists:
    /// the `deleted` event and no hold, so Pushpin ends the stream.
    pub fn gone(&self, board: &BoardId) -> HttpResponse {
        HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static(sse::CONTENT_TYPE),
            ))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .body(domain::deleted_event(board.as_str()))
    }
}

/// Whether the snapshot's period has ended by this process's clock, or its
/// reset is under way (the board switched, its players not all moved).
fn period_over(snapshot: &Snapshot) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let board = snapshot.board();
    board.resetting || board.ends_at_ms.is_some_and(|end| now >= end)
}
