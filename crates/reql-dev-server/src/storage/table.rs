//! Tables: documents in hash shards, reads in index order, and `TableWriter` for writes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use uuid::Uuid;

use super::index::{range_ok, sort_bounds, IndexDef, ScanSpec, SecondaryIndex};
use super::notify::notify;
use super::wal::{self, Log};
use super::SYSTEM_DB;
use crate::datum::{primary_key_bytes, shard_of, Datum, SHARDS};
use crate::error::{ReqlError, Result};
use crate::feed::{FeedMsg, SortKey, Subscriber};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Hard,
    Soft,
}

impl Durability {
    pub fn name(self) -> &'static str {
        match self {
            Durability::Hard => "hard",
            Durability::Soft => "soft",
        }
    }
    pub fn parse(s: &str) -> Option<Durability> {
        match s {
            "hard" => Some(Durability::Hard),
            "soft" => Some(Durability::Soft),
            _ => None,
        }
    }
}

pub struct TableData {
    pub(super) shards: Vec<BTreeMap<Datum, Datum>>,
    pub(super) indexes: BTreeMap<String, SecondaryIndex>,
    pub(super) subs: Vec<Subscriber>,
    pub(super) dropped: bool,
}

impl TableData {
    pub(super) fn new() -> TableData {
        TableData {
            shards: (0..SHARDS).map(|_| BTreeMap::new()).collect(),
            indexes: BTreeMap::new(),
            subs: Vec::new(),
            dropped: false,
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(BTreeMap::len).sum()
    }

    pub fn get(&self, pk: &Datum) -> Option<&Datum> {
        let bytes = primary_key_bytes(pk).ok()?;
        self.shards[shard_of(&bytes)].get(pk)
    }

    pub fn index_names(&self) -> Vec<String> {
        self.indexes.keys().cloned().collect()
    }

    pub fn index_defs(&self) -> Vec<Arc<IndexDef>> {
        self.indexes.values().map(|i| i.def.clone()).collect()
    }

    pub fn index_def(&self, name: &str) -> Option<Arc<IndexDef>> {
        self.indexes.get(name).map(|i| i.def.clone())
    }

    pub fn has_index(&self, name: &str) -> bool {
        self.indexes.contains_key(name)
    }

    /// Up to `n` entries of one shard in the spec's direction, after `after`.
    pub fn scan_shard(
        &self,
        shard: usize,
        spec: &ScanSpec,
        after: Option<&SortKey>,
        n: usize,
    ) -> Vec<(SortKey, Datum)> {
        let (mut lo, mut hi) = sort_bounds(spec);
        if let Some(a) = after {
            if spec.desc {
                hi = Bound::Excluded(a.clone());
            } else {
                lo = Bound::Excluded(a.clone());
            }
        }
        let mut out = Vec::new();
        if !range_ok(&lo, &hi) {
            return out;
        }
        match &spec.index {
            None => {
                let map = &self.shards[shard];
                let lo_pk = lo.map(|k| k.0);
                let hi_pk = hi.map(|k| k.0);
                if !range_ok(&lo_pk, &hi_pk) {
                    return out;
                }
                let range = map.range((lo_pk, hi_pk));
                let push = |out: &mut Vec<_>, (k, d): (&Datum, &Datum)| {
                    out.push(((k.clone(), Datum::Null), d.clone()))
                };
                if spec.desc {
                    range.rev().take(n).for_each(|e| push(&mut out, e));
                } else {
                    range.take(n).for_each(|e| push(&mut out, e));
                }
            }
            Some(name) => {
                let Some(idx) = self.indexes.get(name) else {
                    return out;
                };
                let range = idx.shards[shard].range((lo, hi));
                let mut push = |(k, d): (&SortKey, &Datum)| out.push((k.clone(), d.clone()));
                if spec.desc {
                    range.rev().take(n).for_each(&mut push);
                } else {
                    range.take(n).for_each(&mut push);
                }
            }
        }
        out
    }

    /// The first `n` entries of a range across all shards, in order.
    pub fn ordered(&self, spec: &ScanSpec, n: usize) -> Vec<(SortKey, Datum)> {
        let mut all: Vec<(SortKey, Datum)> = (0..SHARDS)
            .flat_map(|s| self.scan_shard(s, spec, None, n))
            .collect();
        all.sort_by(|a, b| {
            if spec.desc {
                b.0.cmp(&a.0)
            } else {
                a.0.cmp(&b.0)
            }
        });
        all.truncate(n);
        all
    }

    /// Documents whose index value equals `key` (or whose primary key is `key`).
    pub fn lookup(&self, index: Option<&str>, key: &Datum) -> Vec<Datum> {
        let spec = ScanSpec {
            index: index.map(str::to_string),
            lo: Bound::Included(key.clone()),
            hi: Bound::Included(key.clone()),
            desc: false,
        };
        match index {
            None => self.get(key).cloned().into_iter().collect(),
            Some(_) => (0..SHARDS)
                .flat_map(|s| self.scan_shard(s, &spec, None, usize::MAX))
                .map(|e| e.1)
                .collect(),
        }
    }

    pub fn all_docs(&self) -> Vec<Datum> {
        self.shards
            .iter()
            .flat_map(|m| m.values().cloned())
            .collect()
    }
}

pub struct Table {
    pub id: Uuid,
    pub db_id: Uuid,
    pub db: String,
    pub name: String,
    pub primary_key: String,
    pub durability: Durability,
    pub(super) data: RwLock<TableData>,
    /// Unset while a data directory is being loaded, so replayed changes are not
    /// logged again.
    pub(super) log: OnceLock<Arc<Log>>,
    /// Set on a view of a system table (`rethinkdb.table_config`...): what
    /// deleting one of its rows does.
    pub(super) system: Option<SystemDelete>,
}

/// Deletes the catalog entry behind one row of a system table, returning the
/// log position of the change.
pub type SystemDelete = Arc<dyn Fn(&Datum) -> Result<u64> + Send + Sync>;

impl Table {
    /// A read-only view of a system table as it is now, keyed by `id`, whose
    /// rows can be deleted through `on_delete`.
    pub fn system_view(name: &str, rows: Vec<Datum>, on_delete: SystemDelete) -> Arc<Table> {
        let mut data = TableData::new();
        for row in rows {
            let Some(key) = row.get("id").cloned() else {
                continue;
            };
            if let Ok(bytes) = primary_key_bytes(&key) {
                data.shards[shard_of(&bytes)].insert(key, row);
            }
        }
        Arc::new(Table {
            id: Uuid::nil(),
            db_id: Uuid::nil(),
            db: SYSTEM_DB.to_string(),
            name: name.to_string(),
            primary_key: "id".to_string(),
            durability: Durability::Hard,
            data: RwLock::new(data),
            log: OnceLock::new(),
            system: Some(on_delete),
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, TableData> {
        self.data.read()
    }

    pub fn writer(&self) -> TableWriter<'_> {
        TableWriter {
            table: self,
            data: self.data.write(),
            durable_seq: 0,
        }
    }

    pub fn full_name(&self) -> String {
        format!("{}.{}", self.db, self.name)
    }

    pub(super) fn missing(&self) -> ReqlError {
        ReqlError::op_failed(format!("Table `{}` does not exist.", self.full_name()))
    }

    pub(super) fn log_append(&self, payload: &str, durability: Durability) -> u64 {
        match self.log.get() {
            Some(log) => log.append(payload, durability == Durability::Hard),
            None => 0,
        }
    }

    pub(super) fn mark_dropped(&self) {
        let mut data = self.data.write();
        data.dropped = true;
        for s in data.subs.drain(..) {
            let _ = s.tx.send(FeedMsg::Abort);
        }
    }
}

/// Write access to one table. Each `put` updates the shard, the indexes, the log
/// and the feeds before returning, all under the table's write lock.
pub struct TableWriter<'a> {
    table: &'a Table,
    data: RwLockWriteGuard<'a, TableData>,
    /// The log position a hard-durability acknowledgement has to wait for.
    pub durable_seq: u64,
}

impl TableWriter<'_> {
    pub fn get(&self, pk: &Datum) -> Option<&Datum> {
        self.data.get(pk)
    }

    /// Stores (`Some`) or deletes (`None`) the document with primary key `pk`.
    pub fn put(
        &mut self,
        pk: &Datum,
        new: Option<Datum>,
        durability: Durability,
    ) -> Result<Option<Datum>> {
        if self.data.dropped {
            return Err(self.table.missing());
        }
        if let Some(on_delete) = &self.table.system {
            if new.is_some() {
                return Err(ReqlError::op_failed(format!(
                    "This development server can only delete rows of `{}`.",
                    self.table.full_name()
                )));
            }
            let seq = on_delete(pk)?;
            self.durable_seq = self.durable_seq.max(seq);
            let bytes = primary_key_bytes(pk)?;
            return Ok(self.data.shards[shard_of(&bytes)].remove(pk));
        }
        let bytes = primary_key_bytes(pk)?;
        if let Some(n) = &new {
            if n.has_extrema() {
                return Err(ReqlError::logic("Cannot convert `r.minval` to JSON."));
            }
            if n.deeper_than(crate::eval::MAX_DEPTH) {
                return Err(ReqlError::resource(format!(
                    "Nesting depth limit exceeded ({} levels).",
                    crate::eval::MAX_DEPTH
                )));
            }
        }
        let shard = shard_of(&bytes);
        let data = &mut *self.data;
        let old = match &new {
            Some(doc) => data.shards[shard].insert(pk.clone(), doc.clone()),
            None => data.shards[shard].remove(pk),
        };
        for idx in data.indexes.values_mut() {
            let old_keys = old.as_ref().map(|o| idx.def.keys_of(o)).unwrap_or_default();
            let new_keys = match &new {
                Some(n) => idx.def.keys_of(n),
                None => Vec::new(),
            };
            let map = &mut idx.shards[shard];
            for k in old_keys {
                if !new_keys.contains(&k) {
                    map.remove(&(k, pk.clone()));
                }
            }
            if let Some(n) = &new {
                for k in new_keys {
                    map.insert((k, pk.clone()), n.clone());
                }
            }
        }
        if self.table.log.get().is_some() {
            let rec = wal::put_record(&self.table.id.to_string(), pk, new.as_ref());
            let seq = self.table.log_append(&rec, durability);
            if durability == Durability::Hard {
                self.durable_seq = self.durable_seq.max(seq);
            }
        }
        notify(data, pk, &old, &new);
        Ok(old)
    }
}
