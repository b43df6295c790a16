//! Secondary indexes: definitions, key functions, index ranges (`ScanSpec`) and index changes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use uuid::Uuid;

use super::table::{Durability, Table, TableData};
use super::SYSTEM_DB;
use crate::datum::{valid_index_key, write_json_string, Datum, SHARDS};
use crate::error::{ReqlError, Result};
use crate::feed::SortKey;

pub type KeyFn = Arc<dyn Fn(&Datum) -> Vec<Datum> + Send + Sync>;

/// Compiles a stored index function (its raw term JSON) into a key function.
pub type IndexCompiler = Arc<dyn Fn(&serde_json::Value) -> Result<KeyFn, String> + Send + Sync>;

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
pub(super) struct SecondaryIndex {
    pub(super) def: Arc<IndexDef>,
    pub(super) shards: Vec<BTreeMap<SortKey, Datum>>,
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
pub(super) fn range_ok<T: Ord>(lo: &Bound<T>, hi: &Bound<T>) -> bool {
    match (lo, hi) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a < b,
    }
}

pub(super) fn sort_bounds(spec: &ScanSpec) -> (Bound<SortKey>, Bound<SortKey>) {
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

impl Table {
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
        // With `overwrite` only the source can be missing, and RethinkDB's
        // message then says only that.
        if overwrite && !data.indexes.contains_key(from) {
            return Err(ReqlError::op_failed(format!(
                "Index `{from}` does not exist on table `{}`.",
                self.full_name()
            )));
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
}

pub(super) fn rename_index(data: &mut TableData, from: &str, to: &str) {
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

pub(super) fn install_index_arc(data: &mut TableData, def: Arc<IndexDef>) {
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

pub(super) fn index_record(table: &Uuid, def: &IndexDef) -> String {
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
