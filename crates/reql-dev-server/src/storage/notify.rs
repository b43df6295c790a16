//! Change notification: a table's changefeeds, and passing each write to them.

use super::table::{Table, TableData};
use crate::datum::Datum;
use crate::error::{ReqlError, Result};
use crate::feed::{Backlog, FeedMsg, SubKind, Subscriber};

impl Table {
    /// Registers a feed. The initial values are read under the same lock, so no
    /// change falls between them and the first change the feed sees.
    pub fn subscribe(
        &self,
        kind: SubKind,
        backlog: Backlog,
        initial: impl FnOnce(&TableData) -> Vec<Datum>,
    ) -> Result<(tokio::sync::mpsc::UnboundedReceiver<FeedMsg>, Vec<Datum>)> {
        if self.system.is_some() {
            return Err(ReqlError::op_failed(format!(
                "Changefeeds on `{}` are not supported by this development server.",
                self.full_name()
            )));
        }
        let mut data = self.data.write();
        if data.dropped {
            return Err(self.missing());
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let init = initial(&data);
        let kind = match kind {
            SubKind::TopN(mut t) => {
                t.current = data.ordered(&t.spec, t.limit);
                SubKind::TopN(t)
            }
            k => k,
        };
        data.subs.push(Subscriber { kind, tx, backlog });
        Ok((rx, init))
    }
}

pub(super) fn notify(data: &mut TableData, pk: &Datum, old: &Option<Datum>, new: &Option<Datum>) {
    if data.subs.is_empty() {
        return;
    }
    let mut subs = std::mem::take(&mut data.subs);
    subs.retain_mut(|s| {
        if s.tx.is_closed() {
            return false;
        }
        match &mut s.kind {
            SubKind::Table => s.deliver(FeedMsg::Change {
                old: old.clone(),
                new: new.clone(),
            }),
            SubKind::Point(key) if key == pk => s.deliver(FeedMsg::Change {
                old: old.clone(),
                new: new.clone(),
            }),
            SubKind::Point(_) => true,
            SubKind::TopN(top) => {
                let fresh = data.ordered(&top.spec, top.limit);
                let msgs = top.diff(fresh);
                msgs.into_iter().all(|m| s.deliver(m))
            }
        }
    });
    data.subs = subs;
}
