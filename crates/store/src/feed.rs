use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use unreql::Command;

use crate::{Store, StoreError, BOARDS, PLAYERS};

/// What the changefeeds report, reduced to what the worker acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardChange {
    /// Every feed is open and reports changes from now on. Anything that
    /// happened before this point may have been missed, so a consumer
    /// refreshes everything it serves when it sees this.
    Ready,
    /// A change touched this board: a player joined, left, moved in or out,
    /// or changed score or name; or the board itself was created, renamed or
    /// deleted.
    Touched(String),
}

/// The merged players and boards changefeeds, on the store's pooled
/// connections. The stream yields an error and then ends when either feed breaks;
/// open a new one to resume. Dropping it closes both feeds.
pub struct BoardChanges {
    rx: mpsc::Receiver<Result<BoardChange, StoreError>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for BoardChanges {
    fn drop(&mut self) {
        // Aborting the feed tasks drops their cursors, which stops the feeds
        // on the server (STOP); the connections stay in the pool.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Stream for BoardChanges {
    type Item = Result<BoardChange, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The boards a change document touches: both sides of a move count.
fn touched_boards(change: &Value, field: &str) -> Vec<String> {
    let mut boards = Vec::with_capacity(2);
    for side in ["old_val", "new_val"] {
        if let Some(board) = change
            .get(side)
            .and_then(|v| v.get(field))
            .and_then(Value::as_str)
        {
            if !boards.iter().any(|b| b == board) {
                boards.push(board.to_owned());
            }
        }
    }
    boards
}

impl Store {
    /// Opens the players and boards changefeeds of whole tables and merges
    /// them into one stream of [`BoardChange`]s. [`BoardChange::Ready`]
    /// comes once, after both feeds are ready.
    pub async fn board_changes(&self) -> Result<BoardChanges, StoreError> {
        Ok(self.open_feeds([
            (crate::reql::table_changes(PLAYERS), PLAYERS, "board"),
            (crate::reql::table_changes(BOARDS), BOARDS, "id"),
        ]))
    }

    /// The changefeeds of the boards and players in `slots` (one worker
    /// shard), merged as [`Store::board_changes`] merges the whole tables'.
    /// The connections are made by the feeds' own tasks, so this returns at
    /// once; a failure to connect arrives as the stream's error.
    pub fn slot_changes(&self, slots: Range<u16>) -> BoardChanges {
        self.open_feeds([
            (
                crate::reql::slot_changes(PLAYERS, slots.clone()),
                PLAYERS,
                "board",
            ),
            (crate::reql::slot_changes(BOARDS, slots), BOARDS, "id"),
        ])
    }

    fn open_feeds(&self, feeds: [(Command, &'static str, &'static str); 2]) -> BoardChanges {
        let (tx, rx) = mpsc::channel(1024);
        let (ready_tx, mut ready_rx) = mpsc::channel::<()>(2);
        let mut tasks = Vec::new();
        for (query, table, field) in feeds {
            let pool = Arc::clone(self.pool());
            let tx = tx.clone();
            let ready_tx = ready_tx.clone();
            tasks.push(tokio::spawn(async move {
                // Each (re)opening runs on a pooled connection, shared with
                // the other queries; a broken one is replaced through a host
                // that answers.
                let (host, mut feed) = match pool.cursor(&query).await {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                loop {
                    let batch = match feed.next_batch().await {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(pool.failed(host, e))).await;
                            return;
                        }
                    };
                    for change in batch {
                        if change.get("state").and_then(Value::as_str) == Some("ready") {
                            let _ = ready_tx.send(()).await;
                            continue;
                        }
                        for board in touched_boards(&change, field) {
                            if tx.send(Ok(BoardChange::Touched(board))).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                pool.host_failed(host);
                let _ = tx
                    .send(Err(StoreError::Unavailable(format!(
                        "the {table} changefeed ended"
                    ))))
                    .await;
            }));
        }
        drop(ready_tx);
        // Announce readiness only when both feeds are ready, from a task so
        // that an early change is not held up behind it.
        let ready_forward = tx.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                if ready_rx.recv().await.is_none() {
                    return;
                }
            }
            let _ = ready_forward.send(Ok(BoardChange::Ready)).await;
        }));
        BoardChanges { rx, tasks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_move_touches_both_boards() {
        let change = json!({"old_val": {"board": "a"}, "new_val": {"board": "b"}});
        assert_eq!(touched_boards(&change, "board"), vec!["a", "b"]);
    }

    #[test]
    fn insert_update_and_delete_touch_one_board() {
        for change in [
            json!({"old_val": null, "new_val": {"board": "a"}}),
            json!({"old_val": {"board": "a"}, "new_val": {"board": "a", "score": 2}}),
            json!({"old_val": {"board": "a"}, "new_val": null}),
        ] {
            assert_eq!(touched_boards(&change, "board"), vec!["a"]);
        }
    }
}
