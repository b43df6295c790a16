//! The values terms evaluate to (`Val`), variables, functions, and conversions between them.

use std::sync::Arc;

use super::seq::{self, Seq, SeqKind, Source, TableScan};
use super::{Evaluator, QueryCtx};
use crate::datum::{Datum, Obj, REQL_TYPE};
use crate::error::{ReqlError, Result};
use crate::storage::{DbInfo, ScanSpec, Table};
use crate::term::Term;

// Reading a value whole is bounded by the query's array limit, hence on QueryCtx.
impl QueryCtx {
    pub fn to_datum(&self, v: Val) -> Result<Datum> {
        match v {
            Val::Datum(d) => Ok(d),
            Val::Single(s) => Ok(s.doc.unwrap_or(Datum::Null)),
            Val::ArraySel(_, items) => Ok(Datum::array(items)),
            Val::Seq(s) => {
                if s.is_feed() {
                    return Err(ReqlError::logic("Cannot convert a changefeed to an array."));
                }
                Ok(Datum::array(s.collect()?))
            }
            Val::Table(t) => {
                let docs = t.read().all_docs();
                if docs.len() > self.array_limit {
                    return Err(seq::array_limit_error(self.array_limit));
                }
                Ok(Datum::array(docs))
            }
            Val::Grouped(g) => Ok(grouped_datum(g)),
            Val::Func(_) => Err(ReqlError::logic("Expected type DATUM but found FUNCTION:")),
            Val::Db(d) => Err(ReqlError::logic(format!(
                "Expected type DATUM but found DATABASE:\ndb(\"{}\")",
                d.name
            ))),
        }
    }

    pub fn to_array(&self, v: Val) -> Result<Vec<Datum>> {
        match v {
            Val::Datum(Datum::Array(a)) => Ok(Arc::unwrap_or_clone(a)),
            Val::Datum(other) => Err(ReqlError::logic(format!(
                "Cannot convert {} to SEQUENCE",
                other.type_name()
            ))),
            Val::Single(s) => Err(ReqlError::logic(format!(
                "Cannot convert {} to SEQUENCE",
                s.doc.unwrap_or(Datum::Null).type_name()
            ))),
            other => match self.to_datum(other)? {
                Datum::Array(a) => Ok(Arc::unwrap_or_clone(a)),
                d => Err(ReqlError::logic(format!(
                    "Cannot convert {} to SEQUENCE",
                    d.type_name()
                ))),
            },
        }
    }
}

pub fn to_seq(ctx: &Arc<QueryCtx>, v: Val) -> Result<Seq> {
    match v {
        Val::Seq(s) => Ok(*s),
        Val::Table(t) => {
            let mut s = Seq::new(
                Source::Scan(Box::new(TableScan::new(t.clone(), ScanSpec::all(), false))),
                SeqKind::Table,
                ctx.clone(),
            );
            s.table = Some(t);
            Ok(s)
        }
        Val::ArraySel(t, items) => {
            let mut s = Seq::from_items(items, ctx.clone());
            s.table = Some(t);
            s.kind = SeqKind::Selection;
            Ok(s)
        }
        Val::Datum(Datum::Array(a)) => Ok(Seq::from_items(Arc::unwrap_or_clone(a), ctx.clone())),
        Val::Datum(d) => Err(ReqlError::logic(format!(
            "Cannot convert {} to SEQUENCE",
            d.type_name()
        ))),
        Val::Single(s) => Err(ReqlError::logic(format!(
            "Cannot convert {} to SEQUENCE",
            s.doc.unwrap_or(Datum::Null).type_name()
        ))),
        Val::Grouped(_) => Err(ReqlError::logic("Cannot convert GROUPED_DATA to SEQUENCE")),
        Val::Func(_) => Err(ReqlError::logic("Cannot convert FUNCTION to SEQUENCE")),
        Val::Db(_) => Err(ReqlError::logic("Cannot convert DATABASE to SEQUENCE")),
    }
}

pub fn grouped_datum(groups: Vec<(Datum, Datum)>) -> Datum {
    let mut o = Obj::new();
    o.insert(REQL_TYPE.into(), Datum::from("GROUPED_DATA"));
    o.insert(
        "data".into(),
        Datum::array(
            groups
                .into_iter()
                .map(|(k, v)| Datum::array(vec![k, v]))
                .collect(),
        ),
    );
    Datum::object(o)
}

/// A single document of a table (`table.get(key)`), which can be written to.
#[derive(Clone)]
pub struct Single {
    pub table: Arc<Table>,
    pub key: Datum,
    pub doc: Option<Datum>,
}

pub enum Val {
    Datum(Datum),
    Db(DbInfo),
    Table(Arc<Table>),
    Single(Single),
    Seq(Box<Seq>),
    /// An ordered array of documents of one table (`orderBy` without an index).
    ArraySel(Arc<Table>, Vec<Datum>),
    Func(FuncVal),
    Grouped(Vec<(Datum, Datum)>),
}

impl Val {
    pub fn type_name(&self) -> String {
        match self {
            Val::Datum(d) => d.type_name(),
            Val::Db(_) => "DB".into(),
            Val::Table(_) => "TABLE".into(),
            Val::Single(_) => "SELECTION<OBJECT>".into(),
            Val::Seq(s) => s.type_name().into(),
            Val::ArraySel(..) => "SELECTION<ARRAY>".into(),
            Val::Func(_) => "FUNCTION".into(),
            Val::Grouped(_) => "GROUPED_DATA".into(),
        }
    }
}

/// A value a variable can hold: as in RethinkDB, always a datum (a
/// selection is read into its document, a stream into an array, when bound).
#[derive(Clone)]
pub enum Bound {
    Datum(Datum),
}

impl Bound {
    pub(super) fn to_val(&self) -> Val {
        match self {
            Bound::Datum(d) => Val::Datum(d.clone()),
        }
    }
}

#[derive(Clone, Default)]
pub struct Env {
    pub(super) vars: Vec<(i64, Bound)>,
    pub(super) implicit: Option<Bound>,
    /// The error a `default` is handling, which `r.error()` without arguments
    /// raises again.
    pub default_error: Option<ReqlError>,
}

#[derive(Clone)]
pub struct FuncVal {
    pub(super) params: Arc<Vec<i64>>,
    pub(super) body: Term,
    pub(super) env: Env,
    pub ctx: Arc<QueryCtx>,
    /// A body using `r.row` that the client did not wrap in a function.
    pub(super) implicit_only: bool,
}

impl FuncVal {
    pub fn call(&self, args: Vec<Bound>) -> Result<Val> {
        let mut env = self.env.clone();
        if self.implicit_only {
            env.implicit = args.into_iter().next();
        } else {
            if args.len() != self.params.len() {
                let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
                return Err(ReqlError::logic(format!(
                    "Expected function with {} {} but found function with {} {}.",
                    args.len(),
                    plural(args.len()),
                    self.params.len(),
                    plural(self.params.len())
                )));
            }
            if args.len() == 1 {
                env.implicit = Some(args[0].clone());
            }
            for (p, a) in self.params.iter().zip(args) {
                env.vars.push((*p, a));
            }
        }
        Evaluator::with_env(&self.ctx, env).eval(&self.body)
    }

    pub fn call_datum(&self, args: &[Datum]) -> Result<Datum> {
        let v = self.call(args.iter().cloned().map(Bound::Datum).collect())?;
        self.ctx.to_datum(v)
    }
}

/// A function argument that may also be given as a plain value.
pub enum FuncLike {
    Func(FuncVal),
    Value(Datum),
}

impl FuncLike {
    pub(super) fn call1(&self, d: &Datum) -> Result<Datum> {
        match self {
            FuncLike::Func(f) => f.call_datum(std::slice::from_ref(d)),
            FuncLike::Value(v) => Ok(v.clone()),
        }
    }
}

pub(crate) fn table_of(v: Val) -> Result<Arc<Table>> {
    match v {
        Val::Table(t) => Ok(t),
        Val::Seq(s) if s.kind == SeqKind::Table => s
            .table
            .clone()
            .ok_or_else(|| ReqlError::logic("Expected type TABLE but found SEQUENCE.")),
        other => Err(ReqlError::logic(format!(
            "Expected type TABLE but found {}.",
            val_kind(&other)
        ))),
    }
}

/// How a value is named in "Expected type X but found Y" messages.
pub(super) fn val_kind(v: &Val) -> String {
    match v {
        Val::Datum(_) => "DATUM".into(),
        Val::Db(_) => "DATABASE".into(),
        Val::Table(_) => "TABLE".into(),
        Val::Single(_) => "SINGLE_SELECTION".into(),
        Val::Seq(s) => match s.kind {
            SeqKind::Table => "TABLE".into(),
            SeqKind::TableSlice => "TABLE_SLICE".into(),
            SeqKind::Selection => "SELECTION".into(),
            _ => "SEQUENCE".into(),
        },
        Val::ArraySel(..) => "SELECTION".into(),
        Val::Func(_) => "FUNCTION".into(),
        Val::Grouped(_) => "GROUPED_DATA".into(),
    }
}
