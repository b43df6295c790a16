//! Term evaluation: turns a checked term tree into a value, a lazy sequence or a
//! changefeed, applying writes to the store on the way.
//!
//! [`Evaluator::eval`] (in `dispatch`) sends each term type to the file of its
//! family, grouped as in RethinkDB's API reference:
//!
//! - `control`: variables, function calls, `branch`, `default`, `error`,
//!   `range`, `json`, `binary`, `typeOf`, `coerceTo`
//! - `math`: comparisons, logic and arithmetic
//! - `strings` and `time`: string manipulation, dates and times
//! - `documents`: field access, `pluck`, `merge`, `keys`, `literal`, `object`
//! - `selecting`: `db`, `table`, `get`, `getAll`, `between`, `filter`
//! - `transform`: `map`, `orderBy`, `skip`, `limit`, `slice`, `nth`, `union`
//! - `aggregation`: `group`, `reduce`, `count`, `sum`, `min`, `distinct`, `contains`
//! - `changes`, `write` and `admin`: changefeeds, writes, databases and tables
//!
//! The evaluation context is in `context`, the values terms evaluate to in
//! `values`, argument reading in `args`, operations on plain values in [`ops`]
//! and lazy sequences in [`seq`].

mod admin;
mod aggregation;
mod args;
mod changes;
mod context;
mod control;
mod dispatch;
mod documents;
mod math;
pub mod ops;
mod selecting;
pub mod seq;
mod strings;
mod time;
mod transform;
mod values;
mod write;

pub use self::admin::admin_compiler;
pub use self::context::{QueryCtx, Shared, DEFAULT_ARRAY_LIMIT, MAX_DEPTH};
pub use self::dispatch::Evaluator;
pub(crate) use self::values::table_of;
use self::values::val_kind;
pub use self::values::{to_seq, Bound, Env, FuncLike, FuncVal, Single, Val};
