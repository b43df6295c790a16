//! Runs the workload on one server and reduces each answer to what is
//! compared: the response type, the error type and message, the notes,
//! and the values (a stream's items over all of its batches).

use std::time::Duration;

use serde_json::{json, Value};

use crate::wire::{Answers, Conn};

/// How long one answer may take before it counts as missing.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// A feed that says nothing for this long has delivered what the writes
/// caused.
const FEED_QUIET: Duration = Duration::from_millis(200);
/// How long the answers to a STOP may take.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// Time for a real server to pass a write's change on to its feeds.
const FEED_SETTLE: Duration = Duration::from_millis(60);

/// One server: a connection for queries and one for changefeeds.
pub struct Side {
    pub queries: Conn,
    pub feeds: Conn,
}

const SUCCESS_ATOM: i64 = 1;
const SUCCESS_SEQUENCE: i64 = 2;
const SUCCESS_PARTIAL: i64 = 3;

fn error_answer(frame: &Value) -> Value {
    json!({
        "t": frame["t"],
        "e": frame.get("e").cloned().unwrap_or(Value::Null),
        "msg": frame["r"].get(0).cloned().unwrap_or(Value::Null),
    })
}

/// One query's answer frames as they are compared: an atom's value, a
/// stream's notes and items over all of its batches, or an error's type
/// and message (the items before an error are dropped: RethinkDB may send
/// some batches first).
pub fn summarize(frames: &[Value]) -> Value {
    let Some(last) = frames.last() else {
        return json!({ "timeout": true });
    };
    match last["t"].as_i64().unwrap_or(0) {
        SUCCESS_ATOM => json!({ "t": 1, "r": last["r"].get(0).cloned().unwrap_or(Value::Null) }),
        SUCCESS_SEQUENCE | SUCCESS_PARTIAL => {
            let mut items = Vec::new();
            for frame in frames {
                extend_items(&mut items, frame);
            }
            json!({ "t": "stream", "n": frames[0].get("n").cloned().unwrap_or(Value::Null), "items": items })
        }
        _ => error_answer(last),
    }
}

fn extend_items(items: &mut Vec<Value>, frame: &Value) {
    if let Some(r) = frame["r"].as_array() {
        items.extend(r.iter().cloned());
    }
}

impl Side {
    pub async fn connect(port: u16) -> anyhow::Result<Side> {
        Ok(Side {
            queries: Conn::connect(port).await?,
            feeds: Conn::connect(port).await?,
        })
    }

    /// Sends `term`; the answer is read with [`Side::finish`].
    pub async fn start(&self, term: &Value) -> anyhow::Result<Answers> {
        self.queries.start(term, &json!({})).await
    }

    /// Reads a query's answer to its end, asking for every batch.
    pub async fn finish(&self, mut answers: Answers) -> Value {
        let mut frames = Vec::new();
        let answer = loop {
            let Some(frame) = answers.next(ANSWER_WAIT).await else {
                break json!({ "timeout": true });
            };
            let partial = frame["t"].as_i64() == Some(SUCCESS_PARTIAL);
            frames.push(frame);
            if !partial {
                break summarize(&frames);
            }
            if self.queries.continue_(answers.token).await.is_err() {
                break json!({ "broken": true });
            }
        };
        self.queries.forget(answers.token);
        answer
    }

    pub async fn run(&self, term: &Value) -> Value {
        match self.start(term).await {
            Ok(answers) => self.finish(answers).await,
            Err(e) => json!({ "send_failed": e.to_string() }),
        }
    }

    /// Opens a feed and returns its first answer; the feed stays open when
    /// that answer is a partial batch.
    pub async fn open_feed(&self, term: &Value) -> (Option<Answers>, Value) {
        let mut answers = match self.feeds.start(term, &json!({})).await {
            Ok(a) => a,
            Err(e) => return (None, json!({ "send_failed": e.to_string() })),
        };
        let Some(frame) = answers.next(ANSWER_WAIT).await else {
            return (None, json!({ "timeout": true }));
        };
        match frame["t"].as_i64().unwrap_or(0) {
            SUCCESS_PARTIAL => {
                let mut items = Vec::new();
                extend_items(&mut items, &frame);
                (
                    Some(answers),
                    json!({ "t": "stream", "n": frame.get("n"), "items": items }),
                )
            }
            SUCCESS_ATOM => (None, json!({ "t": 1, "r": frame["r"].get(0) })),
            SUCCESS_SEQUENCE => {
                let mut items = Vec::new();
                extend_items(&mut items, &frame);
                (
                    None,
                    json!({ "t": "stream", "n": frame.get("n"), "items": items }),
                )
            }
            _ => (None, error_answer(&frame)),
        }
    }

    /// Reads what an open feed delivers until it goes quiet, then stops it.
    /// The items are added to `first`'s; an error ends the feed and is kept.
    pub async fn drain_feed(&self, mut answers: Answers, first: &mut Value) {
        tokio::time::sleep(FEED_SETTLE).await;
        let mut items: Vec<Value> = Vec::new();
        let mut error = None;
        let token = answers.token;
        let mut open = true;
        while open {
            if self.feeds.continue_(token).await.is_err() {
                break;
            }
            match answers.next(FEED_QUIET).await {
                None => {
                    // A CONTINUE is outstanding: STOP answers it (with an
                    // empty batch, or the batch already on its way) and
                    // then itself.
                    let _ = self.feeds.stop(token).await;
                    for _ in 0..2 {
                        match answers.next(STOP_WAIT).await {
                            Some(frame) => match frame["t"].as_i64().unwrap_or(0) {
                                SUCCESS_PARTIAL | SUCCESS_SEQUENCE => {
                                    extend_items(&mut items, &frame)
                                }
                                _ => {
                                    error = Some(error_answer(&frame));
                                    break;
                                }
                            },
                            None => break,
                        }
                    }
                    open = false;
                }
                Some(frame) => match frame["t"].as_i64().unwrap_or(0) {
                    SUCCESS_PARTIAL => extend_items(&mut items, &frame),
                    SUCCESS_SEQUENCE => {
                        extend_items(&mut items, &frame);
                        open = false;
                    }
                    _ => {
                        error = Some(error_answer(&frame));
                        open = false;
                    }
                },
            }
        }
        self.feeds.forget(token);
        if let Some(Value::Array(first_items)) = first.get_mut("items") {
            first_items.extend(items);
        }
        if let Some(error) = error {
            first["error"] = error;
        }
    }
}
