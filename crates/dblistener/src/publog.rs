//! An optional record of every publish, for audits: `PUBLISH_LOG` names a
//! file that gets one JSON line per item sent to GRIP, with the shard, the
//! epoch of the tenure the worker believed it held when it sent it, and
//! when the publish started and ended (Unix milliseconds). A fault campaign
//! reads these to prove that no two workers published one shard with
//! overlapping tenures; the worker itself never reads them.

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use domain::Shards;
use grip::Item;
use serde_json::json;

use crate::leases::LeaseView;
use crate::seams::Publish;

/// A publisher that writes a line per item to a log after each attempt,
/// when it has a log; without one it only passes the items on.
pub struct LoggedPublisher<P> {
    inner: P,
    worker: String,
    prefix: String,
    shards: Shards,
    leases: LeaseView,
    file: Option<Arc<Mutex<File>>>,
}

impl<P> LoggedPublisher<P> {
    /// Appends to `path` (created if missing), or logs nothing without one.
    pub fn open(
        inner: P,
        path: Option<&Path>,
        worker: String,
        prefix: String,
        shards: Shards,
        leases: LeaseView,
    ) -> std::io::Result<Self> {
        let file = match path {
            Some(path) => Some(Arc::new(Mutex::new(
                File::options().create(true).append(true).open(path)?,
            ))),
            None => None,
        };
        Ok(Self {
            inner,
            worker,
            prefix,
            shards,
            leases,
            file,
        })
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<P: Publish> Publish for LoggedPublisher<P> {
    type Error = P::Error;

    async fn publish(&self, items: &[Item]) -> Result<(), Self::Error> {
        let Some(file) = &self.file else {
            return self.inner.publish(items).await;
        };
        // The tenure as the worker sees it when it sends: what the audit
        // judges is what the worker believed, not what the database says.
        let mut attempt = Attempt {
            log: self,
            file,
            items,
            epochs: self
                .leases
                .borrow()
                .iter()
                .map(|(k, t)| (*k, t.epoch))
                .collect(),
            t0: unix_ms(),
            polled: unix_ms(),
            ok: None,
        };
        // Each poll's time is noted before it: the publish's bytes were all
        // written by its last poll, whenever the future is dropped (the
        // worker drops it unpolled once its tenure has run out).
        let work = std::pin::pin!(self.inner.publish(items));
        let mut work = work;
        let result = std::future::poll_fn(|cx| {
            attempt.polled = unix_ms();
            work.as_mut().poll(cx)
        })
        .await;
        attempt.ok = Some(result.is_ok());
        result
    }
}

/// One publish under way. Its lines are written when it is dropped, so a
/// publish abandoned half-way (its tenure ran out; the worker drops the
/// future) is recorded too, ending when it was abandoned: its bytes may
/// have reached Pushpin.
struct Attempt<'a, P> {
    log: &'a LoggedPublisher<P>,
    file: &'a Mutex<File>,
    items: &'a [Item],
    epochs: std::collections::BTreeMap<u16, u64>,
    t0: u64,
    /// When it was last polled: the last moment it may have sent anything.
    polled: u64,
    /// `None` while under way, or when abandoned.
    ok: Option<bool>,
}

impl<P> Drop for Attempt<'_, P> {
    fn drop(&mut self) {
        let dropped = unix_ms();
        let t1 = self.polled;
        let mut text = String::new();
        for item in self.items {
            let channel = item.channel().as_str();
            let board = channel.strip_prefix(&self.log.prefix).unwrap_or(channel);
            let shard = self.log.shards.of_board(board);
            let line = json!({
                "worker": self.log.worker,
                "shard": shard,
                "epoch": self.epochs.get(&shard),
                "board": board,
                "id": item.id().map(|id| id.as_str().to_owned()),
                "t0": self.t0,
                "t1": t1,
                "dropped": dropped,
                "ok": self.ok == Some(true),
                "abandoned": self.ok.is_none(),
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        if let Ok(mut file) = self.file.lock() {
            if let Err(e) = file.write_all(text.as_bytes()) {
                log::warn!("cannot write the publish log: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use grip::{ChannelName, ItemId};

    use super::*;
    use crate::leases::hold_everything;

    /// Answers after `delay`, or never.
    struct Slow(Option<Duration>);

    impl Publish for Slow {
        type Error = String;

        async fn publish(&self, _items: &[Item]) -> Result<(), String> {
            match self.0 {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    Ok(())
                }
                None => std::future::pending().await,
            }
        }
    }

    fn item(board: &str) -> Item {
        Item::stream(
            ChannelName::parse(format!("lb-{board}")).unwrap(),
            "data: x\n\n",
        )
        .with_id(ItemId::parse("abc").unwrap())
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn every_publish_is_recorded_with_its_shard_and_epoch_even_when_abandoned() {
        let path = std::env::temp_dir().join(format!("publog-{}.jsonl", rand::random::<u64>()));
        let shards = Shards::new(16).unwrap();
        let open = |inner| {
            LoggedPublisher::open(
                inner,
                Some(&path),
                "w1".into(),
                "lb-".into(),
                shards,
                hold_everything(shards),
            )
            .unwrap()
        };
        open(Slow(Some(Duration::ZERO)))
            .publish(&[item("b1")])
            .await
            .unwrap();
        let stuck = open(Slow(None));
        let abandoned =
            tokio::time::timeout(Duration::from_millis(20), stuck.publish(&[item("b2")])).await;
        assert!(abandoned.is_err());

        let lines = lines(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["board"], "b1");
        assert_eq!(lines[0]["worker"], "w1");
        assert_eq!(lines[0]["shard"], shards.of_board("b1"));
        assert_eq!(lines[0]["epoch"], 1);
        assert_eq!(lines[0]["ok"], true);
        assert_eq!(lines[1]["board"], "b2");
        assert_eq!(lines[1]["abandoned"], true);
        assert!(lines[1]["t1"].as_u64() >= lines[1]["t0"].as_u64());
    }
}
