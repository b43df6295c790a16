//! The workers' coordination, kept in RethinkDB's `leases` table and
//! changed only by atomic single-document updates:
//!
//! - `shard:<k>`: the lease of shard `k`, `{holder, epoch, expires}`; free
//!   when `holder` is null or `expires` has passed. Taking it raises the
//!   epoch, so every tenure of a shard has a number of its own.
//! - `layout`: `{shards, members: [{id, expires}]}`, the number of shards
//!   the live workers agree on and their heartbeats: how workers count each
//!   other to find their fair share, and how a worker started with another
//!   `WORKER_SHARDS` is kept out until every member has gone (see
//!   [`Store::join_layout`]).
//! - `migration:slot`: set once every board and player carries its slot.
//!
//! Every time in the table is the database's clock (`r.now()`, in
//! milliseconds), so the workers' own clocks never need to agree.

use std::ops::Range;

use domain::{slot_of, Shards};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use crate::queries::single;
use crate::{reql, Store, StoreError};

/// One shard's lease as read from the table.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    /// The shard number, from the document id `shard:<k>`.
    pub shard: u16,
    /// The id of the worker holding the lease; `None` once released.
    pub holder: Option<String>,
    /// Raised by every take, so each tenure of the shard has its own number.
    pub epoch: u64,
    /// Milliseconds since the epoch, on the database's clock.
    pub expires: f64,
}

/// The whole `leases` table at one moment of the database's clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseTable {
    /// The database's time of the read, in milliseconds since the epoch.
    pub now: f64,
    /// Every shard lease in the table, held, expired or free.
    pub leases: Vec<LeaseRow>,
    /// Members of the layout whose heartbeat has not expired.
    pub live_workers: Vec<String>,
    /// The number of shards of the layout, once a worker has joined it.
    pub layout: Option<u16>,
}

impl LeaseTable {
    /// Whether a lease is free to take at the moment of the read.
    pub fn is_free(&self, lease: &LeaseRow) -> bool {
        lease.holder.is_none() || lease.expires <= self.now
    }
}

/// What a slot migration changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Board documents given their slot.
    pub boards: u64,
    /// Player documents given their slot.
    pub players: u64,
    /// True when the marker showed it had already run, and nothing was read.
    pub skipped: bool,
}

#[derive(Deserialize)]
struct RawTable {
    now: f64,
    rows: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct RawLayout {
    shards: u16,
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Debug, Deserialize)]
struct RawMember {
    id: String,
    expires: f64,
}

#[derive(Debug, Deserialize)]
struct RawLease {
    id: String,
    holder: Option<String>,
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    expires: f64,
}

/// The change an update with `return_changes` reports for one document.
#[derive(Debug, Deserialize)]
struct LeaseChange {
    #[serde(default)]
    old_val: Option<RawLease>,
    new_val: Option<RawLease>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseWrite {
    replaced: u64,
    changes: Vec<LeaseChange>,
}

fn shard_of_id(id: &str) -> Option<u16> {
    id.strip_prefix("shard:")?.parse().ok()
}

fn decode<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Decode(e.to_string()))
}

impl Store {
    /// Reads every lease and the layout, with the database's time.
    pub async fn lease_table(&self) -> Result<LeaseTable, StoreError> {
        let raw: RawTable = decode(single(self.run(reql::lease_table()).await?)?)?;
        let mut table = LeaseTable {
            now: raw.now,
            ..LeaseTable::default()
        };
        for row in raw.rows {
            let Some(id) = row.get("id").and_then(Value::as_str) else {
                continue;
            };
            if id == reql::LAYOUT_ID {
                let layout: RawLayout = decode(row)?;
                table.layout = Some(layout.shards);
                table.live_workers = layout
                    .members
                    .into_iter()
                    .filter(|m| m.expires > raw.now)
                    .map(|m| m.id)
                    .collect();
            } else if let Some(shard) = shard_of_id(id) {
                let lease: RawLease = decode(row)?;
                table.leases.push(LeaseRow {
                    shard,
                    holder: lease.holder,
                    epoch: lease.epoch,
                    expires: lease.expires,
                });
            }
        }
        table.leases.sort_by_key(|l| l.shard);
        table.live_workers.sort();
        Ok(table)
    }

    /// Makes sure every shard of `shards` has a lease document.
    pub async fn seed_leases(&self, shards: Shards) -> Result<(), StoreError> {
        self.run(reql::seed_leases(shards.all())).await?;
        Ok(())
    }

    /// Records that `worker` is alive for `ttl_ms` more, as a member of the
    /// layout of `shards` shards. True when it is a member now; false when
    /// live workers hold another layout, which changes only once none of
    /// them is left: two layouts never have live members at once, so two
    /// workers with different `WORKER_SHARDS` never publish at once.
    pub async fn join_layout(
        &self,
        worker: &str,
        shards: Shards,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let answer = single(
            self.run(reql::join_layout(worker, shards.count(), ttl_ms))
                .await?,
        )?;
        let count = |field: &str| answer.get(field).and_then(Value::as_u64).unwrap_or(0);
        Ok(count("inserted") + count("replaced") > 0)
    }

    /// Removes `worker` from the layout's members.
    pub async fn leave_layout(&self, worker: &str) -> Result<(), StoreError> {
        self.run(reql::leave_layout(worker)).await?;
        Ok(())
    }

    /// Takes `shard`'s lease if it is free or expired. Returns the new
    /// epoch when `worker` now holds it, `None` when someone else does.
    pub async fn take_lease(
        &self,
        shard: u16,
        worker: &str,
        ttl_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let write: LeaseWrite = decode(single(
            self.run(reql::take_lease(shard, worker, ttl_ms)).await?,
        )?)?;
        if write.replaced == 0 {
            return Ok(None);
        }
        Ok(write
            .changes
            .into_iter()
            .filter_map(|c| c.new_val)
            .find(|lease| lease.holder.as_deref() == Some(worker))
            .map(|lease| lease.epoch))
    }

    /// Extends the unexpired leases `worker` holds among `shards`. Returns
    /// the shards it still holds, each with its epoch.
    pub async fn renew_leases(
        &self,
        shards: &[u16],
        worker: &str,
        ttl_ms: u64,
    ) -> Result<Vec<(u16, u64)>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let write: LeaseWrite = decode(single(
            self.run(reql::renew_leases(shards, worker, ttl_ms)).await?,
        )?)?;
        // "always" reports unchanged documents too: a lease of ours that had
        // expired is reported with its expiry as it was, so only a moved
        // expiry counts as renewed.
        Ok(write
            .changes
            .into_iter()
            .filter_map(|change| {
                let lease = change.new_val?;
                let before = change.old_val?;
                let renewed =
                    lease.holder.as_deref() == Some(worker) && lease.expires > before.expires;
                renewed
                    .then(|| shard_of_id(&lease.id).map(|shard| (shard, lease.epoch)))
                    .flatten()
            })
            .collect())
    }

    /// Frees the leases `worker` holds among `shards`.
    pub async fn release_leases(&self, shards: &[u16], worker: &str) -> Result<(), StoreError> {
        if shards.is_empty() {
            return Ok(());
        }
        self.run(reql::release_leases(shards, worker)).await?;
        Ok(())
    }

    /// The ids of the boards in `slots`.
    pub async fn board_ids_in_slots(&self, slots: Range<u16>) -> Result<Vec<String>, StoreError> {
        let values = self.run(reql::board_ids_in_slots(slots)).await?;
        Ok(values
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }

    /// Gives every board and player its `slot`, unless the marker says this
    /// already ran (`force` runs it anyway). Idempotent, and safe while
    /// origins and workers run: each document is updated on its own, and
    /// one that already has its slot is left unchanged.
    pub async fn migrate_slots(&self, force: bool) -> Result<MigrationReport, StoreError> {
        if !force && !single(self.run(reql::slot_migration_marker()).await?)?.is_null() {
            return Ok(MigrationReport {
                skipped: true,
                ..MigrationReport::default()
            });
        }
        let ids = self.all_board_ids().await?;
        let results: Vec<Result<(u64, u64), StoreError>> = futures::stream::iter(ids)
            .map(|board| async move {
                let slot = slot_of(&board);
                let boards = self.run(reql::set_board_slot(&board, slot)).await?;
                let players = self.run(reql::set_players_slot(&board, slot)).await?;
                Ok((replaced(&boards), replaced(&players)))
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut report = MigrationReport::default();
        for result in results {
            let (boards, players) = result?;
            report.boards += boards;
            report.players += players;
        }
        self.run(reql::mark_slot_migration()).await?;
        Ok(report)
    }
}

fn replaced(values: &[Value]) -> u64 {
    values
        .first()
        .and_then(|v| v.get("replaced"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}
