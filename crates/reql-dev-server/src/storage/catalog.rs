//! The catalog: databases and tables by name, and the `Store` that creates and drops them.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use uuid::Uuid;

use super::index::{IndexCompiler, KeyFn};
use super::table::{Durability, Table, TableData};
use super::wal::Log;
use crate::error::{ReqlError, Result};

#[derive(Clone, Debug)]
pub struct DbInfo {
    pub id: Uuid,
    pub name: String,
}

/// A dropped database, the tables dropped with it, and the log position of
/// the drop.
pub type DroppedDb = (DbInfo, Vec<Arc<Table>>, u64);

/// Databases and tables by name. A name normally maps to one table, but as
/// on a real RethinkDB two creations of the same name that overlap in time
/// both succeed (see [`Store::table_create`]), so a name holds a list.
#[derive(Default)]
pub(super) struct Catalog {
    pub(super) dbs: BTreeMap<String, DbInfo>,
    pub(super) tables: BTreeMap<(String, String), Vec<Arc<Table>>>,
}

impl Catalog {
    pub(super) fn all_tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.values().flatten()
    }

    fn named(&self, db: &str, name: &str) -> &[Arc<Table>] {
        self.tables
            .get(&(db.to_string(), name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub(super) fn insert(&mut self, table: Arc<Table>) {
        self.tables
            .entry((table.db.clone(), table.name.clone()))
            .or_default()
            .push(table);
    }

    pub(super) fn find_id(&self, id: Uuid) -> Option<Arc<Table>> {
        self.all_tables().find(|t| t.id == id).cloned()
    }

    pub(super) fn remove_id(&mut self, id: Uuid) -> Option<Arc<Table>> {
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

    pub(super) fn remove_db(&mut self, db: &str) -> Vec<Arc<Table>> {
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
    pub(super) catalog: RwLock<Catalog>,
    pub(super) log: OnceLock<Arc<Log>>,
    pub(super) compiler: IndexCompiler,
}

pub struct TableSpec<'a> {
    pub primary_key: &'a str,
    pub durability: Durability,
}

fn ambiguous(db: &str, name: &str) -> ReqlError {
    ReqlError::op_failed(format!(
        "Table `{db}.{name}` is ambiguous; there are multiple tables with that name."
    ))
}

impl Store {
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

    pub fn db_drop(&self, name: &str) -> Result<DroppedDb> {
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
    pub fn db_drop_id(&self, id: Uuid) -> Result<Option<DroppedDb>> {
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
}
