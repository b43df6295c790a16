//! Opening a store: replaying a data directory's log, and the snapshot it is compacted into.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::RwLock;
use uuid::Uuid;

use super::catalog::{Catalog, DbInfo, Store};
use super::index::{
    index_record, install_index_arc, rename_index, IndexCompiler, IndexDef, SecondaryIndex,
};
use super::table::{Durability, Table, TableData};
use super::wal::{self, Log, SnapshotSource};
use crate::datum::{primary_key_bytes, shard_of, Datum, SHARDS};
use crate::error::{Result, ServerError};

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
