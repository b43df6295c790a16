use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use reql_terms::Term;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ranks::RankKey;
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
    /// A player's place in its board's rank order changed: where it was
    /// and where it is, `None` where it was or is not ranked (no document,
    /// or no score yet). Follows the [`BoardChange::Touched`] of the board.
    Moved {
        /// The player's board id.
        board: String,
        /// Where the player was ranked before the change.
        old: Option<RankKey>,
        /// Where the player is ranked after the change.
        new: Option<RankKey>,
    },
    /// A board document appeared (`exists`) or disappeared.
    Board {
        /// The board's id.
        id: String,
        /// True when the board now exists, false when it was deleted.
        exists: bool,
    },
}

/// Where a player document puts its player in its board's rank order.
fn rank_key(doc: Option<&Value>) -> Option<RankKey> {
    let doc = doc?;
    let score = doc.get("score")?;
    let score = score
        .as_i64()
        .or_else(|| score.as_f64().map(|f| f.trunc() as i64))?;
    let player = doc.get("player")?.as_str()?;
    Some(RankKey(score, player.to_owned()))
}

/// What one change document of the `table` feed reports, in order.
fn reports(change: &Value, table: &str, field: &str) -> Vec<BoardChange> {
    let mut out: Vec<BoardChange> = touched_boards(change, field)
        .into_iter()
        .map(BoardChange::Touched)
        .collect();
    let (old, new) = (
        change.get("old_val").filter(|v| !v.is_null()),
        change.get("new_val").filter(|v| !v.is_null()),
    );
    if table == PLAYERS {
        let board = new
            .or(old)
            .and_then(|d| d.get("board"))
            .and_then(Value::as_str);
        let (was, is) = (rank_key(old), rank_key(new));
        if let (Some(board), true) = (board, was != is) {
            out.push(BoardChange::Moved {
                board: board.to_owned(),
                old: was,
                new: is,
            });
        }
    } else if old.is_some() != new.is_some() {
        if let Some(id) = new
            .or(old)
            .and_then(|d| d.get("id"))
            .and_then(Value::as_str)
        {
            out.push(BoardChange::Board {
                id: id.to_owned(),
                exists: new.is_some(),
            });
        }
    }
    out
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

    fn open_feeds(&self, feeds: [(Term, &'static str, &'static str); 2]) -> BoardChanges {
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
                        for report in reports(&change, table, field) {
                            if tx.send(Ok(report)).await.is_err() {
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
    fn a_score_change_reports_the_player_s_move() {
        let change = json!({
            "old_val": {"board": "a", "player": "p", "score": 1},
            "new_val": {"board": "a", "player": "p", "score": 3, "name": "P"},
        });
        assert_eq!(
            reports(&change, PLAYERS, "board"),
            vec![
                BoardChange::Touched("a".into()),
                BoardChange::Moved {
                    board: "a".into(),
                    old: Some(RankKey(1, "p".into())),
                    new: Some(RankKey(3, "p".into())),
                }
            ]
        );
        // A rename moves nothing; a first score ranks the player.
        let rename = json!({
            "old_val": {"board": "a", "player": "p", "score": 1, "name": "x"},
            "new_val": {"board": "a", "player": "p", "score": 1, "name": "y"},
        });
        assert_eq!(reports(&rename, PLAYERS, "board").len(), 1);
        let first = json!({
            "old_val": {"board": "a", "player": "p"},
            "new_val": {"board": "a", "player": "p", "score": 7},
        });
        assert!(matches!(
            &reports(&first, PLAYERS, "board")[1],
            BoardChange::Moved {
                old: None,
                new: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn boards_appearing_and_disappearing_are_reported() {
        let created = json!({"old_val": null, "new_val": {"id": "b"}});
        assert_eq!(
            reports(&created, BOARDS, "id")[1],
            BoardChange::Board {
                id: "b".into(),
                exists: true
            }
        );
        let renamed = json!({"old_val": {"id": "b"}, "new_val": {"id": "b", "name": "B"}});
        assert_eq!(reports(&renamed, BOARDS, "id").len(), 1);
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
