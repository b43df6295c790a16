//! Term evaluation: turns a checked term tree into a value, a lazy sequence or a
//! changefeed, applying writes to the store on the way.

mod admin;
mod changes;
pub mod ops;
pub mod seq;
mod write;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use uuid::Uuid;

use self::seq::{FilterDefault, MergeArg, Op, Pred, Seq, SeqKind, Source, TableScan};
use crate::datum::{Datum, Obj, REQL_TYPE};
use crate::error::{ReqlError, Result};
use crate::storage::{DbInfo, Durability, ScanSpec, Store, Table};
use crate::term::{tt, Kind, Term};

/// What every query can reach: the store and the server's identity.
pub struct Shared {
    pub store: Arc<Store>,
    pub server_id: Uuid,
    pub server_name: String,
    /// How long a table creation stays invisible to other creations of the
    /// same name (see [`crate::storage::Store::table_create`]).
    pub table_create_window: std::time::Duration,
}

/// Per-query settings from the global optional arguments, and the log position
/// the query's writes must reach before it is acknowledged.
pub struct QueryCtx {
    /// Absent for index functions, which must not reach the store.
    pub shared: Option<Arc<Shared>>,
    pub default_db: String,
    pub array_limit: usize,
    pub durability: Option<Durability>,
    durable_seq: AtomicU64,
    /// Tables this query created, made visible once it has run (see
    /// [`crate::storage::Store::table_create`]).
    created_tables: parking_lot::Mutex<Vec<Arc<crate::storage::Table>>>,
}

pub const DEFAULT_ARRAY_LIMIT: usize = 100_000;

/// Deepest nesting a value built by a query may have; deeper values would make
/// printing and comparing them recurse too far.
pub const MAX_DEPTH: usize = 512;

/// Rebuilds index functions kept in the log when a data directory is opened.
pub fn admin_compiler() -> crate::storage::IndexCompiler {
    Arc::new(|json: &serde_json::Value| admin::compile_stored_index(json))
}

impl QueryCtx {
    pub fn new(shared: Arc<Shared>, default_db: String) -> QueryCtx {
        QueryCtx {
            shared: Some(shared),
            default_db,
            array_limit: DEFAULT_ARRAY_LIMIT,
            durability: None,
            durable_seq: AtomicU64::new(0),
            created_tables: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// A context with no store, for evaluating index functions.
    pub fn detached() -> QueryCtx {
        QueryCtx {
            shared: None,
            default_db: String::new(),
            array_limit: DEFAULT_ARRAY_LIMIT,
            durability: None,
            durable_seq: AtomicU64::new(0),
            created_tables: parking_lot::Mutex::new(Vec::new()),
        }
    }

    pub fn store(&self) -> Result<&Arc<Store>> {
        self.shared
            .as_ref()
            .map(|s| &s.store)
            .ok_or_else(|| ReqlError::logic("Index functions cannot read databases or tables."))
    }

    pub fn server_name(&self) -> String {
        self.shared
            .as_ref()
            .map(|s| s.server_name.clone())
            .unwrap_or_default()
    }

    pub fn note_durable(&self, seq: u64) {
        self.durable_seq.fetch_max(seq, AtomicOrdering::SeqCst);
    }

    /// Records a table whose creation this query has started.
    pub fn note_created_table(&self, table: Arc<crate::storage::Table>) {
        self.created_tables.lock().push(table);
    }

    /// Finishes the table creations of this query: after `latency` (the
    /// window in which a real server lets a second creation of the same name
    /// through), the tables become visible.
    pub async fn commit_created_tables(&self, latency: std::time::Duration) -> Result<()> {
        let tables = std::mem::take(&mut *self.created_tables.lock());
        if tables.is_empty() {
            return Ok(());
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let store = self.store()?;
        for table in tables {
            let seq = store.commit_table(table)?;
            self.note_durable(seq);
        }
        Ok(())
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable_seq.load(AtomicOrdering::SeqCst)
    }

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

/// A value a variable can hold. Streams are read into arrays when bound.
#[derive(Clone)]
pub enum Bound {
    Datum(Datum),
    Db(DbInfo),
    Table(Arc<Table>),
    Single(Single),
    Func(Box<FuncVal>),
}

impl Bound {
    fn to_val(&self) -> Val {
        match self {
            Bound::Datum(d) => Val::Datum(d.clone()),
            Bound::Db(d) => Val::Db(d.clone()),
            Bound::Table(t) => Val::Table(t.clone()),
            Bound::Single(s) => Val::Single(s.clone()),
            Bound::Func(f) => Val::Func((**f).clone()),
        }
    }

    fn from_val(ctx: &QueryCtx, v: Val) -> Result<Bound> {
        Ok(match v {
            Val::Db(d) => Bound::Db(d),
            Val::Table(t) => Bound::Table(t),
            Val::Single(s) => Bound::Single(s),
            Val::Func(f) => Bound::Func(Box::new(f)),
            other => Bound::Datum(ctx.to_datum(other)?),
        })
    }
}

#[derive(Clone, Default)]
pub struct Env {
    vars: Vec<(i64, Bound)>,
    implicit: Option<Bound>,
    /// The error a `default` is handling, which `r.error()` without arguments
    /// raises again.
    pub default_error: Option<ReqlError>,
}

#[derive(Clone)]
pub struct FuncVal {
    params: Arc<Vec<i64>>,
    body: Term,
    env: Env,
    pub ctx: Arc<QueryCtx>,
    /// A body using `r.row` that the client did not wrap in a function.
    implicit_only: bool,
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
    fn call1(&self, d: &Datum) -> Result<Datum> {
        match self {
            FuncLike::Func(f) => f.call_datum(std::slice::from_ref(d)),
            FuncLike::Value(v) => Ok(v.clone()),
        }
    }
}

pub struct Evaluator<'a> {
    ctx: &'a Arc<QueryCtx>,
    env: Env,
}

/// Terms that take a sequence first and, given grouped data, run once per group.
fn groupable(ty: u32) -> bool {
    use tt::*;
    matches!(
        ty,
        GET_FIELD
            | BRACKET
            | PLUCK
            | WITHOUT
            | MERGE
            | HAS_FIELDS
            | WITH_FIELDS
            | MAP
            | FILTER
            | CONCAT_MAP
            | ORDER_BY
            | DISTINCT
            | COUNT
            | IS_EMPTY
            | NTH
            | SLICE
            | SKIP
            | LIMIT
            | SUM
            | AVG
            | MIN
            | MAX
            | REDUCE
            | CONTAINS
            | COERCE_TO
            | KEYS
            | VALUES
            | APPEND
            | PREPEND
    )
}

impl<'a> Evaluator<'a> {
    pub fn new(ctx: &'a Arc<QueryCtx>) -> Evaluator<'a> {
        Evaluator {
            ctx,
            env: Env::default(),
        }
    }

    pub fn with_env(ctx: &'a Arc<QueryCtx>, env: Env) -> Evaluator<'a> {
        Evaluator { ctx, env }
    }

    pub fn eval(&mut self, t: &Term) -> Result<Val> {
        match t.kind() {
            Kind::Datum(d) => Ok(Val::Datum(d.clone())),
            Kind::Func { params, body, .. } => Ok(Val::Func(FuncVal {
                params: Arc::new(params.clone()),
                body: body.clone(),
                env: self.env.clone(),
                ctx: self.ctx.clone(),
                implicit_only: false,
            })),
            Kind::Op { ty, args, .. } => {
                let args = self.spread(args)?;
                let info = crate::term::info(*ty);
                if let Some(info) = &info {
                    if !info.supported {
                        return Err(ReqlError::logic(format!(
                            "`r.{}` is not supported by this development server (reql-dev-server); use a real RethinkDB for it.",
                            info.name
                        )));
                    }
                    if args.len() < info.min || info.max.is_some_and(|m| args.len() > m) {
                        return Err(ReqlError::compile(crate::term::arity_message(
                            info.min,
                            info.max,
                            args.len(),
                        )));
                    }
                }
                if groupable(*ty) {
                    let first = self.eval(&args[0])?;
                    if let Val::Grouped(groups) = first {
                        let mut out = Vec::with_capacity(groups.len());
                        for (k, v) in groups {
                            let r = self.apply(*ty, t, Val::Datum(v), &args)?;
                            out.push((k, self.ctx.to_datum(r)?));
                        }
                        return Ok(Val::Grouped(out));
                    }
                    return self.apply(*ty, t, first, &args);
                }
                self.eval_op(*ty, t, &args)
            }
        }
    }

    /// Expands `r.args` into the argument list.
    fn spread<'t>(&mut self, args: &'t [Term]) -> Result<Cow<'t, [Term]>> {
        if !args.iter().any(|a| a.ty() == tt::ARGS) {
            return Ok(Cow::Borrowed(args));
        }
        let mut out = Vec::new();
        for a in args {
            if a.ty() == tt::ARGS {
                let inner = a
                    .args()
                    .first()
                    .ok_or_else(|| ReqlError::compile("Expected 1 argument but found 0."))?;
                if inner.ty() == tt::MAKE_ARRAY {
                    // Keep the element terms, so functions inside stay functions.
                    out.extend(inner.args().iter().cloned());
                } else {
                    for d in ops::array(&self.datum(inner)?)?.iter() {
                        out.push(Term::datum(d.clone()));
                    }
                }
            } else {
                out.push(a.clone());
            }
        }
        Ok(Cow::Owned(out))
    }

    // -------------------------------------------------------------- helpers

    pub fn datum(&mut self, t: &Term) -> Result<Datum> {
        let v = self.eval(t)?;
        self.ctx.to_datum(v)
    }

    fn string(&mut self, t: &Term) -> Result<String> {
        let d = self.datum(t)?;
        Ok(ops::string(&d)?.to_string())
    }

    fn int(&mut self, t: &Term) -> Result<i64> {
        let d = self.datum(t)?;
        ops::int(&d)
    }

    /// An argument RethinkDB reads as a 32-bit integer (`limit`, `nth`):
    /// anything outside that range is refused, whichever its sign.
    fn int32(&mut self, t: &Term) -> Result<i64> {
        let n = self.int(t)?;
        if i32::try_from(n).is_err() {
            return Err(ReqlError::logic(format!("Integer too large: {n}")));
        }
        Ok(n)
    }

    fn opt(&mut self, t: &Term, name: &str) -> Result<Option<Datum>> {
        match t.optarg(name) {
            Some(o) => Ok(Some(self.datum(o)?)),
            None => Ok(None),
        }
    }

    fn opt_bool(&mut self, t: &Term, name: &str) -> Result<bool> {
        match self.opt(t, name)? {
            None => Ok(false),
            Some(d) => ops::boolean(&d),
        }
    }

    fn func_of(&self, t: &Term) -> Option<FuncVal> {
        match t.kind() {
            Kind::Func { params, body, .. } => Some(FuncVal {
                params: Arc::new(params.clone()),
                body: body.clone(),
                env: self.env.clone(),
                ctx: self.ctx.clone(),
                implicit_only: false,
            }),
            _ if t.uses_implicit_var() => Some(FuncVal {
                params: Arc::new(Vec::new()),
                body: t.clone(),
                env: self.env.clone(),
                ctx: self.ctx.clone(),
                implicit_only: true,
            }),
            _ => None,
        }
    }

    fn func_like(&mut self, t: &Term) -> Result<FuncLike> {
        if let Some(f) = self.func_of(t) {
            return Ok(FuncLike::Func(f));
        }
        match self.eval(t)? {
            Val::Func(f) => Ok(FuncLike::Func(f)),
            v => Ok(FuncLike::Value(self.ctx.to_datum(v)?)),
        }
    }

    fn func(&mut self, t: &Term) -> Result<FuncVal> {
        match self.func_like(t)? {
            FuncLike::Func(f) => Ok(f),
            FuncLike::Value(d) => Err(ReqlError::logic(format!(
                "Expected type FUNCTION but found {}.",
                d.type_name()
            ))),
        }
    }

    fn seq(&self, v: Val) -> Result<Seq> {
        to_seq(self.ctx, v)
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

impl<'a> Evaluator<'a> {
    fn db_name(&mut self, t: Option<&Term>) -> Result<String> {
        match t {
            Some(t) => match self.eval(t)? {
                Val::Db(d) => Ok(d.name),
                other => Err(ReqlError::logic(format!(
                    "Expected type DATABASE but found {}.",
                    val_kind(&other)
                ))),
            },
            None => {
                let name = self.ctx.default_db.clone();
                self.ctx.store()?.db(&name)?;
                Ok(name)
            }
        }
    }

    /// Applies a per-document operation to a value of any sequence-like kind.
    fn apply_op(&mut self, v: Val, op: Op) -> Result<Val> {
        match v {
            Val::Datum(Datum::Array(a)) => {
                let mut s = Seq::from_items(Arc::unwrap_or_clone(a), self.ctx.clone());
                s.push_op(op);
                Ok(Val::Datum(Datum::array(s.collect()?)))
            }
            Val::ArraySel(t, items) => {
                let keeps = op.keeps_selection();
                let mut s = Seq::from_items(items, self.ctx.clone());
                s.push_op(op);
                let items = s.collect()?;
                Ok(if keeps {
                    Val::ArraySel(t, items)
                } else {
                    Val::Datum(Datum::array(items))
                })
            }
            other => {
                let mut s = self.seq(other)?;
                s.push_op(op);
                Ok(Val::Seq(Box::new(s)))
            }
        }
    }

    fn require_index(&self, table: &Table, name: &str) -> Result<Option<String>> {
        if name == table.primary_key {
            return Ok(None);
        }
        if table.read().has_index(name) {
            Ok(Some(name.to_string()))
        } else {
            Err(ReqlError::op_failed(format!(
                "Index `{name}` was not found on table `{}`.",
                table.full_name()
            )))
        }
    }

    // -------------------------------------------------------------- terms

    fn eval_op(&mut self, ty: u32, t: &Term, args: &[Term]) -> Result<Val> {
        use tt::*;
        match ty {
            MAKE_ARRAY => {
                let mut out = Vec::with_capacity(args.len());
                for a in args {
                    out.push(self.datum(a)?);
                }
                if out.len() > self.ctx.array_limit {
                    return Err(seq::array_limit_error(self.ctx.array_limit));
                }
                Ok(Val::Datum(Datum::array(out)))
            }
            MAKE_OBJ => {
                let mut o = Obj::new();
                if let Kind::Op { optargs, .. } = t.kind() {
                    for (k, v) in optargs {
                        o.insert(k.clone(), self.datum(v)?);
                    }
                }
                Ok(Val::Datum(Datum::object(o)))
            }
            VAR => {
                let id = args
                    .first()
                    .and_then(|a| a.as_datum())
                    .and_then(Datum::as_num)
                    .map(|n| n as i64);
                self.env
                    .vars
                    .iter()
                    .rev()
                    .find(|(p, _)| Some(*p) == id)
                    .map(|(_, b)| b.to_val())
                    .ok_or_else(|| ReqlError::compile("Variable name not found."))
            }
            IMPLICIT_VAR => self
                .env
                .implicit
                .as_ref()
                .map(Bound::to_val)
                .ok_or_else(|| ReqlError::compile("r.row is not defined in this context.")),
            FUNCALL => {
                let f = self.func(&args[0])?;
                let mut call_args = Vec::new();
                for a in &args[1..] {
                    let v = self.eval(a)?;
                    call_args.push(Bound::from_val(self.ctx, v)?);
                }
                f.call(call_args)
            }
            UUID => Ok(Val::Datum(Datum::from(Uuid::new_v4().to_string()))),
            ERROR => {
                if args.is_empty() {
                    return Err(self.env.default_error.clone().unwrap_or_else(|| {
                        ReqlError::logic("Empty ERROR term outside a default block.")
                    }));
                }
                let msg = self.string(&args[0])?;
                Err(ReqlError::user(msg))
            }
            DB => {
                let name = self.string(&args[0])?;
                admin::check_name("Database", &name)?;
                Ok(Val::Db(self.ctx.store()?.db(&name)?))
            }
            TABLE => {
                let (db, name) = if args.len() == 2 {
                    (self.db_name(Some(&args[0]))?, self.string(&args[1])?)
                } else {
                    let name = self.string(&args[0])?;
                    (self.db_name(None)?, name)
                };
                if let Some(rm) = self.opt(t, "read_mode")? {
                    let rm = ops::string(&rm)?.to_string();
                    if !matches!(rm.as_str(), "single" | "majority" | "outdated") {
                        return Err(ReqlError::logic(format!(
                            "Read mode `{rm}` unrecognized (options are \"majority\", \"single\", and \"outdated\")."
                        )));
                    }
                }
                let by_uuid = match self.opt(t, "identifier_format")? {
                    None => false,
                    Some(f) => match ops::string(&f)? {
                        "name" => false,
                        "uuid" => true,
                        other => {
                            return Err(ReqlError::logic(format!(
                                "Identifier format `{other}` unrecognized (options are \"name\" and \"uuid\")."
                            )))
                        }
                    },
                };
                if db == crate::storage::SYSTEM_DB {
                    return admin::system_table(self.ctx, &name, by_uuid).map(Val::Table);
                }
                Ok(Val::Table(self.ctx.store()?.table(&db, &name)?))
            }
            EQ | NE | LT | LE | GT | GE => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.datum(a)?);
                }
                let result = if ty == NE {
                    // `ne` over several values is the negation of `eq` over them.
                    !vals.windows(2).all(|w| w[0] == w[1])
                } else {
                    vals.windows(2).all(|w| ops::compare(ty, &w[0], &w[1]))
                };
                Ok(Val::Datum(Datum::Bool(result)))
            }
            NOT => Ok(Val::Datum(Datum::Bool(!self.datum(&args[0])?.truthy()))),
            ADD | SUB | MUL | DIV => {
                let mut acc = self.datum(&args[0])?;
                for a in &args[1..] {
                    let b = self.datum(a)?;
                    acc = match ty {
                        ADD => ops::add(&acc, &b)?,
                        SUB => ops::sub(&acc, &b)?,
                        MUL => ops::mul(&acc, &b)?,
                        _ => ops::div(&acc, &b)?,
                    };
                }
                Ok(Val::Datum(acc))
            }
            MOD => {
                let a = self.datum(&args[0])?;
                let b = self.datum(&args[1])?;
                Ok(Val::Datum(ops::modulo(&a, &b)?))
            }
            FLOOR | CEIL | ROUND => {
                let n = ops::num(&self.datum(&args[0])?)?;
                Ok(Val::Datum(Datum::Num(match ty {
                    FLOOR => n.floor(),
                    CEIL => n.ceil(),
                    _ => n.round(),
                })))
            }
            BRANCH => {
                if args.len() % 2 == 0 {
                    return Err(ReqlError::compile(format!(
                        "Expected an odd number of arguments to branch but found {}.",
                        args.len()
                    )));
                }
                let mut i = 0;
                while i + 1 < args.len() {
                    if self.datum(&args[i])?.truthy() {
                        return self.eval(&args[i + 1]);
                    }
                    i += 2;
                }
                self.eval(&args[args.len() - 1])
            }
            OR | AND => {
                let mut last = Datum::Bool(ty == AND);
                for a in args {
                    let v = self.datum(a)?;
                    let stop = if ty == OR { v.truthy() } else { !v.truthy() };
                    last = v;
                    if stop {
                        break;
                    }
                }
                Ok(Val::Datum(last))
            }
            ASC | DESC => Err(ReqlError::logic(format!(
                "{} may only be used as an argument to ORDER_BY or as the `index` of ORDER_BY.",
                if ty == ASC { "ASC" } else { "DESC" }
            ))),
            RANGE => {
                let (start, end) = match args.len() {
                    0 => (0, None),
                    1 => (0, Some(self.int(&args[0])?)),
                    _ => (self.int(&args[0])?, Some(self.int(&args[1])?)),
                };
                Ok(Val::Seq(Box::new(Seq::new(
                    Source::Range {
                        next: start as f64,
                        end: end.map(|e| e as f64),
                    },
                    SeqKind::Stream,
                    self.ctx.clone(),
                ))))
            }
            JSON => {
                let s = self.string(&args[0])?;
                Datum::parse_json(&s)
                    .map(Val::Datum)
                    .map_err(|e| ReqlError::logic(format!("Failed to parse \"{s}\" as JSON: {e}")))
            }
            TO_JSON_STRING => Ok(Val::Datum(Datum::from(self.datum(&args[0])?.to_json()?))),
            UPCASE => Ok(Val::Datum(Datum::from(ops::upcase(
                &self.string(&args[0])?,
            )))),
            DOWNCASE => Ok(Val::Datum(Datum::from(ops::downcase(
                &self.string(&args[0])?,
            )))),
            SPLIT => {
                let s = self.string(&args[0])?;
                let sep = match args.get(1) {
                    Some(a) => match self.datum(a)? {
                        Datum::Null => None,
                        d => Some(ops::string(&d)?.to_string()),
                    },
                    None => None,
                };
                let max = match args.get(2) {
                    Some(a) => Some(self.int(a)?),
                    None => None,
                };
                Ok(Val::Datum(ops::split(&s, sep.as_deref(), max)))
            }
            EPOCH_TIME => {
                let n = ops::num(&self.datum(&args[0])?)?;
                Ok(Val::Datum(ops::make_time(n, "+00:00")))
            }
            NOW => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| (d.as_millis() as f64) / 1000.0)
                    .unwrap_or(0.0);
                Ok(Val::Datum(ops::make_time(now, "+00:00")))
            }
            TO_EPOCH_TIME => {
                let d = self.datum(&args[0])?;
                match (d.ptype(), d.get("epoch_time")) {
                    (Some("TIME"), Some(e)) => Ok(Val::Datum(e.clone())),
                    _ => Err(ReqlError::logic(format!(
                        "Not a TIME pseudotype: `{}`.",
                        d.to_json().unwrap_or_default()
                    ))),
                }
            }
            LITERAL => {
                let mut o = Obj::new();
                o.insert(REQL_TYPE.into(), Datum::from("LITERAL"));
                if let Some(a) = args.first() {
                    o.insert("value".into(), self.datum(a)?);
                }
                Ok(Val::Datum(Datum::object(o)))
            }
            MINVAL => Ok(Val::Datum(Datum::MinVal)),
            MAXVAL => Ok(Val::Datum(Datum::MaxVal)),
            BINARY => {
                let d = self.datum(&args[0])?;
                if d.ptype() == Some("BINARY") {
                    return Ok(Val::Datum(d));
                }
                Ok(Val::Datum(ops::coerce(&d, "binary")?))
            }
            OBJECT => {
                if args.len() % 2 != 0 {
                    return Err(ReqlError::logic(
                        "OBJECT expects an even number of arguments.",
                    ));
                }
                let mut o = Obj::new();
                for pair in args.chunks(2) {
                    let k = self.string(&pair[0])?;
                    let v = self.datum(&pair[1])?;
                    o.insert(k, v);
                }
                Ok(Val::Datum(Datum::object(o)))
            }
            DEFAULT => {
                // `default` stands in for null and for errors about missing data;
                // other errors pass through.
                let missing = match self.eval(&args[0]) {
                    Ok(Val::Datum(Datum::Null)) | Ok(Val::Single(Single { doc: None, .. })) => None,
                    Ok(v) => return Ok(v),
                    Err(e) if e.is_non_existence() => Some(e),
                    Err(e) => return Err(e),
                };
                let saved = std::mem::replace(&mut self.env.default_error, missing.clone());
                let out = match (args[1].kind(), self.func_of(&args[1])) {
                    (Kind::Func { .. }, Some(f)) => {
                        let arg = missing
                            .map(|e| Datum::from(e.message()))
                            .unwrap_or(Datum::Null);
                        f.call(vec![Bound::Datum(arg)])
                    }
                    _ => self.eval(&args[1]),
                };
                self.env.default_error = saved;
                out
            }
            TYPE_OF => {
                let v = self.eval(&args[0])?;
                Ok(Val::Datum(Datum::from(v.type_name())))
            }
            UNION => self.union(args),
            UNGROUP => match self.eval(&args[0])? {
                Val::Grouped(g) => Ok(Val::Datum(Datum::array(
                    g.into_iter()
                        .map(|(k, v)| {
                            let mut o = Obj::new();
                            o.insert("group".into(), k);
                            o.insert("reduction".into(), v);
                            Datum::object(o)
                        })
                        .collect(),
                ))),
                other => Err(ReqlError::logic(format!(
                    "Expected type GROUPED_DATA but found {}.",
                    val_kind(&other)
                ))),
            },
            GROUP => {
                let first = self.eval(&args[0])?;
                self.group(first, t, args)
            }
            GET => {
                let table = table_of(self.eval(&args[0])?)?;
                let key = self.datum(&args[1])?;
                crate::datum::primary_key_bytes(&key)
                    .map_err(|e| ReqlError::missing(e.message()))?;
                let doc = table.read().get(&key).cloned();
                Ok(Val::Single(Single { table, key, doc }))
            }
            GET_ALL => self.get_all(t, args),
            BETWEEN => {
                let first = self.eval(&args[0])?;
                self.between(first, t, args)
            }
            CHANGES => {
                let first = self.eval(&args[0])?;
                changes::changes(self, first, t)
            }
            INSERT => self.insert(t, args),
            UPDATE | REPLACE => self.update_or_replace(ty, t, args),
            DELETE => self.delete(t, args),
            DB_CREATE | DB_DROP | DB_LIST | TABLE_CREATE | TABLE_DROP | TABLE_LIST | CONFIG
            | STATUS | WAIT | INFO | INDEX_CREATE | INDEX_DROP | INDEX_LIST | INDEX_STATUS
            | INDEX_WAIT | INDEX_RENAME => admin::eval_admin(self, ty, t, args),
            _ => {
                let name = crate::term::info(ty).map(|i| i.name).unwrap_or("unknown");
                Err(ReqlError::logic(format!(
                    "`r.{name}` is not supported by this development server (reql-dev-server)."
                )))
            }
        }
    }

    /// Terms whose first argument is a sequence or value already evaluated.
    fn apply(&mut self, ty: u32, t: &Term, first: Val, args: &[Term]) -> Result<Val> {
        use tt::*;
        match ty {
            GET_FIELD | BRACKET => {
                let key = self.datum(&args[1])?;
                if let (BRACKET, Datum::Num(_)) = (ty, &key) {
                    return self.nth(first, ops::int(&key)?);
                }
                let field = ops::string(&key)?.to_string();
                let opname = if ty == BRACKET {
                    "bracket"
                } else {
                    "get_field"
                };
                match first {
                    Val::Datum(d @ Datum::Array(_)) => {
                        self.apply_op(Val::Datum(d), Op::GetField(field))
                    }
                    Val::Datum(d) => Ok(Val::Datum(get_field_named(&d, &field, opname)?)),
                    Val::Single(s) => Ok(Val::Datum(get_field_named(
                        &s.doc.unwrap_or(Datum::Null),
                        &field,
                        opname,
                    )?)),
                    other => self.apply_op(other, Op::GetField(field)),
                }
            }
            PLUCK | WITHOUT | HAS_FIELDS | WITH_FIELDS => {
                let mut paths = Vec::new();
                for a in &args[1..] {
                    paths.push(self.datum(a)?);
                }
                let single = match &first {
                    Val::Datum(d @ Datum::Object(_)) => Some(d.clone()),
                    Val::Single(s) => Some(s.doc.clone().unwrap_or(Datum::Null)),
                    Val::Datum(d) if !matches!(d, Datum::Array(_)) => Some(d.clone()),
                    _ => None,
                };
                if let Some(d) = single {
                    return Ok(Val::Datum(match ty {
                        PLUCK => seq::pluck(&d, &paths)?,
                        WITHOUT => seq::without(&d, &paths)?,
                        HAS_FIELDS => Datum::Bool(seq::has_fields(&d, &paths)?),
                        _ => {
                            return Err(ReqlError::logic(format!(
                                "Cannot convert {} to SEQUENCE",
                                d.type_name()
                            )))
                        }
                    }));
                }
                let op = match ty {
                    PLUCK => Op::Pluck(paths),
                    WITHOUT => Op::Without(paths),
                    HAS_FIELDS => Op::HasFields(paths),
                    _ => Op::WithFields(paths),
                };
                self.apply_op(first, op)
            }
            MERGE => {
                let mut margs = Vec::new();
                for a in &args[1..] {
                    margs.push(match self.func_like(a)? {
                        FuncLike::Func(f) => MergeArg::Func(f),
                        FuncLike::Value(v) => MergeArg::Value(v),
                    });
                }
                let single = match &first {
                    Val::Datum(d @ Datum::Object(_)) => Some(d.clone()),
                    Val::Single(s) => Some(s.doc.clone().unwrap_or(Datum::Null)),
                    _ => None,
                };
                if let Some(mut cur) = single {
                    for m in &margs {
                        let patch = match m {
                            MergeArg::Value(v) => v.clone(),
                            MergeArg::Func(f) => f.call_datum(std::slice::from_ref(&cur))?,
                        };
                        cur = seq::merge_values(&cur, &patch);
                    }
                    return Ok(Val::Datum(cur));
                }
                self.apply_op(first, Op::Merge(margs))
            }
            KEYS => Ok(Val::Datum(ops::keys(&self.ctx.to_datum(first)?)?)),
            VALUES => Ok(Val::Datum(ops::values(&self.ctx.to_datum(first)?)?)),
            APPEND | PREPEND => {
                let arr = self.ctx.to_datum(first)?;
                let mut v = ops::array(&arr)?.clone();
                let x = self.datum(&args[1])?;
                if ty == APPEND {
                    v.push(x);
                } else {
                    v.insert(0, x);
                }
                Ok(Val::Datum(Datum::array(v)))
            }
            MAP => {
                if args.len() > 2 {
                    return Err(ReqlError::logic(
                        "`map` over several sequences is not supported by this development server.",
                    ));
                }
                let f = self.func(&args[1])?;
                self.apply_op(first, Op::Map(f))
            }
            CONCAT_MAP => {
                let f = self.func(&args[1])?;
                self.apply_op(first, Op::ConcatMap(f))
            }
            FILTER => {
                let pred = match self.func_like(&args[1])? {
                    FuncLike::Func(f) => Pred::Func(f),
                    FuncLike::Value(d @ Datum::Object(_)) => Pred::Match(d),
                    FuncLike::Value(d) => Pred::Const(d.truthy()),
                };
                let default = match t.optarg("default") {
                    None => FilterDefault::Skip,
                    Some(d) => FilterDefault::Lazy(d.clone(), self.env.clone()),
                };
                self.apply_op(first, Op::Filter(pred, default))
            }
            ORDER_BY => self.order_by(first, t, args),
            DISTINCT => {
                if let Some(ix) = t.optarg("index") {
                    let name = self.datum(ix)?;
                    let name = ops::string(&name)?.to_string();
                    let table = table_of(first)?;
                    let index = self.require_index(&table, &name)?;
                    let spec = ScanSpec {
                        index,
                        ..ScanSpec::all()
                    };
                    let data = table.read();
                    let mut keys: Vec<Datum> = data
                        .ordered(&spec, usize::MAX)
                        .into_iter()
                        .map(|e| e.0 .0)
                        .collect();
                    keys.dedup();
                    return Ok(Val::Datum(Datum::array(keys)));
                }
                let mut items = self.ctx.to_array(first)?;
                items.sort();
                items.dedup();
                Ok(Val::Datum(Datum::array(items)))
            }
            COUNT => self.count(first, args),
            IS_EMPTY => {
                let empty = match first {
                    Val::Datum(d) => ops::array(&d)?.is_empty(),
                    other => {
                        let mut s = self.seq(other)?;
                        s.next()?.is_none()
                    }
                };
                Ok(Val::Datum(Datum::Bool(empty)))
            }
            NTH => {
                let i = self.int32(&args[1])?;
                self.nth(first, i)
            }
            SKIP | LIMIT => {
                // RethinkDB reads LIMIT's argument as a 32-bit integer and
                // SKIP's as a 64-bit one (`limits.jsonl`).
                let n = if ty == LIMIT {
                    self.int32(&args[1])?
                } else {
                    self.int(&args[1])?
                };
                if n < 0 {
                    return Err(ReqlError::logic(format!(
                        "{} takes a non-negative argument (got {n})",
                        if ty == LIMIT { "LIMIT" } else { "SKIP" }
                    )));
                }
                let n = n as usize;
                if let Val::Datum(Datum::Str(_)) = first {
                    return Err(ReqlError::logic("Cannot convert STRING to SEQUENCE"));
                }
                self.apply_op(
                    first,
                    if ty == LIMIT {
                        Op::Limit(n)
                    } else {
                        Op::Skip(n)
                    },
                )
            }
            SLICE => self.slice(first, t, args),
            SUM | AVG | MIN | MAX => self.aggregate(ty, first, t, args),
            REDUCE => {
                let f = self.func(&args[1])?;
                let mut s = self.seq(first)?.finite()?;
                let mut acc = match s.next()? {
                    Some(d) => d,
                    None => return Err(ReqlError::missing("Cannot reduce over an empty stream.")),
                };
                while let Some(d) = s.next()? {
                    acc = f.call_datum(&[acc, d])?;
                    if acc.deeper_than(MAX_DEPTH) {
                        return Err(ReqlError::resource(format!(
                            "Nesting depth limit exceeded ({MAX_DEPTH} levels)."
                        )));
                    }
                }
                Ok(Val::Datum(acc))
            }
            CONTAINS => {
                let mut preds = Vec::new();
                for a in &args[1..] {
                    preds.push(self.func_like(a)?);
                }
                let items = self.ctx.to_array(first)?;
                for p in &preds {
                    let mut found = false;
                    for d in &items {
                        let hit = match p {
                            FuncLike::Func(f) => f.call_datum(std::slice::from_ref(d))?.truthy(),
                            FuncLike::Value(v) => d == v,
                        };
                        if hit {
                            found = true;
                            break;
                        }
                    }
                    if !found {
                        return Ok(Val::Datum(Datum::Bool(false)));
                    }
                }
                Ok(Val::Datum(Datum::Bool(true)))
            }
            COERCE_TO => {
                let to = self.string(&args[1])?;
                let lower = to.to_ascii_lowercase();
                match first {
                    v @ (Val::Seq(_) | Val::Table(_) | Val::ArraySel(..)) if lower == "array" => {
                        Ok(Val::Datum(Datum::array(self.ctx.to_array(v)?)))
                    }
                    v @ (Val::Seq(_) | Val::Table(_)) if lower == "object" => {
                        let arr = Datum::array(self.ctx.to_array(v)?);
                        Ok(Val::Datum(ops::coerce(&arr, "object")?))
                    }
                    v => {
                        let d = self.ctx.to_datum(v)?;
                        Ok(Val::Datum(ops::coerce(&d, &to)?))
                    }
                }
            }
            _ => Err(ReqlError::internal(format!("term {ty} dispatched wrongly"))),
        }
    }

    fn nth(&mut self, first: Val, i: i64) -> Result<Val> {
        match first {
            Val::Datum(d) => {
                let a = ops::array(&d)?;
                ops::index_into(i, a.len())
                    .map(|k| Val::Datum(a[k].clone()))
                    .ok_or_else(|| ops::out_of_bounds(i))
            }
            other => {
                let mut s = self.seq(other)?;
                if i < 0 {
                    let all = s.collect()?;
                    return ops::index_into(i, all.len())
                        .map(|k| Val::Datum(all[k].clone()))
                        .ok_or_else(|| ops::out_of_bounds(i));
                }
                let mut k = 0;
                while let Some(d) = s.next()? {
                    if k == i {
                        return Ok(Val::Datum(d));
                    }
                    k += 1;
                }
                Err(ops::out_of_bounds(i))
            }
        }
    }

    fn slice(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        let start = self.int(&args[1])?;
        let end = match args.get(2) {
            Some(a) => Some(self.int(a)?),
            None => None,
        };
        let left_open = matches!(
            self.opt(t, "left_bound")?.as_ref().and_then(Datum::as_str),
            Some("open")
        );
        let right_closed = matches!(
            self.opt(t, "right_bound")?.as_ref().and_then(Datum::as_str),
            Some("closed")
        );
        if let Val::Datum(Datum::Str(s)) = &first {
            let chars: Vec<char> = s.chars().collect();
            let (a, b) = slice_bounds(start, end, chars.len(), left_open, right_closed);
            return Ok(Val::Datum(Datum::from(
                chars[a..b].iter().collect::<String>(),
            )));
        }
        if start < 0 || end.is_some_and(|e| e < 0) {
            let items = self.ctx.to_array(first)?;
            let (a, b) = slice_bounds(start, end, items.len(), left_open, right_closed);
            return Ok(Val::Datum(Datum::array(items[a..b].to_vec())));
        }
        let mut a = start as usize + usize::from(left_open);
        let b = end.map(|e| e as usize + usize::from(right_closed));
        if let Some(b) = b {
            a = a.min(b);
        }
        let v = self.apply_op(first, Op::Skip(a))?;
        match b {
            Some(b) => self.apply_op(v, Op::Limit(b - a)),
            None => Ok(v),
        }
    }

    fn count(&mut self, first: Val, args: &[Term]) -> Result<Val> {
        if let Some(a) = args.get(1) {
            let p = self.func_like(a)?;
            let mut s = self.seq(first)?.finite()?;
            let mut n = 0usize;
            while let Some(d) = s.next()? {
                let hit = match &p {
                    FuncLike::Func(f) => f.call_datum(std::slice::from_ref(&d))?.truthy(),
                    FuncLike::Value(v) => &d == v,
                };
                if hit {
                    n += 1;
                }
            }
            return Ok(Val::Datum(Datum::from(n)));
        }
        let n = match first {
            Val::Table(t) => t.read().len(),
            Val::Datum(Datum::Array(a)) => a.len(),
            Val::Datum(Datum::Str(s)) => s.chars().count(),
            Val::Datum(Datum::Object(o)) => o.len(),
            Val::Single(Single {
                doc: Some(Datum::Object(o)),
                ..
            }) => o.len(),
            Val::ArraySel(_, items) => items.len(),
            other => {
                let mut s = self.seq(other)?.finite()?;
                if let Some(n) = s.known_len() {
                    return Ok(Val::Datum(Datum::from(n)));
                }
                let mut n = 0usize;
                while s.next()?.is_some() {
                    n += 1;
                }
                n
            }
        };
        Ok(Val::Datum(Datum::from(n)))
    }

    fn aggregate(&mut self, ty: u32, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        let name = match ty {
            tt::SUM => "sum",
            tt::AVG => "avg",
            tt::MIN => "min",
            _ => "max",
        };
        if let Some(ix) = t.optarg("index") {
            let index = self.datum(ix)?;
            let index = ops::string(&index)?.to_string();
            let table = table_of(first)?;
            let index = self.require_index(&table, &index)?;
            let spec = ScanSpec {
                index,
                desc: ty == tt::MAX,
                ..ScanSpec::all()
            };
            let top = table.read().ordered(&spec, 1);
            return top
                .into_iter()
                .next()
                .map(|e| Val::Datum(e.1))
                .ok_or_else(|| empty_aggregate(name));
        }
        let key = match args.get(1) {
            Some(a) => Some(self.func_like(a)?),
            None => None,
        };
        let mut s = self.seq(first)?.finite()?;
        let mut sum = 0.0;
        let mut n = 0usize;
        let mut best: Option<(Datum, Datum)> = None;
        while let Some(d) = s.next()? {
            let v = match &key {
                None => d.clone(),
                Some(FuncLike::Value(Datum::Str(f))) => match d.get(f) {
                    Some(v) => v.clone(),
                    None => continue,
                },
                Some(FuncLike::Func(f)) => match f.call_datum(std::slice::from_ref(&d)) {
                    Ok(v) => v,
                    Err(e) if e.is_non_existence() => continue,
                    Err(e) => return Err(e),
                },
                Some(FuncLike::Value(other)) => {
                    return Err(ReqlError::logic(format!(
                        "Expected type STRING but found {}.",
                        other.type_name()
                    )))
                }
            };
            match ty {
                tt::SUM | tt::AVG => {
                    sum += ops::num(&v)?;
                    n += 1;
                }
                _ => {
                    let better = match &best {
                        None => true,
                        Some((b, _)) => {
                            if ty == tt::MIN {
                                v < *b
                            } else {
                                v > *b
                            }
                        }
                    };
                    if better {
                        best = Some((v, d));
                    }
                }
            }
        }
        match ty {
            tt::SUM => Ok(Val::Datum(Datum::Num(sum))),
            tt::AVG => {
                if n == 0 {
                    return Err(empty_aggregate(name));
                }
                Ok(Val::Datum(Datum::Num(sum / n as f64)))
            }
            _ => best
                .map(|(_, d)| Val::Datum(d))
                .ok_or_else(|| empty_aggregate(name)),
        }
    }

    fn group(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        let multi = self.opt_bool(t, "multi")?;
        let mut keys = Vec::new();
        for a in &args[1..] {
            keys.push(self.func_like(a)?);
        }
        if let Some(ix) = t.optarg("index") {
            let index = self.datum(ix)?;
            let index = ops::string(&index)?.to_string();
            let table = table_of(first)?;
            let index = self.require_index(&table, &index)?;
            let mut groups: BTreeMap<Datum, Vec<Datum>> = BTreeMap::new();
            let spec = ScanSpec {
                index,
                ..ScanSpec::all()
            };
            for ((k, _), d) in table.read().ordered(&spec, usize::MAX) {
                groups.entry(k).or_default().push(d);
            }
            return Ok(Val::Grouped(
                groups
                    .into_iter()
                    .map(|(k, v)| (k, Datum::array(v)))
                    .collect(),
            ));
        }
        let mut s = self.seq(first)?.finite()?;
        let mut groups: BTreeMap<Datum, Vec<Datum>> = BTreeMap::new();
        while let Some(d) = s.next()? {
            let mut vals = Vec::with_capacity(keys.len());
            for k in &keys {
                let v = match k {
                    FuncLike::Value(Datum::Str(f)) => d.get(f).cloned().unwrap_or(Datum::Null),
                    FuncLike::Value(other) => {
                        return Err(ReqlError::logic(format!(
                            "Expected type STRING but found {}.",
                            other.type_name()
                        )))
                    }
                    FuncLike::Func(f) => match f.call_datum(std::slice::from_ref(&d)) {
                        Ok(v) => v,
                        Err(e) if e.is_non_existence() => Datum::Null,
                        Err(e) => return Err(e),
                    },
                };
                vals.push(v);
            }
            let key = if vals.len() == 1 {
                vals.pop().unwrap_or(Datum::Null)
            } else {
                Datum::array(vals)
            };
            match (&key, multi) {
                (Datum::Array(items), true) => {
                    for k in items.iter() {
                        groups.entry(k.clone()).or_default().push(d.clone());
                    }
                }
                _ => groups.entry(key).or_default().push(d),
            }
        }
        Ok(Val::Grouped(
            groups
                .into_iter()
                .map(|(k, v)| (k, Datum::array(v)))
                .collect(),
        ))
    }

    fn union(&mut self, args: &[Term]) -> Result<Val> {
        let mut vals = Vec::new();
        for a in args {
            vals.push(self.eval(a)?);
        }
        let all_arrays = vals.iter().all(|v| matches!(v, Val::Datum(_)));
        if all_arrays {
            let mut out = Vec::new();
            for v in vals {
                out.extend(self.ctx.to_array(v)?);
            }
            return Ok(Val::Datum(Datum::array(out)));
        }
        let mut parts = Vec::new();
        for v in vals {
            parts.push(self.seq(v)?);
        }
        let feeds: Vec<&Seq> = parts.iter().filter(|p| p.is_feed()).collect();
        if !feeds.is_empty() {
            if feeds.len() != parts.len() {
                return Err(ReqlError::logic(
                    "Cannot union a changefeed with a sequence that is not a changefeed.",
                ));
            }
            let first_notes: Vec<u32> =
                parts[0].notes.iter().copied().filter(|n| *n != 5).collect();
            let same = parts.iter().all(|p| {
                p.notes
                    .iter()
                    .copied()
                    .filter(|n| *n != 5)
                    .collect::<Vec<_>>()
                    == first_notes
            });
            let mut notes = if same { first_notes } else { vec![4] };
            if parts.iter().all(|p| p.notes.contains(&5)) {
                notes.push(5);
            }
            let mut s = Seq::new(Source::Union(parts, 0), SeqKind::Feed, self.ctx.clone());
            s.notes = notes;
            return Ok(Val::Seq(Box::new(s)));
        }
        Ok(Val::Seq(Box::new(Seq::new(
            Source::Union(parts, 0),
            SeqKind::Stream,
            self.ctx.clone(),
        ))))
    }

    fn get_all(&mut self, t: &Term, args: &[Term]) -> Result<Val> {
        let table = table_of(self.eval(&args[0])?)?;
        let index = match self.opt(t, "index")? {
            Some(d) => ops::string(&d)?.to_string(),
            None => table.primary_key.clone(),
        };
        let index = self.require_index(&table, &index)?;
        let mut keys = Vec::new();
        for a in &args[1..] {
            keys.push(self.datum(a)?);
        }
        let mut docs = Vec::new();
        {
            let data = table.read();
            for k in &keys {
                if index.is_none() {
                    crate::datum::primary_key_bytes(k)
                        .map_err(|e| ReqlError::missing(e.message()))?;
                }
                docs.extend(data.lookup(index.as_deref(), k));
            }
        }
        let mut s = Seq::from_items(docs, self.ctx.clone());
        s.table = Some(table);
        s.kind = SeqKind::Selection;
        s.get_all = Some((index, keys));
        Ok(Val::Seq(Box::new(s)))
    }

    fn between(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        let lo = self.datum(&args[1])?;
        let hi = self.datum(&args[2])?;
        let index_opt = match self.opt(t, "index")? {
            Some(d) => Some(ops::string(&d)?.to_string()),
            None => None,
        };
        let left_open = match self.opt(t, "left_bound")? {
            None => false,
            Some(d) => bound_open(&d, "left_bound")?,
        };
        let right_open = match self.opt(t, "right_bound")? {
            None => true,
            Some(d) => bound_open(&d, "right_bound")?,
        };
        let mut seq = match first {
            Val::Table(table) => {
                let mut s = Seq::new(
                    Source::Scan(Box::new(TableScan::new(
                        table.clone(),
                        ScanSpec::all(),
                        false,
                    ))),
                    SeqKind::Table,
                    self.ctx.clone(),
                );
                s.table = Some(table);
                s
            }
            Val::Seq(s) if s.scan().is_some_and(|sc| sc.local.is_empty()) => *s,
            other => {
                return Err(ReqlError::logic(format!(
                    "Expected type TABLE_SLICE but found {}.",
                    val_kind(&other)
                )))
            }
        };
        let Some(scan) = seq.scan_mut() else {
            return Err(ReqlError::internal("between lost its table"));
        };
        let table = scan.table.clone();
        let index_name = index_opt.unwrap_or_else(|| match (&scan.spec.index, scan.ordered) {
            (Some(ix), true) => ix.clone(),
            _ => table.primary_key.clone(),
        });
        let index = self.require_index(&table, &index_name)?;
        if scan.ordered && scan.spec.index != index {
            let ordered_on = scan
                .spec
                .index
                .clone()
                .unwrap_or_else(|| table.primary_key.clone());
            return Err(ReqlError::logic(format!(
                "Cannot call BETWEEN on index `{index_name}` after ordering on index `{ordered_on}`."
            )));
        }
        if !matches!(
            (&scan.spec.lo, &scan.spec.hi),
            (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        ) {
            return Err(ReqlError::logic(
                "Cannot perform multiple BETWEENs on the same table.",
            ));
        }
        scan.spec.index = index;
        scan.spec.lo = match lo {
            Datum::MinVal => std::ops::Bound::Unbounded,
            d if left_open => std::ops::Bound::Excluded(d),
            d => std::ops::Bound::Included(d),
        };
        scan.spec.hi = match hi {
            Datum::MaxVal => std::ops::Bound::Unbounded,
            d if right_open => std::ops::Bound::Excluded(d),
            d => std::ops::Bound::Included(d),
        };
        seq.kind = SeqKind::TableSlice;
        Ok(Val::Seq(Box::new(seq)))
    }

    fn order_by(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
        if let Some(ix) = t.optarg("index") {
            let (name_term, desc) = match ix.ty() {
                tt::DESC => (ix.args().first().cloned(), true),
                tt::ASC => (ix.args().first().cloned(), false),
                _ => (Some(ix.clone()), false),
            };
            let name = match name_term {
                Some(n) => self.string(&n)?,
                None => return Err(ReqlError::compile("Expected 1 argument but found 0.")),
            };
            if args.len() > 1 {
                return Err(ReqlError::logic(
                    "orderBy with both an index and other keys is not supported by this development server.",
                ));
            }
            let mut seq = match first {
                Val::Table(table) => {
                    let mut s = Seq::new(
                        Source::Scan(Box::new(TableScan::new(
                            table.clone(),
                            ScanSpec::all(),
                            false,
                        ))),
                        SeqKind::Table,
                        self.ctx.clone(),
                    );
                    s.table = Some(table);
                    s
                }
                Val::Seq(s)
                    if s.scan()
                        .is_some_and(|sc| sc.local.is_empty() && !sc.ordered) =>
                {
                    *s
                }
                _ => {
                    return Err(ReqlError::logic(
                        "Indexed order_by can only be performed on a TABLE or TABLE_SLICE.",
                    ))
                }
            };
            let Some(scan) = seq.scan_mut() else {
                return Err(ReqlError::internal("order_by lost its table"));
            };
            let table = scan.table.clone();
            let index = self.require_index(&table, &name)?;
            let has_range = !matches!(
                (&scan.spec.lo, &scan.spec.hi),
                (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            );
            if has_range && scan.spec.index != index {
                let between_on = scan
                    .spec
                    .index
                    .clone()
                    .unwrap_or_else(|| table.primary_key.clone());
                return Err(ReqlError::logic(format!(
                    "Cannot order by index `{name}` after calling BETWEEN on index `{between_on}`."
                )));
            }
            scan.spec.index = index;
            scan.spec.desc = desc;
            scan.ordered = true;
            seq.kind = SeqKind::TableSlice;
            return Ok(Val::Seq(Box::new(seq)));
        }
        // Without an index the whole sequence is read and sorted in memory.
        let mut keys = Vec::new();
        for a in &args[1..] {
            let (inner, desc) = match a.ty() {
                tt::DESC => (a.args().first().cloned(), true),
                tt::ASC => (a.args().first().cloned(), false),
                _ => (Some(a.clone()), false),
            };
            let Some(inner) = inner else {
                return Err(ReqlError::compile("Expected 1 argument but found 0."));
            };
            keys.push((self.func_like(&inner)?, desc));
        }
        let table = match &first {
            Val::Table(t) => Some(t.clone()),
            Val::Seq(s) => s.table.clone(),
            Val::ArraySel(t, _) => Some(t.clone()),
            _ => None,
        };
        let items = self.ctx.to_array(first)?;
        let mut keyed = Vec::with_capacity(items.len());
        for d in items {
            let mut ks = Vec::with_capacity(keys.len());
            for (k, _) in &keys {
                let v = match k {
                    FuncLike::Value(Datum::Str(f)) => match seq::get_field(&d, f) {
                        Ok(v) => v,
                        Err(e) if e.is_non_existence() => Datum::MinVal,
                        Err(e) => return Err(e),
                    },
                    other => other.call1(&d)?,
                };
                ks.push(v);
            }
            keyed.push((ks, d));
        }
        keyed.sort_by(|a, b| {
            for (i, (_, desc)) in keys.iter().enumerate() {
                let o = a.0[i].cmp(&b.0[i]);
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        let sorted: Vec<Datum> = keyed.into_iter().map(|(_, d)| d).collect();
        Ok(match table {
            Some(t) => Val::ArraySel(t, sorted),
            None => Val::Datum(Datum::array(sorted)),
        })
    }
}

fn get_field_named(d: &Datum, field: &str, opname: &str) -> Result<Datum> {
    seq::get_field(d, field).map_err(|e| match e {
        ReqlError::Runtime(kind, msg) => {
            ReqlError::Runtime(kind, msg.replacen("bracket", opname, 1))
        }
        other => other,
    })
}

fn bound_open(d: &Datum, name: &str) -> Result<bool> {
    match d.as_str() {
        Some("open") => Ok(true),
        Some("closed") => Ok(false),
        _ => Err(ReqlError::logic(format!(
            "Expected `open` or `closed` for optarg `{name}` (got `{}`).",
            d.to_json().unwrap_or_default()
        ))),
    }
}

fn slice_bounds(
    start: i64,
    end: Option<i64>,
    len: usize,
    left_open: bool,
    right_closed: bool,
) -> (usize, usize) {
    let norm = |i: i64| -> i64 {
        if i < 0 {
            (len as i64 + i).max(0)
        } else {
            i.min(len as i64)
        }
    };
    let mut a = norm(start) + i64::from(left_open);
    let mut b = match end {
        Some(e) => norm(e) + i64::from(right_closed),
        None => len as i64,
    };
    a = a.clamp(0, len as i64);
    b = b.clamp(0, len as i64);
    if b < a {
        b = a;
    }
    (a as usize, b as usize)
}

fn empty_aggregate(name: &str) -> ReqlError {
    let what = if name == "avg" { "the average" } else { name };
    let what = if name == "min" || name == "max" {
        format!("the {name}")
    } else {
        what.to_string()
    };
    ReqlError::missing(format!(
        "Cannot take {what} of an empty stream.  (If you passed `{name}` a field name, it may be that no elements of the stream had that field.)"
    ))
}

/// How a value is named in "Expected type X but found Y" messages.
fn val_kind(v: &Val) -> String {
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
