//! RethinkDB query terms, built in their JSON wire form.
//!
//! A query is a tree of terms, each `[TYPE, [args...], {optargs}]` with the
//! term types of RethinkDB's `ql2.proto`. This crate builds that tree with
//! ReQL's own names (`r.table(..).get_all(..)`, `.filter(..)`, `.g(..)`),
//! and nothing else: [`reql-client`](../reql_client/index.html) sends a
//! [`Term`] as it serialises. It covers the commands the project sends, and
//! a command is added here when a query needs it.
//!
//! Values become terms through [`From`]: strings, numbers, booleans and
//! `serde_json` values as data (a JSON array becomes a `MAKE_ARRAY` term, as
//! the protocol wants, and an object's values are terms in turn), vectors
//! and arrays of terms as `MAKE_ARRAY`. [`term!`] writes a JSON-like literal
//! whose leaves are terms, and [`func!`] a ReQL function.
//!
//! ```
//! use reql_terms::{func, r, term};
//!
//! let top = r
//!     .table("players")
//!     .between(term!(["b1", r.minval()]), term!(["b1", r.maxval()]))
//!     .opt("index", "board_score")
//!     .order_by_index(r.desc("board_score"))
//!     .limit(5)
//!     .map(func!(|p| term!({ "player": p.clone().g("player"), "score": p.g("score") })));
//! let wire = serde_json::to_value(&top).unwrap();
//! assert_eq!(wire[0], 38); // MAP
//! assert_eq!(wire[1][0][0], 71); // LIMIT
//! ```
#![warn(missing_docs)]
// ReQL's command names (`add`, `eq`, `not`, `default`...) build terms; they
// are not the arithmetic and comparison of `Term` values the std traits mean.
#![allow(clippy::should_implement_trait)]

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

mod types;
use types::*;

/// A ReQL term, held as its JSON wire form.
#[derive(Debug, Clone, PartialEq)]
pub struct Term(Value);

impl Term {
    /// A command term: `[type]`, or `[type, [args...]]` when it has
    /// arguments.
    fn command(typ: u32, args: Vec<Term>) -> Term {
        if args.is_empty() {
            Term(Value::Array(vec![typ.into()]))
        } else {
            let args = args.into_iter().map(|a| a.0).collect();
            Term(Value::Array(vec![typ.into(), Value::Array(args)]))
        }
    }

    /// `typ` applied to `self` and `args`: the method-call form
    /// `self.command(args...)`.
    fn call(self, typ: u32, args: impl IntoIterator<Item = Term>) -> Term {
        let mut all = vec![self];
        all.extend(args);
        Term::command(typ, all)
    }

    /// The array term of `items`.
    pub fn array(items: impl IntoIterator<Item = Term>) -> Term {
        let items = items.into_iter().map(|t| t.0).collect();
        // Always `[2, [...]]`, even empty: `[2]` would be the same array,
        // but this is the form the recorded queries hold.
        Term(Value::Array(vec![MAKE_ARRAY.into(), Value::Array(items)]))
    }

    /// The object term of `fields`: a plain JSON object whose values are
    /// terms.
    pub fn object<K: Into<String>>(fields: impl IntoIterator<Item = (K, Term)>) -> Term {
        let map: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.into(), v.0)).collect();
        Term(Value::Object(map))
    }

    /// Adds the optional argument `key: value` to this command, as in
    /// `table.between(a, b, {index: "score"})`.
    ///
    /// # Panics
    ///
    /// If `self` is a datum (a string, number or object), which takes no
    /// optional arguments.
    pub fn opt(mut self, key: &str, value: impl Into<Term>) -> Term {
        let Value::Array(parts) = &mut self.0 else {
            panic!("optional argument {key:?} given to a datum, not a command");
        };
        if parts.len() == 1 {
            parts.push(Value::Array(Vec::new()));
        }
        if parts.len() == 2 {
            parts.push(Value::Object(Map::new()));
        }
        if let Some(Value::Object(opts)) = parts.get_mut(2) {
            opts.insert(key.to_owned(), value.into().0);
        }
        self
    }

    /// A new variable for a function's parameter: [`func!`] makes these.
    /// Ids come from one counter for the whole process, so nested
    /// functions never share one.
    #[doc(hidden)]
    pub fn new_var() -> Term {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        Term::command(VAR, vec![id.into()])
    }

    /// The id of a variable made by [`Term::new_var`].
    #[doc(hidden)]
    pub fn var_id(&self) -> u64 {
        self.0[1][0].as_u64().expect("a variable term")
    }

    /// The function of parameters `vars` (variables from
    /// [`Term::new_var`]) returning `body`. [`func!`] is the way to write
    /// one.
    #[doc(hidden)]
    pub fn func(vars: &[u64], body: impl Into<Term>) -> Term {
        let ids = Term::array(vars.iter().map(|&id| Term::from(id)));
        Term::command(FUNC, vec![ids, body.into()])
    }

    /// The wire form.
    pub fn into_json(self) -> Value {
        self.0
    }
}

impl Serialize for Term {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl From<Term> for Value {
    fn from(term: Term) -> Value {
        term.0
    }
}

/// A JSON value as a datum term: arrays become `MAKE_ARRAY` terms (a bare
/// JSON array would be read as a command), objects keep their shape with
/// their values converted in turn.
impl From<Value> for Term {
    fn from(value: Value) -> Term {
        match value {
            Value::Array(items) => Term::array(items.into_iter().map(Term::from)),
            Value::Object(map) => Term::object(map.into_iter().map(|(k, v)| (k, Term::from(v)))),
            scalar => Term(scalar),
        }
    }
}

macro_rules! scalar_terms {
    ($($t:ty),*) => {
        $(impl From<$t> for Term {
            fn from(v: $t) -> Term {
                Term(Value::from(v))
            }
        })*
    };
}
scalar_terms!(bool, i32, i64, u8, u16, u32, u64, f64, &str, String);

impl From<&String> for Term {
    fn from(v: &String) -> Term {
        Term(Value::from(v.as_str()))
    }
}

impl<T: Into<Term>> From<Vec<T>> for Term {
    fn from(items: Vec<T>) -> Term {
        Term::array(items.into_iter().map(Into::into))
    }
}

impl<T: Into<Term>, const N: usize> From<[T; N]> for Term {
    fn from(items: [T; N]) -> Term {
        Term::array(items.into_iter().map(Into::into))
    }
}

/// The root of every query, as `r` in RethinkDB's drivers.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct r;

impl r {
    /// `r.db(name)`.
    pub fn db(self, name: impl Into<Term>) -> Term {
        Term::command(DB, vec![name.into()])
    }

    /// `r.table(name)`, in the connection's default database.
    pub fn table(self, name: impl Into<Term>) -> Term {
        Term::command(TABLE, vec![name.into()])
    }

    /// `r.dbCreate(name)`.
    pub fn db_create(self, name: impl Into<Term>) -> Term {
        Term::command(DB_CREATE, vec![name.into()])
    }

    /// `r.dbDrop(name)`.
    pub fn db_drop(self, name: impl Into<Term>) -> Term {
        Term::command(DB_DROP, vec![name.into()])
    }

    /// `r.tableCreate(name)`, in the connection's default database.
    pub fn table_create(self, name: impl Into<Term>) -> Term {
        Term::command(TABLE_CREATE, vec![name.into()])
    }

    /// `r.expr(value)`: a value as a term.
    pub fn expr(self, value: impl Into<Term>) -> Term {
        value.into()
    }

    /// `r.branch(test, then, otherwise)`: evaluates one of the two.
    pub fn branch(
        self,
        test: impl Into<Term>,
        then: impl Into<Term>,
        otherwise: impl Into<Term>,
    ) -> Term {
        Term::command(BRANCH, vec![test.into(), then.into(), otherwise.into()])
    }

    /// `r.error(message)`: fails the query (or the write) with `message`.
    pub fn error(self, message: impl Into<Term>) -> Term {
        Term::command(ERROR, vec![message.into()])
    }

    /// `r.now()`: the query's time, fixed once per query.
    pub fn now(self) -> Term {
        Term::command(NOW, vec![])
    }

    /// `r.minval`: below every value in index order.
    pub fn minval(self) -> Term {
        Term::command(MINVAL, vec![])
    }

    /// `r.maxval`: above every value in index order.
    pub fn maxval(self) -> Term {
        Term::command(MAXVAL, vec![])
    }

    /// `r.asc(index)`, for [`Term::order_by_index`].
    pub fn asc(self, index: impl Into<Term>) -> Term {
        Term::command(ASC, vec![index.into()])
    }

    /// `r.desc(index)`, for [`Term::order_by_index`].
    pub fn desc(self, index: impl Into<Term>) -> Term {
        Term::command(DESC, vec![index.into()])
    }
}

/// Commands called on a term, `term.command(args...)`. Those whose ReQL
/// form takes any number of arguments (`getAll`, `pluck`, `without`) take
/// an iterator of them.
impl Term {
    // ------------------------------------------------------------ tables

    /// `db.table(name)`.
    pub fn table(self, name: impl Into<Term>) -> Term {
        self.call(TABLE, [name.into()])
    }

    /// `db.tableCreate(name)`.
    pub fn table_create(self, name: impl Into<Term>) -> Term {
        self.call(TABLE_CREATE, [name.into()])
    }

    /// `table.reconfigure()`, with `shards` and `replicas` as optional
    /// arguments.
    pub fn reconfigure(self) -> Term {
        self.call(RECONFIGURE, [])
    }

    /// `table.wait()`: until the table is ready.
    pub fn wait(self) -> Term {
        self.call(WAIT, [])
    }

    /// `table.indexCreate(name)`: a simple index on the field `name`.
    pub fn index_create(self, name: impl Into<Term>) -> Term {
        self.call(INDEX_CREATE, [name.into()])
    }

    /// `table.indexCreate(name, function)`: an index on what `function`
    /// gives for each document.
    pub fn index_create_fn(self, name: impl Into<Term>, function: Term) -> Term {
        self.call(INDEX_CREATE, [name.into(), function])
    }

    /// `table.indexWait()`: until every index is built.
    pub fn index_wait(self) -> Term {
        self.call(INDEX_WAIT, [])
    }

    /// `table.changes()`: the changefeed.
    pub fn changes(self) -> Term {
        self.call(CHANGES, [])
    }

    // ------------------------------------------------------------- reads

    /// `table.get(key)`: the document or null.
    pub fn get(self, key: impl Into<Term>) -> Term {
        self.call(GET, [key.into()])
    }

    /// `table.getAll(keys...)`; `.opt("index", ..)` reads another index.
    pub fn get_all<K: Into<Term>>(self, keys: impl IntoIterator<Item = K>) -> Term {
        self.call(GET_ALL, keys.into_iter().map(Into::into))
    }

    /// `table.between(lower, upper)`: lower bound closed, upper open
    /// unless `left_bound`/`right_bound` say otherwise.
    pub fn between(self, lower: impl Into<Term>, upper: impl Into<Term>) -> Term {
        self.call(BETWEEN, [lower.into(), upper.into()])
    }

    /// `seq.orderBy({index})`: in the order of an index (`r.asc`,
    /// `r.desc` or a name), read from the index itself.
    pub fn order_by_index(self, index: impl Into<Term>) -> Term {
        self.call(ORDER_BY, []).opt("index", index)
    }

    /// `seq.filter(predicate)`: a function, or an object to match.
    pub fn filter(self, predicate: impl Into<Term>) -> Term {
        self.call(FILTER, [predicate.into()])
    }

    /// `seq.map(function)`.
    pub fn map(self, function: impl Into<Term>) -> Term {
        self.call(MAP, [function.into()])
    }

    /// `seq.limit(n)`.
    pub fn limit(self, n: impl Into<Term>) -> Term {
        self.call(LIMIT, [n.into()])
    }

    /// `seq.skip(n)`.
    pub fn skip(self, n: impl Into<Term>) -> Term {
        self.call(SKIP, [n.into()])
    }

    /// `seq.count()`.
    pub fn count(self) -> Term {
        self.call(COUNT, [])
    }

    /// `seq.nth(i)`; a negative `i` counts from the end.
    pub fn nth(self, i: impl Into<Term>) -> Term {
        self.call(NTH, [i.into()])
    }

    /// `seq.isEmpty()`.
    pub fn is_empty(self) -> Term {
        self.call(IS_EMPTY, [])
    }

    /// `seq.contains(value or predicate)`.
    pub fn contains(self, what: impl Into<Term>) -> Term {
        self.call(CONTAINS, [what.into()])
    }

    /// `array.append(value)`.
    pub fn append(self, value: impl Into<Term>) -> Term {
        self.call(APPEND, [value.into()])
    }

    /// `value.coerceTo(type)`.
    pub fn coerce_to(self, typ: impl Into<Term>) -> Term {
        self.call(COERCE_TO, [typ.into()])
    }

    /// `value.typeOf()`: `"NULL"`, `"OBJECT"`...
    pub fn type_of(self) -> Term {
        self.call(TYPE_OF, [])
    }

    /// `value.do(function)`: `function` applied to `self`.
    pub fn do_(self, function: Term) -> Term {
        Term::command(FUNCALL, vec![function, self])
    }

    /// `value.default(fallback)`: `fallback` when `self` is null or
    /// missing.
    pub fn default(self, fallback: impl Into<Term>) -> Term {
        self.call(DEFAULT, [fallback.into()])
    }

    // --------------------------------------------------------- documents

    /// `doc(field)`: a field of an object, or of each object of a sequence.
    pub fn g(self, field: impl Into<Term>) -> Term {
        self.call(GET_FIELD, [field.into()])
    }

    /// `doc.hasFields(field)`.
    pub fn has_fields(self, field: impl Into<Term>) -> Term {
        self.call(HAS_FIELDS, [field.into()])
    }

    /// `doc.pluck(fields...)`.
    pub fn pluck<F: Into<Term>>(self, fields: impl IntoIterator<Item = F>) -> Term {
        self.call(PLUCK, fields.into_iter().map(Into::into))
    }

    /// `doc.without(fields...)`.
    pub fn without<F: Into<Term>>(self, fields: impl IntoIterator<Item = F>) -> Term {
        self.call(WITHOUT, fields.into_iter().map(Into::into))
    }

    /// `doc.merge(other)`.
    pub fn merge(self, other: impl Into<Term>) -> Term {
        self.call(MERGE, [other.into()])
    }

    // ------------------------------------------------------------ writes

    /// `table.insert(document or documents)`.
    pub fn insert(self, docs: impl Into<Term>) -> Term {
        self.call(INSERT, [docs.into()])
    }

    /// `selection.update(object or function)`.
    pub fn update(self, change: impl Into<Term>) -> Term {
        self.call(UPDATE, [change.into()])
    }

    /// `selection.replace(document or function)`.
    pub fn replace(self, change: impl Into<Term>) -> Term {
        self.call(REPLACE, [change.into()])
    }

    /// `selection.delete()`.
    pub fn delete(self) -> Term {
        self.call(DELETE, [])
    }

    // ------------------------------------------------------ logic, maths

    /// `a.eq(b)`.
    pub fn eq(self, other: impl Into<Term>) -> Term {
        self.call(EQ, [other.into()])
    }

    /// `a.ne(b)`.
    pub fn ne(self, other: impl Into<Term>) -> Term {
        self.call(NE, [other.into()])
    }

    /// `a.lt(b)`.
    pub fn lt(self, other: impl Into<Term>) -> Term {
        self.call(LT, [other.into()])
    }

    /// `a.le(b)`.
    pub fn le(self, other: impl Into<Term>) -> Term {
        self.call(LE, [other.into()])
    }

    /// `a.gt(b)`.
    pub fn gt(self, other: impl Into<Term>) -> Term {
        self.call(GT, [other.into()])
    }

    /// `a.ge(b)`.
    pub fn ge(self, other: impl Into<Term>) -> Term {
        self.call(GE, [other.into()])
    }

    /// `a.and(b)`.
    pub fn and(self, other: impl Into<Term>) -> Term {
        self.call(AND, [other.into()])
    }

    /// `a.or(b)`.
    pub fn or(self, other: impl Into<Term>) -> Term {
        self.call(OR, [other.into()])
    }

    /// `a.not()`.
    pub fn not(self) -> Term {
        self.call(NOT, [])
    }

    /// `a.add(b)`: sum, or concatenation of strings and arrays.
    pub fn add(self, other: impl Into<Term>) -> Term {
        self.call(ADD, [other.into()])
    }

    /// `a.sub(b)`.
    pub fn sub(self, other: impl Into<Term>) -> Term {
        self.call(SUB, [other.into()])
    }

    /// `a.mul(b)`.
    pub fn mul(self, other: impl Into<Term>) -> Term {
        self.call(MUL, [other.into()])
    }

    /// `time.toEpochTime()`: seconds since the epoch.
    pub fn to_epoch_time(self) -> Term {
        self.call(TO_EPOCH_TIME, [])
    }
}

/// A ReQL function: `func!(|doc| body)` or `func!(|a, b| body)`, where each
/// parameter is a [`Term`] standing for the argument and `body` evaluates
/// to anything that converts into a term.
///
/// ```
/// use reql_terms::{func, r};
/// let older = r.table("players").filter(func!(|p| p.g("age").gt(30)));
/// assert_eq!(serde_json::to_value(&older).unwrap()[1][1][0], 69); // FUNC
/// ```
#[macro_export]
macro_rules! func {
    (|$($param:ident),+ $(,)?| $body:expr) => {{
        $(let $param = $crate::Term::new_var();)+
        let ids = [$($param.var_id()),+];
        $crate::Term::func(&ids, $body)
    }};
}

/// A JSON-like literal whose leaves are terms: `term!({ "score": p.g("score"),
/// "top": [a, b] })`. Nested `[...]` and `{...}` are arrays and objects;
/// anything else is an expression converted with [`From`]. Parts are
/// evaluated in the order written.
///
/// ```
/// use reql_terms::{r, term};
/// let key = term!(["b1", r.minval()]);
/// assert_eq!(serde_json::to_value(&key).unwrap(), serde_json::json!([2, ["b1", [180]]]));
/// ```
#[macro_export]
macro_rules! term {
    ([ $($items:tt)* ]) => {
        $crate::Term::array($crate::__term_items!([] [] $($items)*))
    };
    ({ $($fields:tt)* }) => {
        $crate::Term::object($crate::__term_fields!([] $($fields)*))
    };
    ($value:expr) => {
        <$crate::Term as ::std::convert::From<_>>::from($value)
    };
}

/// The items of a `term!` array: gathers each item's tokens up to a comma
/// at the top level.
#[doc(hidden)]
#[macro_export]
macro_rules! __term_items {
    ([$($done:expr,)*] []) => {
        ::std::vec![$($done,)*]
    };
    ([$($done:expr,)*] [$($item:tt)+]) => {
        ::std::vec![$($done,)* $crate::term!($($item)+),]
    };
    ([$($done:expr,)*] [$($item:tt)+] , $($rest:tt)*) => {
        $crate::__term_items!([$($done,)* $crate::term!($($item)+),] [] $($rest)*)
    };
    ([$($done:expr,)*] [$($item:tt)*] $next:tt $($rest:tt)*) => {
        $crate::__term_items!([$($done,)*] [$($item)* $next] $($rest)*)
    };
}

/// The fields of a `term!` object: `"key": value` pairs, each value's
/// tokens gathered up to a comma at the top level.
#[doc(hidden)]
#[macro_export]
macro_rules! __term_fields {
    ([$($done:expr,)*]) => {
        ::std::vec::Vec::<(&str, $crate::Term)>::from([$($done,)*])
    };
    ([$($done:expr,)*] $key:literal : $($rest:tt)+) => {
        $crate::__term_value!([$($done,)*] $key [] $($rest)+)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __term_value {
    ([$($done:expr,)*] $key:literal [$($value:tt)+]) => {
        $crate::__term_fields!([$($done,)* ($key, $crate::term!($($value)+)),])
    };
    ([$($done:expr,)*] $key:literal [$($value:tt)+] , $($rest:tt)*) => {
        $crate::__term_fields!([$($done,)* ($key, $crate::term!($($value)+)),] $($rest)*)
    };
    ([$($done:expr,)*] $key:literal [$($value:tt)*] $next:tt $($rest:tt)*) => {
        $crate::__term_value!([$($done,)*] $key [$($value)* $next] $($rest)*)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(t: Term) -> Value {
        serde_json::to_value(t).unwrap()
    }

    #[test]
    fn commands_without_arguments_are_their_type_alone() {
        assert_eq!(wire(r.now().to_epoch_time()), json!([102, [[103]]]));
        assert_eq!(wire(r.table("t").count()), json!([43, [[15, ["t"]]]]));
    }

    #[test]
    fn json_values_become_data_with_arrays_made() {
        let doc = json!({"a": [1, {"b": []}], "c": null});
        assert_eq!(
            wire(r.expr(doc)),
            json!({"a": [2, [1, {"b": [2, []]}]], "c": null})
        );
    }

    #[test]
    fn optional_arguments_go_in_the_third_place() {
        let q = r
            .table("t")
            .between(1, 2)
            .opt("index", "i")
            .opt("left_bound", "open");
        assert_eq!(
            wire(q),
            json!([182, [[15, ["t"]], 1, 2], {"index": "i", "left_bound": "open"}])
        );
        assert_eq!(
            wire(r.table("t").changes().opt("include_states", true)),
            json!([152, [[15, ["t"]]], {"include_states": true}])
        );
    }

    #[test]
    fn functions_number_their_variables_apart() {
        let f = func!(|a| a.clone().g("x").do_(func!(|b| b.add(a))));
        let v = wire(f);
        let outer = v[1][0][1][0].as_u64().unwrap();
        let inner = v[1][1][1][0][1][0][1][0].as_u64().unwrap();
        assert_ne!(outer, inner);
        assert_eq!(
            v[1][1][1][0][1][1],
            json!([24, [[10, [inner]], [10, [outer]]]])
        );
    }

    #[test]
    fn literals_nest_and_keep_terms_at_their_leaves() {
        let n = 3u64;
        let t = term!({
            "k": [n, [r.minval(), "x"], { "y": n + 1 }],
            "e": {},
            "f": r.table("t").count(),
        });
        assert_eq!(
            wire(t),
            json!({
                "k": [2, [3, [2, [[180], "x"]], {"y": 4}]],
                "e": {},
                "f": [43, [[15, ["t"]]]],
            })
        );
    }

    #[test]
    fn variadic_commands_spread_their_arguments() {
        assert_eq!(
            wire(r.table("t").get_all(["a", "b"]).without(["s"])),
            json!([34, [[78, [[15, ["t"]], "a", "b"]], "s"]])
        );
    }
}
