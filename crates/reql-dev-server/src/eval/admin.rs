//! Administration terms: databases, tables, indexes, and the `config`, `status`,
//! `wait` and `info` documents, shaped as a single-server RethinkDB reports them.

use std::sync::Arc;

use super::{ops, table_of, Evaluator, FuncVal, QueryCtx, Val};
use crate::datum::{Datum, Obj, REQL_TYPE};
use crate::error::{ReqlError, Result};
use crate::storage::{DbInfo, Durability, IndexDef, KeyFn, Table, TableSpec};
use crate::term::{self, tt, Kind, Term};

pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ReqlError::logic(format!(
            "{kind} name `{name}` invalid (Use A-Z, a-z, 0-9, _ and - only)."
        )))
    }
}

fn obj(pairs: Vec<(&str, Datum)>) -> Datum {
    let mut o = Obj::new();
    for (k, v) in pairs {
        o.insert(k.to_string(), v);
    }
    Datum::object(o)
}

fn strs(v: Vec<String>) -> Datum {
    Datum::array(v.into_iter().map(Datum::from).collect())
}

fn db_doc(d: &DbInfo) -> Datum {
    obj(vec![
        ("id", Datum::from(d.id.to_string())),
        ("name", Datum::from(d.name.as_str())),
    ])
}

fn table_config(t: &Table, server: &str) -> Datum {
    table_config_with_db(t, server, Datum::from(t.db.as_str()))
}

fn table_config_with_db(t: &Table, server: &str, db: Datum) -> Datum {
    let indexes = t.read().index_names();
    obj(vec![
        ("db", db),
        ("durability", Datum::from(t.durability.name())),
        ("id", Datum::from(t.id.to_string())),
        ("indexes", strs(indexes)),
        ("name", Datum::from(t.name.as_str())),
        ("primary_key", Datum::from(t.primary_key.as_str())),
        (
            "shards",
            Datum::array(vec![obj(vec![
                ("nonvoting_replicas", Datum::array(vec![])),
                ("primary_replica", Datum::from(server)),
                ("replicas", Datum::array(vec![Datum::from(server)])),
            ])]),
        ),
        ("write_acks", Datum::from("majority")),
        ("write_hook", Datum::Null),
    ])
}

fn table_status(t: &Table, server: &str) -> Datum {
    obj(vec![
        ("db", Datum::from(t.db.as_str())),
        ("id", Datum::from(t.id.to_string())),
        ("name", Datum::from(t.name.as_str())),
        ("raft_leader", Datum::from(server)),
        (
            "shards",
            Datum::array(vec![obj(vec![
                ("primary_replicas", Datum::array(vec![Datum::from(server)])),
                (
                    "replicas",
                    Datum::array(vec![obj(vec![
                        ("server", Datum::from(server)),
                        ("state", Datum::from("ready")),
                    ])]),
                ),
            ])]),
        ),
        (
            "status",
            obj(vec![
                ("all_replicas_ready", Datum::Bool(true)),
                ("ready_for_outdated_reads", Datum::Bool(true)),
                ("ready_for_reads", Datum::Bool(true)),
                ("ready_for_writes", Datum::Bool(true)),
            ]),
        ),
    ])
}

fn index_status(d: &IndexDef) -> Datum {
    obj(vec![
        (
            "function",
            obj(vec![
                (REQL_TYPE, Datum::from("BINARY")),
                ("data", Datum::from(d.blob.as_str())),
            ]),
        ),
        ("geo", Datum::Bool(d.geo)),
        ("index", Datum::from(d.name.as_str())),
        ("multi", Datum::Bool(d.multi)),
        ("outdated", Datum::Bool(false)),
        ("query", Datum::from(d.query.as_str())),
        ("ready", Datum::Bool(true)),
    ])
}

fn change(old: Datum, new: Datum) -> Datum {
    obj(vec![("new_val", new), ("old_val", old)])
}

/// The wire JSON of a term, used to keep index functions in the log.
pub fn term_json(t: &Term) -> serde_json::Value {
    fn datum_json(d: &Datum) -> serde_json::Value {
        match d {
            Datum::Array(a) => {
                serde_json::json!([tt::MAKE_ARRAY, a.iter().map(datum_json).collect::<Vec<_>>()])
            }
            Datum::Object(o) => serde_json::Value::Object(
                o.iter().map(|(k, v)| (k.clone(), datum_json(v))).collect(),
            ),
            Datum::MinVal => serde_json::json!([tt::MINVAL, []]),
            Datum::MaxVal => serde_json::json!([tt::MAXVAL, []]),
            other => other
                .to_json()
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null),
        }
    }
    match t.kind() {
        Kind::Datum(d) => datum_json(d),
        Kind::Func { params, body, .. } => {
            serde_json::json!([tt::FUNC, [[tt::MAKE_ARRAY, params], term_json(body)]])
        }
        Kind::Op { ty, args, optargs } => {
            let args: Vec<_> = args.iter().map(term_json).collect();
            if *ty == tt::MAKE_OBJ {
                return serde_json::Value::Object(
                    optargs
                        .iter()
                        .map(|(k, v)| (k.clone(), term_json(v)))
                        .collect(),
                );
            }
            if optargs.is_empty() {
                serde_json::json!([ty, args])
            } else {
                let o: serde_json::Map<_, _> = optargs
                    .iter()
                    .map(|(k, v)| (k.clone(), term_json(v)))
                    .collect();
                serde_json::json!([ty, args, o])
            }
        }
    }
}

/// Builds the key function of an index from its function term.
pub fn compile_index_fn(func: &Term) -> Result<KeyFn> {
    term::check(func)?;
    let ctx = Arc::new(QueryCtx::detached());
    let f = match func.kind() {
        Kind::Func { params, body, .. } => FuncVal {
            params: Arc::new(params.clone()),
            body: body.clone(),
            env: Default::default(),
            ctx,
            implicit_only: false,
        },
        _ => FuncVal {
            params: Arc::new(Vec::new()),
            body: func.clone(),
            env: Default::default(),
            ctx,
            implicit_only: true,
        },
    };
    Ok(Arc::new(move |doc: &Datum| {
        match f.call_datum(std::slice::from_ref(doc)) {
            Ok(v) => vec![v],
            Err(_) => Vec::new(),
        }
    }))
}

/// Compiles an index function kept in the log (its wire JSON).
/// Rebuilds index functions kept in the log when a data directory is opened.
pub fn admin_compiler() -> crate::storage::IndexCompiler {
    Arc::new(|json: &serde_json::Value| compile_stored_index(json))
}

pub fn compile_stored_index(json: &serde_json::Value) -> std::result::Result<KeyFn, String> {
    let t = Term::parse(json).map_err(|e| e.to_string())?;
    compile_index_fn(&t).map_err(|e| e.to_string())
}

/// `r.db("rethinkdb").table(name)`: `table_config` and `db_config` as they
/// are now, with rows that can be deleted to drop a table or a database (how a
/// duplicated table name is repaired); the other system tables are not served.
///
/// With `by_uuid` (`identifierFormat: "uuid"`), a table's `db` is its
/// database's id rather than its name.
pub(super) fn system_table(ctx: &QueryCtx, name: &str, by_uuid: bool) -> Result<Arc<Table>> {
    let store = ctx.store()?.clone();
    let server = ctx.server_name();
    let uuid_of = |key: &Datum| match key {
        Datum::Str(s) => uuid::Uuid::parse_str(s).ok(),
        _ => None,
    };
    match name {
        "table_config" => {
            let rows = store
                .all_tables()
                .iter()
                .map(|t| {
                    let db = if by_uuid {
                        Datum::from(t.db_id.to_string())
                    } else {
                        Datum::from(t.db.as_str())
                    };
                    table_config_with_db(t, &server, db)
                })
                .collect();
            Ok(Table::system_view(
                name,
                rows,
                Arc::new(move |key| {
                    let dropped = uuid_of(key).map(|id| store.table_drop_id(id)).transpose()?;
                    Ok(dropped.flatten().map_or(0, |(_, seq)| seq))
                }),
            ))
        }
        "db_config" => {
            let rows = store.all_dbs().iter().map(db_doc).collect();
            Ok(Table::system_view(
                name,
                rows,
                Arc::new(move |key| {
                    let dropped = uuid_of(key).map(|id| store.db_drop_id(id)).transpose()?;
                    Ok(dropped.flatten().map_or(0, |(_, _, seq)| seq))
                }),
            ))
        }
        _ if crate::storage::SYSTEM_TABLES.contains(&name) => Err(ReqlError::op_failed(format!(
            "System table `{}.{name}` is not available on this development server.",
            crate::storage::SYSTEM_DB
        ))),
        _ => Err(ReqlError::op_failed(format!(
            "Table `{}.{name}` does not exist.",
            crate::storage::SYSTEM_DB
        ))),
    }
}

pub(super) fn eval_admin(ev: &mut Evaluator<'_>, ty: u32, t: &Term, args: &[Term]) -> Result<Val> {
    let store = ev.ctx.store()?.clone();
    let server = ev.ctx.server_name();
    match ty {
        tt::DB_CREATE => {
            let name = ev.string(&args[0])?;
            check_name("Database", &name)?;
            let (info, seq) = store.db_create(&name)?;
            ev.ctx.note_durable(seq);
            Ok(Val::Datum(obj(vec![
                (
                    "config_changes",
                    Datum::array(vec![change(Datum::Null, db_doc(&info))]),
                ),
                ("dbs_created", Datum::from(1usize)),
            ])))
        }
        tt::DB_DROP => {
            let name = ev.string(&args[0])?;
            check_name("Database", &name)?;
            let (info, tables, seq) = store.db_drop(&name)?;
            ev.ctx.note_durable(seq);
            Ok(Val::Datum(obj(vec![
                (
                    "config_changes",
                    Datum::array(vec![change(db_doc(&info), Datum::Null)]),
                ),
                ("dbs_dropped", Datum::from(1usize)),
                ("tables_dropped", Datum::from(tables.len())),
            ])))
        }
        tt::DB_LIST => Ok(Val::Datum(strs(store.db_list()))),
        tt::TABLE_CREATE | tt::TABLE_DROP | tt::TABLE_LIST => {
            let (db, rest) = match args.first().map(|a| ev.eval(a)).transpose()? {
                Some(Val::Db(d)) => (d.name, &args[1..]),
                Some(other) => {
                    let db = ev.db_name(None)?;
                    let name = ev.ctx.to_datum(other)?;
                    return table_admin(
                        ev,
                        ty,
                        t,
                        &db,
                        Some(ops::string(&name)?.to_string()),
                        &server,
                    );
                }
                None => (ev.db_name(None)?, &args[0..0]),
            };
            let name = match rest.first() {
                Some(a) => Some(ev.string(a)?),
                None => None,
            };
            table_admin(ev, ty, t, &db, name, &server)
        }
        tt::CONFIG | tt::STATUS | tt::INFO | tt::WAIT => {
            let target = match args.first() {
                Some(a) => ev.eval(a)?,
                None => {
                    return Err(ReqlError::logic(
                        "`wait` without a table or database is not supported by this development server.",
                    ))
                }
            };
            match target {
                Val::Db(d) => match ty {
                    tt::CONFIG => Ok(Val::Datum(db_doc(&d))),
                    tt::INFO => Ok(Val::Datum(obj(vec![
                        ("id", Datum::from(d.id.to_string())),
                        ("name", Datum::from(d.name.as_str())),
                        ("type", Datum::from("DB")),
                    ]))),
                    tt::WAIT => {
                        wait_opts(ev, t)?;
                        let n = store.tables_of(&d.name).len();
                        Ok(Val::Datum(obj(vec![("ready", Datum::from(n))])))
                    }
                    _ => Err(ReqlError::logic("Expected type TABLE but found DATABASE.")),
                },
                other => {
                    let table = table_of(other)?;
                    match ty {
                        tt::CONFIG => Ok(Val::Datum(table_config(&table, &server))),
                        tt::STATUS => Ok(Val::Datum(table_status(&table, &server))),
                        tt::WAIT => {
                            wait_opts(ev, t)?;
                            Ok(Val::Datum(obj(vec![("ready", Datum::from(1usize))])))
                        }
                        _ => {
                            let db = store.db(&table.db)?;
                            let (indexes, count) = {
                                let data = table.read();
                                (data.index_names(), data.len())
                            };
                            Ok(Val::Datum(obj(vec![
                                (
                                    "db",
                                    obj(vec![
                                        ("id", Datum::from(db.id.to_string())),
                                        ("name", Datum::from(db.name.as_str())),
                                        ("type", Datum::from("DB")),
                                    ]),
                                ),
                                (
                                    "doc_count_estimates",
                                    Datum::array(vec![Datum::from(count)]),
                                ),
                                ("id", Datum::from(table.id.to_string())),
                                ("indexes", strs(indexes)),
                                ("name", Datum::from(table.name.as_str())),
                                ("primary_key", Datum::from(table.primary_key.as_str())),
                                ("type", Datum::from("TABLE")),
                            ])))
                        }
                    }
                }
            }
        }
        tt::INDEX_CREATE => {
            let table = table_of(ev.eval(&args[0])?)?;
            let name = ev.string(&args[1])?;
            let multi = ev.opt_bool(t, "multi")?;
            let geo = ev.opt_bool(t, "geo")?;
            if geo {
                return Err(ReqlError::logic(
                    "Geospatial indexes are not supported by this development server.",
                ));
            }
            if name == table.primary_key {
                return Err(ReqlError::logic(format!(
                    "Index name conflict: `{name}` is the name of the primary key."
                )));
            }
            check_name("Index", &name)?;
            let func = match args.get(2) {
                Some(f) => match f.kind() {
                    Kind::Func { .. } => f.clone(),
                    _ if f.uses_implicit_var() => Term::func(vec![1], f.clone()),
                    _ => {
                        // A constant or a function value built elsewhere in the query.
                        match ev.eval(f)? {
                            Val::Func(fv) => {
                                Term::func(fv.params.as_ref().clone(), fv.body.clone())
                            }
                            other => {
                                let d = ev.ctx.to_datum(other)?;
                                Term::func(vec![1], Term::datum(d))
                            }
                        }
                    }
                },
                None => term::field_index_function(&name),
            };
            if !func.is_deterministic() {
                return Err(ReqlError::logic(
                    "Could not prove function deterministic.  Index functions must be deterministic.",
                ));
            }
            if table.read().has_index(&name) {
                return Err(ReqlError::op_failed(format!(
                    "Index `{name}` already exists on table `{}`.",
                    table.full_name()
                )));
            }
            let keys = compile_index_fn(&func)?;
            let forms = term::index_function_forms(&name, &func, multi, geo);
            table.index_create(IndexDef {
                name,
                multi,
                geo,
                func_json: term_json(&func),
                query: forms.query,
                blob: forms.blob_base64,
                keys,
            })?;
            Ok(Val::Datum(obj(vec![("created", Datum::from(1usize))])))
        }
        tt::INDEX_DROP => {
            let table = table_of(ev.eval(&args[0])?)?;
            let name = ev.string(&args[1])?;
            table.index_drop(&name)?;
            Ok(Val::Datum(obj(vec![("dropped", Datum::from(1usize))])))
        }
        tt::INDEX_LIST => {
            let table = table_of(ev.eval(&args[0])?)?;
            let names = table.read().index_names();
            Ok(Val::Datum(strs(names)))
        }
        tt::INDEX_STATUS | tt::INDEX_WAIT => {
            let table = table_of(ev.eval(&args[0])?)?;
            let mut wanted = Vec::new();
            for a in &args[1..] {
                wanted.push(ev.string(a)?);
            }
            let defs = table.read().index_defs();
            for w in &wanted {
                if !defs.iter().any(|d| &d.name == w) {
                    return Err(ReqlError::op_failed(format!(
                        "Index `{w}` was not found on table `{}`.",
                        table.full_name()
                    )));
                }
            }
            let out = defs
                .iter()
                .filter(|d| wanted.is_empty() || wanted.contains(&d.name))
                .map(|d| index_status(d))
                .collect();
            Ok(Val::Datum(Datum::array(out)))
        }
        tt::INDEX_RENAME => {
            let table = table_of(ev.eval(&args[0])?)?;
            let from = ev.string(&args[1])?;
            let to = ev.string(&args[2])?;
            let overwrite = ev.opt_bool(t, "overwrite")?;
            for n in [&from, &to] {
                if *n == table.primary_key {
                    return Err(ReqlError::logic(format!(
                        "Index name conflict: `{n}` is the name of the primary key."
                    )));
                }
            }
            check_name("Index", &to)?;
            let renamed = table.index_rename(&from, &to, overwrite)?;
            Ok(Val::Datum(obj(vec![(
                "renamed",
                Datum::from(usize::from(renamed)),
            )])))
        }
        _ => Err(ReqlError::internal(format!(
            "term {ty} is not an administration term"
        ))),
    }
}

fn wait_opts(ev: &mut Evaluator<'_>, t: &Term) -> Result<()> {
    if let Some(w) = ev.opt(t, "wait_for")? {
        let w = ops::string(&w)?;
        if !matches!(
            w,
            "ready_for_outdated_reads"
                | "ready_for_reads"
                | "ready_for_writes"
                | "all_replicas_ready"
        ) {
            return Err(ReqlError::logic(format!(
                "Unknown replica state `{w}` (options are \"ready_for_outdated_reads\", \"ready_for_reads\", \"ready_for_writes\", and \"all_replicas_ready\")."
            )));
        }
    }
    if let Some(timeout) = ev.opt(t, "timeout")? {
        ops::num(&timeout)?;
    }
    Ok(())
}

fn table_admin(
    ev: &mut Evaluator<'_>,
    ty: u32,
    t: &Term,
    db: &str,
    name: Option<String>,
    server: &str,
) -> Result<Val> {
    let store = ev.ctx.store()?.clone();
    match ty {
        tt::TABLE_LIST => Ok(Val::Datum(strs(store.table_list(db)?))),
        tt::TABLE_CREATE => {
            let name =
                name.ok_or_else(|| ReqlError::compile("Expected 1 argument but found 0."))?;
            check_name("Table", &name)?;
            let pk = match ev.opt(t, "primary_key")? {
                Some(d) => ops::string(&d)?.to_string(),
                None => "id".to_string(),
            };
            let durability = match ev.opt(t, "durability")? {
                Some(d) => {
                    let s = ops::string(&d)?;
                    Durability::parse(s).ok_or_else(|| {
                        ReqlError::logic(format!(
                            "Durability option `{s}` unrecognized (options are \"hard\" and \"soft\")."
                        ))
                    })?
                }
                None => Durability::Hard,
            };
            for opt in ["shards", "replicas"] {
                if let Some(d) = ev.opt(t, opt)? {
                    if d.as_int().is_some_and(|n| n != 1) {
                        return Err(ReqlError::op_failed(format!(
                            "Can't use {} {opt} with only one server (this development server).",
                            d.to_json().unwrap_or_default()
                        )));
                    }
                }
            }
            let table = store.table_create(
                db,
                &name,
                TableSpec {
                    primary_key: &pk,
                    durability,
                },
            )?;
            ev.ctx.note_created_table(table.clone());
            Ok(Val::Datum(obj(vec![
                (
                    "config_changes",
                    Datum::array(vec![change(Datum::Null, table_config(&table, server))]),
                ),
                ("tables_created", Datum::from(1usize)),
            ])))
        }
        _ => {
            let name =
                name.ok_or_else(|| ReqlError::compile("Expected 1 argument but found 0."))?;
            check_name("Table", &name)?;
            let config = table_config(&*store.table(db, &name)?, server);
            let (_, seq) = store.table_drop(db, &name)?;
            ev.ctx.note_durable(seq);
            Ok(Val::Datum(obj(vec![
                (
                    "config_changes",
                    Datum::array(vec![change(config, Datum::Null)]),
                ),
                ("tables_dropped", Datum::from(1usize)),
            ])))
        }
    }
}
