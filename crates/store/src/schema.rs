//! Schema set-up that is safe when any number of processes start at once.
//!
//! RethinkDB has no name lock on `tableCreate`: two creations of one name that
//! overlap both succeed, and the database then holds two tables of that name,
//! on which every query fails as "ambiguous". (Databases can be doubled the
//! same way across the nodes of a cluster.) So set-up reads the catalog from
//! `rethinkdb.table_config` and `rethinkdb.db_config` rather than trusting
//! `tableCreate`, and repairs what it finds:
//!
//! 1. Missing databases and tables are created; losing a creation race
//!    ("already exists") counts as success.
//! 2. Where a name is held twice, every process keeps the same one (the table
//!    with the most secondary indexes, then the smallest id; for a database,
//!    the one holding the most tables) and deletes the others' catalog rows,
//!    the repair RethinkDB documents. Secondary indexes are only ever built on
//!    a table that was alone under its name, so an index marks the table that
//!    may already hold data.
//! 3. Indexes are created only once the catalog has been seen unchanged over a
//!    settling interval longer than a creation takes, so that no creation
//!    still under way elsewhere can add a duplicate afterwards.
//!
//! A schema whose tables are each present once, with every index, is ready at
//! once: that is the path of every start but the first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::reql;
use crate::{
    Store, StoreError, BOARDS, BOARD_INDEX, BOARD_PREV_INDEX, BOARD_RANK_INDEX, BOARD_SCORE_INDEX,
    LEASES, PERIODS, PERIOD_INDEX, PLAYERS, RANKS, RANKS_BOARD_INDEX, RESET_DUE_INDEX, SLOT_INDEX,
};
use serde::Deserialize;
use serde_json::Value;

/// The shortest settling interval; it also covers a creation that overlapped
/// ours but was slower to become visible.
const MIN_SETTLE: Duration = Duration::from_millis(1000);

/// Rounds of repair before set-up gives up (and its caller retries later).
const MAX_ROUNDS: usize = 20;

/// How set-up lays out the tables it creates on a cluster: `TABLE_REPLICAS`
/// copies of each of `TABLE_SHARDS` shards, each from 1 to 64. Tables that
/// exist keep their layout; [`Store::reconfigure`] changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Copies of each shard (`TABLE_REPLICAS`), 1 to [`Self::MAX`].
    pub replicas: u8,
    /// Shards of each table (`TABLE_SHARDS`), 1 to [`Self::MAX`].
    pub shards: u8,
}

impl SchemaOptions {
    /// The most replicas or shards RethinkDB allows.
    pub const MAX: u8 = 64;
}

impl Default for SchemaOptions {
    /// One replica of one shard: RethinkDB's own default, and all a single
    /// server can hold.
    fn default() -> Self {
        Self {
            replicas: 1,
            shards: 1,
        }
    }
}

/// A table the schema needs, and its secondary indexes.
struct TableSpec {
    name: &'static str,
    indexes: &'static [&'static str],
}

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: BOARDS,
        indexes: &[SLOT_INDEX, RESET_DUE_INDEX],
    },
    TableSpec {
        name: LEASES,
        indexes: &[],
    },
    TableSpec {
        name: PLAYERS,
        indexes: &[
            BOARD_SCORE_INDEX,
            BOARD_INDEX,
            SLOT_INDEX,
            BOARD_PREV_INDEX,
            BOARD_RANK_INDEX,
        ],
    },
    TableSpec {
        name: PERIODS,
        indexes: &[PERIOD_INDEX],
    },
    TableSpec {
        name: RANKS,
        indexes: &[RANKS_BOARD_INDEX],
    },
];

/// One row of `rethinkdb.table_config`, as much of it as set-up reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct TableRow {
    id: String,
    name: String,
    #[serde(default)]
    indexes: Vec<String>,
}

/// One row of `rethinkdb.db_config`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct DbRow {
    id: String,
}

/// What one look at the catalog calls for.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Every table is there once, with every index.
    Ready,
    /// Tables to create.
    Create(Vec<&'static str>),
    /// Catalog rows (table ids) to delete, so each name is held once.
    Dedupe(Vec<String>),
    /// Every table is there once, but indexes are missing.
    Index,
}

/// Which of the tables holding one name survives: the one with the most
/// indexes (it may hold data), then the smallest id, so that every process
/// makes the same choice.
fn keeper(rows: &[&TableRow]) -> Option<String> {
    rows.iter()
        .max_by(|a, b| {
            a.indexes
                .len()
                .cmp(&b.indexes.len())
                .then_with(|| b.id.cmp(&a.id))
        })
        .map(|row| row.id.clone())
}

fn plan(rows: &[TableRow]) -> Plan {
    let mut by_name: BTreeMap<&str, Vec<&TableRow>> = BTreeMap::new();
    for row in rows {
        by_name.entry(row.name.as_str()).or_default().push(row);
    }
    let missing: Vec<&'static str> = TABLES
        .iter()
        .map(|t| t.name)
        .filter(|name| !by_name.contains_key(name))
        .collect();
    if !missing.is_empty() {
        return Plan::Create(missing);
    }
    let mut doomed = Vec::new();
    for spec in TABLES {
        let held = &by_name[spec.name];
        if held.len() > 1 {
            let keep = keeper(held);
            doomed.extend(
                held.iter()
                    .filter(|row| Some(&row.id) != keep.as_ref())
                    .map(|row| row.id.clone()),
            );
        }
    }
    if !doomed.is_empty() {
        return Plan::Dedupe(doomed);
    }
    let indexed = TABLES.iter().all(|spec| {
        let row = by_name[spec.name][0];
        spec.indexes
            .iter()
            .all(|i| row.indexes.iter().any(|have| have == i))
    });
    if indexed {
        Plan::Ready
    } else {
        Plan::Index
    }
}

/// RethinkDB's answer when a concurrent creator won the race.
fn already_exists(err: &StoreError) -> bool {
    err.to_string().contains("already exists")
}

fn tolerate(result: Result<Vec<Value>, StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn decode_rows<T: for<'de> Deserialize<'de>>(values: Vec<Value>) -> Result<Vec<T>, StoreError> {
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| StoreError::Decode(e.to_string())))
        .collect()
}

impl Store {
    /// Creates the database, the `boards` and `players` tables and the
    /// players' `board_score` and `board` indexes, whichever are missing,
    /// repairs a name held by two tables or two databases, then waits until
    /// the tables and indexes are ready.
    ///
    /// Safe to run from any number of processes at the same moment, on one
    /// node or a cluster; see the module documentation for how.
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        let db = self.url().db.clone();
        // The longest creation seen, which bounds how long another process's
        // overlapping creation can take to show.
        let mut slowest = Duration::ZERO;
        let mut settled: Option<Vec<TableRow>> = None;
        for _ in 0..MAX_ROUNDS {
            self.ensure_database(&db, &mut slowest).await?;
            let rows = self.table_rows(&db).await?;
            match plan(&rows) {
                Plan::Ready => {
                    for spec in TABLES {
                        self.run(reql::table_wait(&db, spec.name)).await?;
                    }
                    for spec in TABLES.iter().filter(|spec| !spec.indexes.is_empty()) {
                        self.run(reql::index_wait(&db, spec.name)).await?;
                    }
                    return Ok(());
                }
                Plan::Create(names) => {
                    for name in names {
                        let started = Instant::now();
                        let layout = self.pool().options().schema;
                        tolerate(
                            self.run(reql::table_create_laid_out(&db, name, layout))
                                .await,
                        )?;
                        slowest = slowest.max(started.elapsed());
                    }
                    settled = None;
                }
                Plan::Dedupe(ids) => {
                    for id in ids {
                        log::warn!(
                            "database `{db}`: deleting table {id}, a duplicate left by concurrent creation"
                        );
                        self.run(reql::delete_table_config(&id)).await?;
                    }
                    settled = None;
                }
                Plan::Index if settled.as_ref() == Some(&rows) => {
                    self.create_indexes(&db, &rows).await?;
                }
                Plan::Index => {
                    // Indexes go only on tables that stayed alone under their
                    // names for longer than any creation takes.
                    tokio::time::sleep(MIN_SETTLE.max(slowest * 3)).await;
                    settled = Some(rows);
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "the schema of `{db}` did not settle after {MAX_ROUNDS} rounds"
        )))
    }

    /// Creates the database if it is missing and, if a cluster has doubled
    /// it, keeps the copy that holds the most tables.
    async fn ensure_database(&self, db: &str, slowest: &mut Duration) -> Result<(), StoreError> {
        let rows: Vec<DbRow> = decode_rows(self.run(reql::db_config_named(db)).await?)?;
        match rows.len() {
            1 => Ok(()),
            0 => {
                let started = Instant::now();
                tolerate(self.run(reql::db_create(db)).await)?;
                *slowest = (*slowest).max(started.elapsed());
                Ok(())
            }
            _ => {
                let mut counted = Vec::with_capacity(rows.len());
                for row in rows {
                    let count = self
                        .run(reql::table_count_of_db_id(&row.id))
                        .await?
                        .first()
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    counted.push((count, row.id));
                }
                // Most tables first, then the smallest id.
                counted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                for (_, id) in counted.into_iter().skip(1) {
                    log::warn!(
                        "deleting database {id}, a duplicate `{db}` left by concurrent creation"
                    );
                    self.run(reql::delete_db_config(&id)).await?;
                }
                Ok(())
            }
        }
    }

    /// Sets the replicas and shards of every table, as
    /// `leaderboard-web reconfigure` does, and returns RethinkDB's answer for
    /// each table (`{reconfigured, config_changes, status_changes}`).
    pub async fn reconfigure(&self, layout: SchemaOptions) -> Result<Vec<Value>, StoreError> {
        let db = self.url().db.clone();
        let mut answers = Vec::with_capacity(TABLES.len());
        for spec in TABLES {
            let answer = self
                .run(reql::table_reconfigure(&db, spec.name, layout))
                .await?;
            answers.extend(answer);
        }
        Ok(answers)
    }

    async fn table_rows(&self, db: &str) -> Result<Vec<TableRow>, StoreError> {
        let mut rows: Vec<TableRow> = decode_rows(self.run(reql::table_config_of(db)).await?)?;
        // Scan order is not defined; comparisons between looks need one.
        rows.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(rows)
    }

    async fn create_indexes(&self, db: &str, rows: &[TableRow]) -> Result<(), StoreError> {
        let has = |table: &str, index: &str| {
            rows.iter()
                .any(|row| row.name == table && row.indexes.iter().any(|i| i == index))
        };
        for spec in TABLES {
            for index in spec.indexes {
                if !has(spec.name, index) {
                    let create = reql::create_index(db, spec.name, index);
                    tolerate(self.run(create).await)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str, indexes: &[&str]) -> TableRow {
        TableRow {
            id: id.into(),
            name: name.into(),
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn an_empty_database_needs_every_table() {
        assert_eq!(
            plan(&[]),
            Plan::Create(vec![BOARDS, LEASES, PLAYERS, PERIODS, RANKS])
        );
    }

    #[test]
    fn a_complete_schema_is_ready() {
        let rows = [
            row("1", BOARDS, &[SLOT_INDEX, RESET_DUE_INDEX]),
            row("3", LEASES, &[]),
            row(
                "2",
                PLAYERS,
                &[
                    BOARD_INDEX,
                    BOARD_SCORE_INDEX,
                    SLOT_INDEX,
                    BOARD_PREV_INDEX,
                    BOARD_RANK_INDEX,
                ],
            ),
            row("4", PERIODS, &[PERIOD_INDEX]),
            row("5", RANKS, &[RANKS_BOARD_INDEX]),
        ];
        assert_eq!(plan(&rows), Plan::Ready);
    }

    #[test]
    fn missing_indexes_wait_for_a_settled_catalog() {
        let rows = [
            row("1", BOARDS, &[SLOT_INDEX, RESET_DUE_INDEX]),
            row("3", LEASES, &[]),
            row("2", PLAYERS, &[BOARD_INDEX]),
            row("4", PERIODS, &[PERIOD_INDEX]),
            row("5", RANKS, &[RANKS_BOARD_INDEX]),
        ];
        assert_eq!(plan(&rows), Plan::Index);
        // A schema of an earlier release, without the slot and reset
        // indexes, gets them the same way.
        let rows = [
            row("1", BOARDS, &[]),
            row("3", LEASES, &[]),
            row("2", PLAYERS, &[BOARD_INDEX, BOARD_SCORE_INDEX]),
            row("4", PERIODS, &[]),
            row("5", RANKS, &[]),
        ];
        assert_eq!(plan(&rows), Plan::Index);
    }

    #[test]
    fn duplicates_keep_the_indexed_table_then_the_smallest_id() {
        let rows = [
            row("a", BOARDS, &[]),
            row("b", BOARDS, &[]),
            row("c", PLAYERS, &[]),
            row("d", PLAYERS, &[BOARD_INDEX]),
            row("e", PLAYERS, &[]),
            row("f", LEASES, &[]),
            row("g", PERIODS, &[]),
            row("h", RANKS, &[]),
        ];
        assert_eq!(
            plan(&rows),
            Plan::Dedupe(vec!["b".into(), "c".into(), "e".into()])
        );
    }

    #[test]
    fn every_process_picks_the_same_keeper_whatever_the_order() {
        let a = row("7f", PLAYERS, &[]);
        let b = row("3c", PLAYERS, &[]);
        assert_eq!(keeper(&[&a, &b]), keeper(&[&b, &a]));
        assert_eq!(keeper(&[&a, &b]).as_deref(), Some("3c"));
    }

    #[test]
    fn the_default_layout_sends_the_plain_table_create() {
        let term = |c: reql_terms::Term| serde_json::to_value(&c).expect("serialises");
        assert_eq!(
            term(reql::table_create_laid_out(
                "lb",
                "t",
                SchemaOptions::default()
            )),
            term(reql::table_create("lb", "t"))
        );
        let laid_out = term(reql::table_create_laid_out(
            "lb",
            "t",
            SchemaOptions {
                replicas: 3,
                shards: 2,
            },
        ));
        let options = laid_out.as_array().and_then(|a| a.get(2)).cloned();
        assert_eq!(
            options,
            Some(serde_json::json!({"replicas": 3, "shards": 2})),
            "{laid_out}"
        );
        let reconfigure = term(reql::table_reconfigure(
            "lb",
            "t",
            SchemaOptions {
                replicas: 3,
                shards: 2,
            },
        ));
        let options = reconfigure.as_array().and_then(|a| a.get(2)).cloned();
        assert_eq!(
            options,
            Some(serde_json::json!({"replicas": 3, "shards": 2})),
            "{reconfigure}"
        );
    }
}
