//! Shard leases: which boards this worker publishes.
//!
//! Boards are split into shards ([`domain::Shards`]). A worker publishes a
//! shard's boards only while it holds the shard's lease, a document in the
//! `leases` table (`store::LeaseTable`) that is taken, renewed and handed
//! back only by atomic conditional updates, on the database's clock.
//!
//! Every `ttl / 4` the [`LeaseKeeper`]:
//! 1. writes this worker's heartbeat, as a member of the layout of
//!    `WORKER_SHARDS` shards (a worker whose number differs from the live
//!    members' is kept out, publishes nothing and says so on `/healthz`);
//! 2. renews the leases it holds; any it could not renew is dropped at once;
//! 3. reads the table, counts the layout's live members and computes its
//!    fair share,
//!    `ceil(shards / live workers)`;
//! 4. hands back leases above that share (after it has stopped publishing
//!    them), or takes free and expired ones up to it.
//!
//! **Why two workers never publish a board at once.** A lease renewed (or
//! taken) by a request sent at local instant `t` expires on the database no
//! earlier than `t + ttl`, because the database's `now` is read after `t`.
//! The worker gives itself less: its [`Tenure`] is valid until
//! `t + ttl − margin`, and the publish loop starts a publish only with the
//! time it may take still inside that, and abandons it when the time runs
//! out. Another worker can take the lease only once the database sees it
//! expired, after `t + ttl`, and publishes only after that. A worker that
//! stalls (a stopped process, a lost network, a slow database) simply runs
//! out of tenure: `Instant` keeps counting while the process is stopped.
//! And every snapshot carries the epoch of the tenure under which it was
//! read: one read under an earlier tenure of the same shard is dropped.
//! The margin (a tenth of the TTL, at least 100 ms) absorbs the rate
//! difference between clocks and the last bytes of a publish under way.
//!
//! Workers with different `WORKER_SHARDS` would cut the slots differently,
//! so that two leases of different numbers could cover the same board. The
//! heartbeat prevents it: it is a membership of the layout document, which
//! keeps the number of shards of its first member for as long as any member
//! is alive, and every tenure of a round is bounded by the membership
//! renewed at its start, exactly as a lease bounds it. A worker with another
//! number is refused until every member has expired or left, and so until
//! every tenure under the old number has ended.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use domain::Shards;
use store::{LeaseTable, Store, StoreError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::{LayoutConflict, Metrics};

/// One shard's lease as this worker holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenure {
    /// The lease's epoch: one per tenure of the shard, by any worker.
    pub epoch: u64,
    /// The worker may publish the shard's boards until this instant.
    pub valid_until: Instant,
}

/// The shards held, by shard number.
pub type Held = BTreeMap<u16, Tenure>;

/// A view of the shards held, as the publish loop reads it.
pub type LeaseView = watch::Receiver<Held>;

/// A view in which every shard is held for good: for a worker that owns
/// everything, as in tests.
pub fn hold_everything(shards: Shards) -> LeaseView {
    let forever = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let held = shards
        .all()
        .map(|k| {
            (
                k,
                Tenure {
                    epoch: 1,
                    valid_until: forever,
                },
            )
        })
        .collect();
    watch::channel(held).1
}

/// What one look at the lease table calls for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Leases to hand back: above the fair share, or held in the table by
    /// this worker without its knowing (an answer lost on the way).
    pub release: Vec<u16>,
    /// Free or expired leases to try, in order, until `wanted` are taken.
    pub candidates: Vec<u16>,
    /// How many more leases this worker should take to reach its fair share.
    pub wanted: usize,
}

/// The fair share of `shards` among `workers` live workers.
pub fn fair_share(shards: Shards, workers: usize) -> usize {
    usize::from(shards.count()).div_ceil(workers.max(1))
}

/// Plans the step after renewing: `held` are the leases this worker holds
/// now, `table` what the table held when read.
pub fn plan(held: &BTreeSet<u16>, table: &LeaseTable, me: &str, shards: Shards) -> LeasePlan {
    // This worker counts even if its heartbeat was not yet in the read.
    let mut workers: BTreeSet<&str> = table.live_workers.iter().map(String::as_str).collect();
    workers.insert(me);
    let fair = fair_share(shards, workers.len());
    let mut release: Vec<u16> = table
        .leases
        .iter()
        .filter(|l| l.holder.as_deref() == Some(me) && !held.contains(&l.shard))
        .filter(|l| !table.is_free(l))
        .map(|l| l.shard)
        .collect();
    let mut keep = held.len();
    if keep > fair {
        // The highest shards go; which ones does not matter, only that
        // each worker drops to its share.
        release.extend(held.iter().rev().take(keep - fair));
        keep = fair;
    }
    let wanted = fair - keep;
    let mut candidates: Vec<u16> = table
        .leases
        .iter()
        .filter(|l| l.shard < shards.count() && table.is_free(l) && !held.contains(&l.shard))
        .map(|l| l.shard)
        .collect();
    // Start at a place of this worker's own, so that workers joining
    // together do not all race for the same first shard.
    if !candidates.is_empty() {
        let offset = domain::slot_of(me) as usize % candidates.len();
        candidates.rotate_left(offset);
    }
    release.sort_unstable();
    release.dedup();
    LeasePlan {
        release,
        candidates,
        wanted,
    }
}

/// Takes, renews and hands back this worker's leases.
pub struct LeaseKeeper {
    store: Store,
    me: String,
    shards: Shards,
    ttl: Duration,
    held: Held,
    tx: watch::Sender<Held>,
    metrics: Metrics,
}

impl LeaseKeeper {
    /// A keeper for worker `me`, and the view its publish loop reads.
    pub fn new(
        store: Store,
        me: String,
        shards: Shards,
        ttl: Duration,
        metrics: Metrics,
    ) -> (Self, LeaseView) {
        let (tx, rx) = watch::channel(Held::new());
        let keeper = Self {
            store,
            me,
            shards,
            ttl,
            held: Held::new(),
            tx,
            metrics,
        };
        (keeper, rx)
    }

    /// How often leases are renewed: four times per TTL.
    pub fn period(&self) -> Duration {
        self.ttl / 4
    }

    /// What a tenure keeps back from the TTL.
    fn margin(&self) -> Duration {
        (self.ttl / 10).max(Duration::from_millis(100))
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Keeps the leases until `shutdown` completes, then hands them all
    /// back at once.
    pub async fn run_until_stopped(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        if let Err(e) = self.store.seed_leases(self.shards).await {
            log::warn!("cannot create the lease documents yet: {e}");
        }
        loop {
            let started = Instant::now();
            if let Err(e) = self.tick().await {
                log::warn!("lease round failed: {e}");
                // What is held keeps its validity; it runs out unless a
                // later round renews it.
                self.drop_expired();
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(started + self.period()) => {}
            }
        }
        self.hand_back().await;
    }

    /// One round: heartbeat, renew, rebalance.
    pub async fn tick(&mut self) -> Result<(), StoreError> {
        let ttl_ms = self.ttl_ms();
        // The heartbeat is this worker's membership of the layout. Whatever
        // it holds this round is valid only as long as that membership: the
        // layout changes only after every member's has expired on the
        // database, so a worker with another WORKER_SHARDS, whose shards
        // cover other slots, can take over only once nothing held under
        // this layout is valid any more.
        let sent = Instant::now();
        if !self
            .store
            .join_layout(&self.me, self.shards, ttl_ms)
            .await?
        {
            return self.keep_out().await;
        }
        if self.metrics.layout_conflict().is_some() {
            log::info!(
                "joined the layout of {} shards: the workers with another WORKER_SHARDS are gone",
                self.shards.count()
            );
            self.metrics.set_layout_conflict(None);
        }
        let valid_until = sent + self.ttl - self.margin();
        // Renew first, so a slow read cannot eat into what is held.
        let mine: Vec<u16> = self.held.keys().copied().collect();
        let renewed = self.store.renew_leases(&mine, &self.me, ttl_ms).await?;
        let mut next = Held::new();
        for (shard, epoch) in renewed {
            match self.held.get(&shard) {
                Some(t) if t.epoch == epoch => {
                    next.insert(shard, Tenure { epoch, valid_until });
                }
                _ => {}
            }
        }
        for shard in self.held.keys().filter(|k| !next.contains_key(k)) {
            log::warn!("lost the lease of shard {shard}: not renewed in time");
            self.metrics.lease_losses.inc();
        }
        self.publish(next);

        let table = self.store.lease_table().await?;
        if table.leases.len() < usize::from(self.shards.count()) {
            self.store.seed_leases(self.shards).await?;
        }
        let held: BTreeSet<u16> = self.held.keys().copied().collect();
        let plan = plan(&held, &table, &self.me, self.shards);
        if !plan.release.is_empty() {
            // Stop publishing them before anyone else can take them.
            let mut next = self.held.clone();
            for shard in &plan.release {
                next.remove(shard);
            }
            self.publish(next);
            self.store.release_leases(&plan.release, &self.me).await?;
            self.metrics
                .lease_releases
                .inc_by(plan.release.len() as u64);
            log::info!(
                "handed back shards {:?} ({} live workers)",
                plan.release,
                table.live_workers.len().max(1)
            );
        }
        let mut taken = 0;
        for shard in plan.candidates {
            if taken >= plan.wanted {
                break;
            }
            let Some(epoch) = self.store.take_lease(shard, &self.me, ttl_ms).await? else {
                continue;
            };
            taken += 1;
            let previous = table.leases.iter().find(|l| l.shard == shard);
            let takeover = previous.is_some_and(|l| l.holder.is_some());
            self.metrics.lease_takes.inc();
            if takeover {
                self.metrics.takeovers.inc();
            }
            log::info!(
                "took shard {shard} at epoch {epoch}{}",
                if takeover {
                    " (taken over from an expired lease)"
                } else {
                    ""
                }
            );
            let mut next = self.held.clone();
            next.insert(shard, Tenure { epoch, valid_until });
            self.publish(next);
        }
        Ok(())
    }

    /// Live workers hold a layout of another number of shards: publish
    /// nothing, hand back whatever is held, and say why.
    async fn keep_out(&mut self) -> Result<(), StoreError> {
        let mine: Vec<u16> = self.held.keys().copied().collect();
        self.publish(Held::new());
        if !mine.is_empty() {
            self.store.release_leases(&mine, &self.me).await?;
            self.metrics.lease_releases.inc_by(mine.len() as u64);
        }
        let table = self.store.lease_table().await?;
        let conflict = LayoutConflict {
            mine: self.shards.count(),
            theirs: table.layout.unwrap_or_default(),
            members: table.live_workers,
        };
        if self.metrics.layout_conflict().is_none() {
            log::error!("{}", conflict.message());
        }
        self.metrics.set_layout_conflict(Some(conflict));
        Ok(())
    }

    /// Drops tenures whose time has run out.
    fn drop_expired(&mut self) {
        let now = Instant::now();
        let next: Held = self
            .held
            .iter()
            .filter(|(_, t)| t.valid_until > now)
            .map(|(k, t)| (*k, *t))
            .collect();
        if next.len() != self.held.len() {
            let lost = self.held.len() - next.len();
            log::warn!("{lost} shard leases ran out while the database did not answer");
            self.metrics.lease_losses.inc_by(lost as u64);
            self.publish(next);
        }
    }

    /// Stops publishing everything, then frees the leases and leaves the
    /// layout so other workers take over at once.
    async fn hand_back(&mut self) {
        let mine: Vec<u16> = self.held.keys().copied().collect();
        self.publish(Held::new());
        if !mine.is_empty() {
            match self.store.release_leases(&mine, &self.me).await {
                Ok(()) => {
                    self.metrics.lease_releases.inc_by(mine.len() as u64);
                    log::info!("handed back shards {mine:?}");
                }
                Err(e) => log::warn!("cannot hand back the leases ({e}); they will expire"),
            }
        }
        if let Err(e) = self.store.leave_layout(&self.me).await {
            log::warn!("cannot leave the layout: {e}");
        }
    }

    fn publish(&mut self, held: Held) {
        self.metrics
            .set_owned(held.iter().map(|(k, t)| (*k, t.epoch)).collect());
        self.held = held.clone();
        self.tx.send_replace(held);
    }
}

/// A name unique to this process: host, process id and a random suffix.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::LeaseRow;

    fn table(now: f64, leases: &[(u16, Option<&str>, f64)], workers: &[&str]) -> LeaseTable {
        LeaseTable {
            now,
            leases: leases
                .iter()
                .map(|(shard, holder, expires)| LeaseRow {
                    shard: *shard,
                    holder: holder.map(str::to_owned),
                    epoch: 1,
                    expires: *expires,
                })
                .collect(),
            live_workers: workers.iter().map(|w| w.to_string()).collect(),
            layout: Some(16),
        }
    }

    fn shards(n: u16) -> Shards {
        Shards::new(n).unwrap()
    }

    #[test]
    fn the_fair_share_rounds_up() {
        assert_eq!(fair_share(shards(16), 1), 16);
        assert_eq!(fair_share(shards(16), 3), 6);
        assert_eq!(fair_share(shards(16), 4), 4);
        assert_eq!(fair_share(shards(16), 0), 16);
        assert_eq!(fair_share(shards(2), 3), 1);
    }

    #[test]
    fn a_lone_worker_takes_every_free_or_expired_shard() {
        let t = table(
            100.0,
            &[
                (0, None, 0.0),
                (1, Some("dead"), 50.0),
                (2, Some("b"), 200.0),
            ],
            &["a"],
        );
        let mut p = plan(&BTreeSet::new(), &t, "a", shards(3));
        p.candidates.sort_unstable();
        assert_eq!(p.candidates, vec![0, 1]);
        // Shard 2 is held by a worker whose heartbeat expired, but its
        // lease has not: it is not free yet.
        assert_eq!(p.wanted, 3);
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_worker_above_its_share_hands_back_the_extra() {
        let held: BTreeSet<u16> = (0..8).collect();
        let leases: Vec<(u16, Option<&str>, f64)> = (0..8).map(|k| (k, Some("a"), 200.0)).collect();
        let t = table(100.0, &leases, &["a", "b", "c", "d"]);
        let p = plan(&held, &t, "a", shards(16));
        assert_eq!(p.release, vec![4, 5, 6, 7]);
        assert_eq!(p.wanted, 0);
    }

    #[test]
    fn a_lease_held_in_the_table_but_not_known_is_handed_back() {
        let t = table(
            100.0,
            &[(0, Some("a"), 200.0), (1, Some("a"), 200.0)],
            &["a"],
        );
        let held: BTreeSet<u16> = [1].into_iter().collect();
        let p = plan(&held, &t, "a", shards(2));
        assert_eq!(p.release, vec![0]);
    }
}
