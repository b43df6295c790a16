//! Databases, tables and their indexes, in memory, optionally backed by the
//! write-ahead log in [`wal`].
//!
//! A table is split into eight hash shards by primary key, as RethinkDB splits
//! it; each shard keeps its documents and its part of every secondary index in
//! ordered maps. Ordered reads merge the shards, unordered reads visit them in
//! turn, so clients see the same orders a real server gives. Secondary index
//! entries are `(index value, primary key)` pairs, so a range in index order costs
//! O(log n) to find and O(1) per document after that.
//!
//! - `table`: a table's shards, its reads and its writer
//! - `index`: secondary indexes and index ranges
//! - `notify`: changefeed registration and delivery
//! - `catalog`: databases and tables by name, the `Store`
//! - `recovery`: opening a data directory, replay and snapshots
//! - [`wal`]: the write-ahead log itself

mod catalog;
mod index;
mod notify;
mod recovery;
mod table;
pub mod wal;

pub use self::catalog::{DbInfo, Store, TableSpec, SYSTEM_DB, SYSTEM_TABLES};
pub use self::index::{IndexCompiler, IndexDef, KeyFn, ScanSpec};
pub use self::table::{Durability, Table, TableWriter};
