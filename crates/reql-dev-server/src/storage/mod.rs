//! Databases, tables and their indexes, in memory, optionally backed by the
//! write-ahead log in `log`.
//!
//! A table is split into eight hash shards by primary key, as RethinkDB splits
//! it; each shard keeps its documents and its part of every secondary index in
//! ordered maps. Ordered reads merge the shards, unordered reads visit them in
//! turn, so clients see the same orders a real server gives. Secondary index
//! entries are `(index value, primary key)` pairs, so a range in index order costs
//! O(log n) to find and O(1) per document after that.

pub mod wal;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use uuid::Uuid;

use self::wal::{Log, SnapshotSource};
use crate::datum::{
    primary_key_bytes, shard_of, valid_index_key, write_json_string, Datum, SHARDS,
};
use crate::error::{ReqlError, Result, ServerError};
use crate::feed::{Backlog, FeedMsg, SortKey, SubKind, Subscriber};

pub type KeyFn = Arc<dyn Fn(&Datum) -> Vec<Datum> + Send + Sync>;

/// Compiles a stored index function (its raw term JSON) into a key function.
pub type IndexCompiler = Arc<dyn Fn(&serde_json::Value) -> Result<KeyFn, String> + Send + Sync>;

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

pub struct IndexDef {
    pub name: String,
    pub multi: bool,
    pub geo: bool,
    /// The function as the client sent it, kept to rebuild the index at start-up.
    pub func_json: serde_json::Value,
    pub query: String,
    pub blob: String,
    pub keys: KeyFn,
}

impl IndexDef {
    /// The index keys of a document (none when the function fails or gives a value
    /// that cannot be indexed).
    pub fn keys_of(&self, doc: &Datum) -> Vec<Datum> {
        let raw = (self.keys)(doc);
        let mut out = Vec::new();
        for k in raw {
            if self.multi {
                if let Datum::Array(items) = &k {
                    for x in items.iter() {
                        if valid_index_key(x) && !out.contains(x) {
                            out.push(x.clone());
                        }
                    }
                    continue;
                }
            }
            if valid_index_key(&k) && !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }
}

/// A secondary index shard maps `(index value, primary key)` to the document,
/// so a range read needs no second lookup.
struct SecondaryIndex {
    def: Arc<IndexDef>,
    shards: Vec<BTreeMap<SortKey, Datum>>,
}

/// Which index a read goes through, the range of index values it covers and the
/// direction.
#[derive(Clone, Debug)]
pub struct ScanSpec {
    pub index: Option<String>,
    pub lo: Bound<Datum>,
    pub hi: Bound<Datum>,
    pub desc: bool,
}

impl ScanSpec {
    pub fn all() -> ScanSpec {
        ScanSpec {
            index: None,
            lo: Bound::Unbounded,
            hi: Bound::Unbounded,
            desc: false,
        }
    }

    pub fn contains(&self, key: &Datum) -> bool {
        let lo_ok = match &self.lo {
            Bound::Unbounded => true,
            Bound::Included(l) => key >= l,
            Bound::Excluded(l) => key > l,
        };
        let hi_ok = match &self.hi {
            Bound::Unbounded => true,
            Bound::Included(h) => key <= h,
            Bound::Excluded(h) => key < h,
        };
        lo_ok && hi_ok
    }
}

/// `BTreeMap::range` panics on inverted or empty-exclusive ranges; this tells
/// whether a range is safe (and non-empty) to ask for.
fn range_ok<T: Ord>(lo: &Bound<T>, hi: &Bound<T>) -> bool {
    match (lo, hi) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a < b,
    }
}

fn sort_bounds(spec: &ScanSpec) -> (Bound<SortKey>, Bound<SortKey>) {
    let secondary = spec.index.is_some();
    let lo = match &spec.lo {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(k) => Bound::Included((
            k.clone(),
            if secondary {
                Datum::MinVal
            } else {
                Datum::Null
            },
        )),
        Bound::Excluded(k) => {
            if secondary {
                Bound::Excluded((k.clone(), Datum::MaxVal))
            } else {
                Bound::Excluded((k.clone(), Datum::Null))
            }
        }
    };
    let hi = match &spec.hi {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(k) => {
            if secondary {
                Bound::Included((k.clone(), Datum::MaxVal))
            } else {
                Bound::Included((k.clone(), Datum::Null))
            }
        }
        Bound::Excluded(k) => Bound::Excluded((
            k.clone(),
            if secondary {
                Datum::MinVal
            } else {
                Datum::Null
            },
        )),
    };
    (lo, hi)
}

pub struct TableData {
    shards: Vec<BTreeMap<Datum, Datum>>,
    indexes: BTreeMap<String, SecondaryIndex>,
    subs: Vec<Subscriber>,
    dropped: bool,
}

impl TableData {
    fn new() -> TableData {
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
    data: RwLock<TableData>,
    /// Unset while a data directory is being loaded, so replayed changes are not
    /// logged again.
    log: OnceLock<Arc<Log>>,
    /// Set on a view of a system table (`rethinkdb.table_config`...): what
    /// deleting one of its rows does.
    system: Option<SystemDelete>,
}

/// Deletes the catalog entry behind one row of a system table, returning the
/// log position of the change.
pub type SystemDelete = Arc<dyn Fn(&Datum) -> Result<u64> + Send + Sync>;

fn ambiguous(db: &str, name: &str) -> ReqlError {
    ReqlError::op_failed(format!(
        "Table `{db}.{name}` is ambiguous; there are multiple tables with that name."
    ))
}

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

    fn missing(&self) -> ReqlError {
        ReqlError::op_failed(format!("Table `{}` does not exist.", self.full_name()))
    }

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

    fn log_append(&self, payload: &str, durability: Durability) -> u64 {
        match self.log.get() {
            Some(log) => log.append(payload, durability == Durability::Hard),
            None => 0,
        }
    }

    pub fn index_create(&self, def: IndexDef) -> Result<()> {
        if self.system.is_some() {
            return Err(ReqlError::op_failed(format!(
                "Database `{SYSTEM_DB}` is special; you can't create secondary indexes on the tables in it."
            )));
        }
        let mut data = self.data.write();
        if data.dropped {
            return Err(self.missing());
        }
        if data.indexes.contains_key(&def.name) {
            return Err(ReqlError::op_failed(format!(
                "Index `{}` already exists on table `{}`.",
                def.name,
                self.full_name()
            )));
        }
        if let Some(log) = self.log.get() {
            log.append(&index_record(&self.id, &def), true);
        }
        install_index(&mut data, def);
        Ok(())
    }

    pub fn index_drop(&self, name: &str) -> Result<()> {
        let mut data = self.data.write();
        if data.indexes.remove(name).is_none() {
            return Err(ReqlError::op_failed(format!(
                "Index `{name}` does not exist on table `{}`.",
                self.full_name()
            )));
        }
        let mut s = String::from("{\"op\":\"index_drop\",\"table\":\"");
        s.push_str(&self.id.to_string());
        s.push_str("\",\"name\":");
        write_json_string(name, &mut s);
        s.push('}');
        self.log_append(&s, Durability::Hard);
        Ok(())
    }

    pub fn index_rename(&self, from: &str, to: &str, overwrite: bool) -> Result<bool> {
        let mut data = self.data.write();
        if from == to {
            return if data.indexes.contains_key(from) {
                Ok(false)
            } else {
                Err(ReqlError::op_failed(format!(
                    "Index `{from}` does not exist on table `{}`.",
                    self.full_name()
                )))
            };
        }
        if !data.indexes.contains_key(from) || (data.indexes.contains_key(to) && !overwrite) {
            return Err(ReqlError::op_failed(format!(
                "Index `{from}` does not exist or index `{to}` already exists on table `{}`.",
                self.full_name()
            )));
        }
        rename_index(&mut data, from, to);
        let mut s = String::from("{\"op\":\"index_rename\",\"table\":\"");
        s.push_str(&self.id.to_string());
        s.push_str("\",\"from\":");
        write_json_string(from, &mut s);
        s.push_str(",\"to\":");
        write_json_string(to, &mut s);
        s.push('}');
        self.log_append(&s, Durability::Hard);
        Ok(true)
    }

    fn mark_dropped(&self) {
        let mut data = self.data.write();
        data.dropped = true;
        for s in data.subs.drain(..) {
            let _ = s.tx.send(FeedMsg::Abort);
        }
    }
}

fn rename_index(data: &mut TableData, from: &str, to: &str) {
    if let Some(idx) = data.indexes.remove(from) {
        let d = &idx.def;
        let forms = renamed_query(&d.query, from, to);
        let def = Arc::new(IndexDef {
            name: to.to_string(),
            multi: d.multi,
            geo: d.geo,
            func_json: d.func_json.clone(),
            query: forms,
            blob: d.blob.clone(),
            keys: d.keys.clone(),
        });
        data.indexes.insert(
            to.to_string(),
            SecondaryIndex {
                def,
                shards: idx.shards,
            },
        );
    }
}

/// The recreate query of an index after a rename.
fn renamed_query(query: &str, from: &str, to: &str) -> String {
    let old = format!("indexCreate('{from}', ");
    match query.strip_prefix(&old) {
        Some(rest) => format!("indexCreate('{to}', {rest}"),
        None => query.to_string(),
    }
}

fn install_index(data: &mut TableData, def: IndexDef) {
    install_index_arc(data, Arc::new(def));
}

fn install_index_arc(data: &mut TableData, def: Arc<IndexDef>) {
    let mut shards: Vec<BTreeMap<SortKey, Datum>> = (0..SHARDS).map(|_| BTreeMap::new()).collect();
    for (s, map) in data.shards.iter().enumerate() {
        for (pk, doc) in map {
            for k in def.keys_of(doc) {
                shards[s].insert((k, pk.clone()), doc.clone());
            }
        }
    }
    data.indexes
        .insert(def.name.clone(), SecondaryIndex { def, shards });
}

fn index_record(table: &Uuid, def: &IndexDef) -> String {
    serde_json::json!({
        "op": "index_create",
        "table": table.to_string(),
        "name": def.name,
        "multi": def.multi,
        "geo": def.geo,
        "func": def.func_json,
        "query": def.query,
        "blob": def.blob,
    })
    .to_string()
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

fn notify(data: &mut TableData, pk: &Datum, old: &Option<Datum>, new: &Option<Datum>) {
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

// ------------------------------------------------------------------ catalog

#[derive(Clone, Debug)]
pub struct DbInfo {
    pub id: Uuid,
    pub name: String,
}

/// Databases and tables by name. A name normally maps to one table, but as
/// on a real RethinkDB two creations of the same name that overlap in time
/// both succeed (see [`Store::table_create`]), so a name holds a list.
#[derive(Default)]
struct Catalog {
    dbs: BTreeMap<String, DbInfo>,
    tables: BTreeMap<(String, String), Vec<Arc<Table>>>,
}

impl Catalog {
    fn all_tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.values().flatten()
    }

    fn named(&self, db: &str, name: &str) -> &[Arc<Table>] {
        self.tables
            .get(&(db.to_string(), name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn insert(&mut self, table: Arc<Table>) {
        self.tables
            .entry((table.db.clone(), table.name.clone()))
            .or_default()
            .push(table);
    }

    fn find_id(&self, id: Uuid) -> Option<Arc<Table>> {
        self.all_tables().find(|t| t.id == id).cloned()
    }

    fn remove_id(&mut self, id: Uuid) -> Option<Arc<Table>> {
        let key = self
            .tables
            .iter()
            .find(|(_, ts)| ts.iter().any(|t| t.id == id))
            .map(|(k, _)| k.clone())?;
        let list = self.tables.get_mut(&key)?;
        let at = list.iter().position(|t| t.id == id)?;
        let table = list.remove(at);
        if list.is_empty() {
            self.tables.remove(&key);
        }
        Some(table)
    }

    fn remove_db(&mut self, db: &str) -> Vec<Arc<Table>> {
        let keys: Vec<_> = self
            .tables
            .keys()
            .filter(|(d, _)| d == db)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.tables.remove(&k))
            .flatten()
            .collect()
    }
}

/// The system database every RethinkDB server has. Its tables are not available
/// here, but its name is reserved as on a real server.
pub const SYSTEM_DB: &str = "rethinkdb";

pub const SYSTEM_TABLES: &[&str] = &[
    "cluster_config",
    "current_issues",
    "db_config",
    "jobs",
    "logs",
    "permissions",
    "server_config",
    "server_status",
    "stats",
    "table_config",
    "table_status",
    "users",
];

pub struct Store {
    catalog: RwLock<Catalog>,
    log: OnceLock<Arc<Log>>,
    compiler: IndexCompiler,
}

pub struct TableSpec<'a> {
    pub primary_key: &'a str,
    pub durability: Durability,
}

impl Store {
    /// An in-memory store, or one that loads from and logs to `dir`.
    pub fn open(
        dir: Option<&Path>,
        compiler: IndexCompiler,
        compact_bytes: u64,
    ) -> Result<Arc<Store>, ServerError> {
        let store = Arc::new(Store {
            catalog: RwLock::new(Catalog::default()),
            log: OnceLock::new(),
            compiler,
        });
        let Some(dir) = dir else {
            store.create_default_db();
            return Ok(store);
        };
        let replayed = wal::replay(dir, &mut |rec| store.apply_record(rec))?;
        store.rebuild_indexes();
        let next = replayed.next;
        // Every start begins a new log file; fold them into a snapshot before
        // they pile up across restarts.
        if replayed.log_files > 8 || replayed.log_bytes > compact_bytes {
            if let Err(e) = wal::write_snapshot(dir, next, &*store) {
                ::log::warn!("cannot compact {}: {e}", dir.display());
            }
        }
        let source: Arc<dyn SnapshotSource> = store.clone();
        let weak: Weak<dyn SnapshotSource> = Arc::downgrade(&source);
        let log = Log::start(dir, next, weak, compact_bytes)?;
        let _ = store.log.set(log);
        // Tables loaded from disk were created before the log existed.
        store.attach_log();
        if !replayed.had_data {
            store.create_default_db_logged();
        }
        Ok(store)
    }

    fn attach_log(&self) {
        let Some(log) = self.log.get() else { return };
        for t in self.catalog.read().all_tables() {
            let _ = t.log.set(log.clone());
        }
    }

    fn create_default_db(&self) {
        let mut cat = self.catalog.write();
        cat.dbs.insert(
            "test".into(),
            DbInfo {
                id: Uuid::new_v4(),
                name: "test".into(),
            },
        );
    }

    fn create_default_db_logged(&self) {
        let _ = self.db_create("test");
    }

    pub async fn wait_durable(&self, seq: u64) -> Result<()> {
        match self.log.get() {
            Some(log) if seq > 0 => log.wait_durable(seq).await.map_err(ReqlError::internal),
            _ => Ok(()),
        }
    }

    pub fn close(&self) {
        if let Some(log) = self.log.get() {
            log.close();
        }
    }

    fn log_catalog(&self, payload: serde_json::Value) -> u64 {
        match self.log.get() {
            Some(log) => log.append(&payload.to_string(), true),
            None => 0,
        }
    }

    pub fn db_list(&self) -> Vec<String> {
        let cat = self.catalog.read();
        let mut names: Vec<String> = cat.dbs.keys().cloned().collect();
        names.push(SYSTEM_DB.to_string());
        names.sort();
        names
    }

    pub fn db(&self, name: &str) -> Result<DbInfo> {
        if name == SYSTEM_DB {
            return Ok(DbInfo {
                id: Uuid::nil(),
                name: SYSTEM_DB.into(),
            });
        }
        self.catalog
            .read()
            .dbs
            .get(name)
            .cloned()
            .ok_or_else(|| ReqlError::op_failed(format!("Database `{name}` does not exist.")))
    }

    /// Returns the new database and the log position of its creation.
    pub fn db_create(&self, name: &str) -> Result<(DbInfo, u64)> {
        let mut cat = self.catalog.write();
        if name == SYSTEM_DB || cat.dbs.contains_key(name) {
            return Err(ReqlError::op_failed(format!(
                "Database `{name}` already exists."
            )));
        }
        let info = DbInfo {
            id: Uuid::new_v4(),
            name: name.to_string(),
        };
        let seq = self.log_catalog(
            serde_json::json!({"op": "db_create", "id": info.id.to_string(), "name": name}),
        );
        cat.dbs.insert(name.to_string(), info.clone());
        Ok((info, seq))
    }

    pub fn db_drop(&self, name: &str) -> Result<(DbInfo, Vec<Arc<Table>>, u64)> {
        if name == SYSTEM_DB {
            return Err(ReqlError::op_failed(format!(
                "Database `{name}` is special; you can't delete it."
            )));
        }
        let mut cat = self.catalog.write();
        let info = cat
            .dbs
            .remove(name)
            .ok_or_else(|| ReqlError::op_failed(format!("Database `{name}` does not exist.")))?;
        let dropped = cat.remove_db(name);
        for t in &dropped {
            t.mark_dropped();
        }
        let seq = self.log_catalog(serde_json::json!({"op": "db_drop", "id": info.id.to_string()}));
        Ok((info, dropped, seq))
    }

    pub fn table_list(&self, db: &str) -> Result<Vec<String>> {
        if db == SYSTEM_DB {
            return Ok(SYSTEM_TABLES.iter().map(|s| s.to_string()).collect());
        }
        let cat = self.catalog.read();
        if !cat.dbs.contains_key(db) {
            return Err(ReqlError::op_failed(format!(
                "Database `{db}` does not exist."
            )));
        }
        // A name held by several tables is listed once, as RethinkDB does.
        Ok(cat
            .tables
            .keys()
            .filter(|(d, _)| d == db)
            .map(|(_, t)| t.clone())
            .collect())
    }

    pub fn tables_of(&self, db: &str) -> Vec<Arc<Table>> {
        let cat = self.catalog.read();
        cat.all_tables().filter(|t| t.db == db).cloned().collect()
    }

    /// Every table of every database, in name order, duplicates included.
    pub fn all_tables(&self) -> Vec<Arc<Table>> {
        self.catalog.read().all_tables().cloned().collect()
    }

    /// Every database but the system one, in name order.
    pub fn all_dbs(&self) -> Vec<DbInfo> {
        self.catalog.read().dbs.values().cloned().collect()
    }

    pub fn table(&self, db: &str, name: &str) -> Result<Arc<Table>> {
        let cat = self.catalog.read();
        if !cat.dbs.contains_key(db) {
            return Err(ReqlError::op_failed(format!(
                "Database `{db}` does not exist."
            )));
        }
        match cat.named(db, name) {
            [table] => Ok(table.clone()),
            [] => Err(ReqlError::op_failed(format!(
                "Table `{db}.{name}` does not exist."
            ))),
            _ => Err(ambiguous(db, name)),
        }
    }

    /// The first half of a table creation: checks the name and builds the
    /// table, which stays invisible until [`Store::commit_table`].
    ///
    /// RethinkDB checks the name against the tables it knows of and only then,
    /// after a round of cluster metadata, makes the new table visible. Two
    /// creations of one name that overlap in that window both succeed and leave
    /// two tables, after which every query on the name fails as ambiguous. The
    /// caller reproduces the window by waiting between the two halves.
    pub fn table_create(&self, db: &str, name: &str, spec: TableSpec<'_>) -> Result<Arc<Table>> {
        let cat = self.catalog.read();
        if db == SYSTEM_DB {
            return Err(ReqlError::op_failed(format!(
                "Table `{db}.{name}` already exists."
            )));
        }
        let db_info = cat
            .dbs
            .get(db)
            .cloned()
            .ok_or_else(|| ReqlError::op_failed(format!("Database `{db}` does not exist.")))?;
        if !cat.named(db, name).is_empty() {
            return Err(ReqlError::op_failed(format!(
                "Table `{db}.{name}` already exists."
            )));
        }
        Ok(Arc::new(Table {
            id: Uuid::new_v4(),
            db_id: db_info.id,
            db: db.to_string(),
            name: name.to_string(),
            primary_key: spec.primary_key.to_string(),
            durability: spec.durability,
            data: RwLock::new(TableData::new()),
            log: match self.log.get() {
                Some(l) => OnceLock::from(l.clone()),
                None => OnceLock::new(),
            },
            system: None,
        }))
    }

    /// Makes a table from [`Store::table_create`] visible, whatever was created
    /// under its name meanwhile. Returns the log position of the creation.
    pub fn commit_table(&self, table: Arc<Table>) -> Result<u64> {
        let mut cat = self.catalog.write();
        if !cat.dbs.values().any(|d| d.id == table.db_id) {
            return Err(ReqlError::op_failed(format!(
                "Database `{}` does not exist.",
                table.db
            )));
        }
        let seq = self.log_catalog(serde_json::json!({
            "op": "table_create",
            "id": table.id.to_string(),
            "db": table.db_id.to_string(),
            "name": table.name,
            "primary_key": table.primary_key,
            "durability": table.durability.name(),
        }));
        cat.insert(table);
        Ok(seq)
    }

    pub fn table_drop(&self, db: &str, name: &str) -> Result<(Arc<Table>, u64)> {
        let id = self.table(db, name)?.id;
        self.table_drop_id(id)?
            .ok_or_else(|| ReqlError::op_failed(format!("Table `{db}.{name}` does not exist.")))
    }

    /// Drops the table with this id (what deleting its `table_config` row
    /// does). `None` if there is no such table.
    pub fn table_drop_id(&self, id: Uuid) -> Result<Option<(Arc<Table>, u64)>> {
        let mut cat = self.catalog.write();
        let Some(table) = cat.remove_id(id) else {
            return Ok(None);
        };
        table.mark_dropped();
        let seq =
            self.log_catalog(serde_json::json!({"op": "table_drop", "id": table.id.to_string()}));
        Ok(Some((table, seq)))
    }

    /// Drops the database with this id and its tables (what deleting its
    /// `db_config` row does). `None` if there is no such database.
    pub fn db_drop_id(&self, id: Uuid) -> Result<Option<(DbInfo, Vec<Arc<Table>>, u64)>> {
        let name = self
            .catalog
            .read()
            .dbs
            .values()
            .find(|d| d.id == id)
            .map(|d| d.name.clone());
        match name {
            Some(name) => self.db_drop(&name).map(Some),
            None => Ok(None),
        }
    }

    pub fn compile_index(&self, func: &serde_json::Value) -> Result<KeyFn, String> {
        (self.compiler)(func)
    }

    // -------------------------------------------------------------- replay

    fn find_table(cat: &Catalog, id: &str) -> Option<Arc<Table>> {
        cat.find_id(Uuid::parse_str(id).ok()?)
    }

    /// Applies one logged record while loading a data directory. Documents go
    /// straight into their shard; indexes are rebuilt once at the end.
    fn apply_record(&self, payload: &[u8]) {
        if payload.starts_with(b"{\"op\":\"put\"") {
            #[derive(serde::Deserialize)]
            struct Put {
                table: String,
                key: Datum,
                doc: Datum,
            }
            match serde_json::from_slice::<Put>(payload) {
                Ok(p) => self.replay_put(&p.table, p.key, p.doc),
                Err(e) => ::log::warn!("skipping an unreadable logged write: {e}"),
            }
            return;
        }
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(rec) => self.apply_catalog_record(&rec),
            Err(e) => ::log::warn!("skipping an unreadable log record: {e}"),
        }
    }

    fn replay_put(&self, table: &str, key: Datum, doc: Datum) {
        let Ok(id) = Uuid::parse_str(table) else {
            return;
        };
        let Some(t) = self.catalog.read().find_id(id) else {
            // A write to a table dropped later in the log.
            return;
        };
        let Ok(bytes) = primary_key_bytes(&key) else {
            return;
        };
        let shard = shard_of(&bytes);
        let mut data = t.data.write();
        match doc {
            Datum::Null => {
                data.shards[shard].remove(&key);
            }
            d => {
                data.shards[shard].insert(key, d);
            }
        }
    }

    /// Builds every index from the documents loaded by a replay.
    fn rebuild_indexes(&self) {
        let tables = self.all_tables();
        for t in tables {
            let mut data = t.data.write();
            let defs = data.index_defs();
            for def in defs {
                data.indexes.remove(&def.name);
                install_index_arc(&mut data, def);
            }
        }
    }

    fn apply_catalog_record(&self, rec: &serde_json::Value) {
        let s = |k: &str| {
            rec.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let uuid = |k: &str| Uuid::parse_str(&s(k)).unwrap_or_else(|_| Uuid::nil());
        let mut cat = self.catalog.write();
        match s("op").as_str() {
            "db_create" => {
                let name = s("name");
                cat.dbs.insert(
                    name.clone(),
                    DbInfo {
                        id: uuid("id"),
                        name,
                    },
                );
            }
            "db_drop" => {
                let id = uuid("id");
                if let Some(name) = cat
                    .dbs
                    .values()
                    .find(|d| d.id == id)
                    .map(|d| d.name.clone())
                {
                    cat.dbs.remove(&name);
                    cat.remove_db(&name);
                }
            }
            "table_create" => {
                let db_id = uuid("db");
                let Some(db) = cat.dbs.values().find(|d| d.id == db_id).cloned() else {
                    return;
                };
                let name = s("name");
                let table = Arc::new(Table {
                    id: uuid("id"),
                    db_id,
                    db: db.name.clone(),
                    name: name.clone(),
                    primary_key: s("primary_key"),
                    durability: Durability::parse(&s("durability")).unwrap_or(Durability::Hard),
                    data: RwLock::new(TableData::new()),
                    log: OnceLock::new(),
                    system: None,
                });
                cat.insert(table);
            }
            "table_drop" => {
                cat.remove_id(uuid("id"));
            }
            "index_create" => {
                let Some(t) = Self::find_table(&cat, &s("table")) else {
                    return;
                };
                let func = rec.get("func").cloned().unwrap_or(serde_json::Value::Null);
                let keys = match self.compile_index(&func) {
                    Ok(k) => k,
                    Err(e) => {
                        ::log::warn!("cannot rebuild index {}: {e}", s("name"));
                        return;
                    }
                };
                let def = IndexDef {
                    name: s("name"),
                    multi: rec.get("multi").and_then(|v| v.as_bool()).unwrap_or(false),
                    geo: rec.get("geo").and_then(|v| v.as_bool()).unwrap_or(false),
                    func_json: func,
                    query: s("query"),
                    blob: s("blob"),
                    keys,
                };
                let mut data = t.data.write();
                let shards = (0..SHARDS).map(|_| BTreeMap::new()).collect();
                data.indexes.insert(
                    def.name.clone(),
                    SecondaryIndex {
                        def: Arc::new(def),
                        shards,
                    },
                );
            }
            "index_drop" => {
                let Some(t) = Self::find_table(&cat, &s("table")) else {
                    return;
                };
                t.data.write().indexes.remove(&s("name"));
            }
            "index_rename" => {
                let Some(t) = Self::find_table(&cat, &s("table")) else {
                    return;
                };
                let mut data = t.data.write();
                let to = s("to");
                data.indexes.remove(&to);
                rename_index(&mut data, &s("from"), &to);
            }
            other => ::log::warn!("unknown log record `{other}`"),
        }
    }
}

impl SnapshotSource for Store {
    fn dump(&self, sink: &mut dyn FnMut(&str)) {
        let (dbs, tables) = {
            let cat = self.catalog.read();
            (
                cat.dbs.values().cloned().collect::<Vec<_>>(),
                cat.all_tables().cloned().collect::<Vec<_>>(),
            )
        };
        for db in &dbs {
            sink(
                &serde_json::json!({"op": "db_create", "id": db.id.to_string(), "name": db.name})
                    .to_string(),
            );
        }
        for t in &tables {
            sink(
                &serde_json::json!({
                    "op": "table_create",
                    "id": t.id.to_string(),
                    "db": t.db_id.to_string(),
                    "name": t.name,
                    "primary_key": t.primary_key,
                    "durability": t.durability.name(),
                })
                .to_string(),
            );
            let (defs, shards) = {
                let data = t.read();
                (data.index_defs(), data.shards.clone())
            };
            for d in defs {
                sink(&index_record(&t.id, &d));
            }
            let id = t.id.to_string();
            for map in &shards {
                for (k, v) in map {
                    sink(&wal::put_record(&id, k, Some(v)));
                }
            }
        }
    }
}
