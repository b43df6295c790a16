//! `insert`, `update`, `replace` and `delete`. Each document is read, changed and
//! stored while its table's write lock is held, so a function update such as
//! `row('score').add(1)` is atomic per document. Errors raised for one document
//! (a duplicate key, a failing update function) are counted in the write result,
//! as RethinkDB does, instead of failing the query.

use std::sync::Arc;

use super::seq::merge_values;
use super::{ops, table_of, Evaluator, FuncLike, FuncVal, Single, Val};
use crate::datum::{primary_key_bytes, shard_of, Datum, Obj, SHARDS};
use crate::error::{ReqlError, Result};
use crate::storage::{Durability, Table, TableWriter};
use crate::term::Term;

/// Documents handled per write-lock hold in multi-document writes, so readers get
/// a turn during a large update.
const LOCK_CHUNK: usize = 256;

#[derive(Default)]
struct Stats {
    inserted: usize,
    replaced: usize,
    unchanged: usize,
    skipped: usize,
    deleted: usize,
    errors: usize,
    first_error: Option<String>,
    generated: Vec<Datum>,
    changes: Vec<Datum>,
    want_changes: bool,
    /// `return_changes: "always"`: documents left unchanged, skipped or
    /// failed get a change too.
    always_changes: bool,
}

impl Stats {
    fn error(&mut self, msg: impl Into<String>) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg.into());
        }
    }

    fn change(&mut self, old: Option<Datum>, new: Option<Datum>) {
        if self.want_changes {
            let mut o = Obj::new();
            o.insert("new_val".into(), new.unwrap_or(Datum::Null));
            o.insert("old_val".into(), old.unwrap_or(Datum::Null));
            self.changes.push(Datum::object(o));
        }
    }

    /// A document an `update` left as it was.
    fn unchanged_doc(&mut self, doc: &Datum) {
        self.unchanged += 1;
        if self.always_changes {
            self.change(Some(doc.clone()), Some(doc.clone()));
        }
    }

    /// A key an `update` found no document at.
    fn skipped_doc(&mut self) {
        self.skipped += 1;
        if self.always_changes {
            self.change(None, None);
        }
    }

    /// A write that failed with `msg` on `doc` (`None`: on a key with no
    /// document, or on a document that never reached the table).
    fn error_on(&mut self, doc: Option<&Datum>, msg: impl Into<String>) {
        let msg = msg.into();
        if self.always_changes {
            let doc = doc.cloned().unwrap_or(Datum::Null);
            let mut o = Obj::new();
            o.insert("error".into(), Datum::from(msg.clone()));
            o.insert("new_val".into(), doc.clone());
            o.insert("old_val".into(), doc);
            self.changes.push(Datum::object(o));
        }
        self.error(msg);
    }

    /// Adds the results of documents rejected before the write reached the
    /// table. RethinkDB merges these first, and a merge keeps the first
    /// `first_error` it has, so theirs wins; their changes come last.
    fn absorb_rejected(&mut self, rejected: Stats) {
        self.errors += rejected.errors;
        if rejected.first_error.is_some() {
            self.first_error = rejected.first_error;
        }
        self.changes.extend(rejected.changes);
    }

    /// The write result. `touched`: whether any document was addressed; a
    /// write on an empty selection has no `changes` field on RethinkDB, even
    /// when they were asked for.
    fn into_datum(self, touched: bool) -> Datum {
        let mut o = Obj::new();
        if self.want_changes && touched {
            o.insert("changes".into(), Datum::array(self.changes));
        }
        o.insert("deleted".into(), Datum::from(self.deleted));
        o.insert("errors".into(), Datum::from(self.errors));
        if let Some(e) = self.first_error {
            o.insert("first_error".into(), Datum::from(e));
        }
        if !self.generated.is_empty() {
            o.insert("generated_keys".into(), Datum::array(self.generated));
        }
        o.insert("inserted".into(), Datum::from(self.inserted));
        o.insert("replaced".into(), Datum::from(self.replaced));
        o.insert("skipped".into(), Datum::from(self.skipped));
        o.insert("unchanged".into(), Datum::from(self.unchanged));
        Datum::object(o)
    }
}

enum Conflict {
    Error,
    Replace,
    Update,
    Func(FuncVal),
}

fn not_deterministic() -> ReqlError {
    ReqlError::logic(
        "Could not prove argument deterministic.  Maybe you want to use the non_atomic flag?",
    )
}

fn not_object(d: &Datum) -> String {
    format!(
        "Inserted value must be an OBJECT (got {}):\n{}",
        d.type_name(),
        d.pretty()
    )
}

fn pk_changed(pk: &str, old: &Datum, new: &Datum) -> String {
    format!(
        "Primary key `{pk}` cannot be changed (`{}` -> `{}`).",
        old.pretty(),
        new.pretty()
    )
}

fn missing_pk(pk: &str, d: &Datum) -> String {
    format!(
        "Inserted object must have primary key `{pk}`:\n{}",
        d.pretty()
    )
}

impl FuncVal {
    /// Whether the function may not run as an atomic write. Variables it
    /// closed over hold datums only, so its own body decides.
    fn captures_tables(&self) -> bool {
        !self.body.is_write_deterministic()
    }
}

impl Evaluator<'_> {
    fn durability(&mut self, t: &Term, table: &Table) -> Result<Durability> {
        match self.opt(t, "durability")? {
            Some(d) => {
                let s = ops::string(&d)?;
                Durability::parse(s).ok_or_else(|| {
                    ReqlError::logic(format!(
                        "Durability option `{s}` unrecognized (options are \"hard\" and \"soft\")."
                    ))
                })
            }
            None => Ok(self.ctx.durability.unwrap_or(table.durability)),
        }
    }

    fn always_changes(&mut self, t: &Term) -> Result<bool> {
        Ok(matches!(self.opt(t, "return_changes")?, Some(Datum::Str(s)) if &*s == "always"))
    }

    fn return_changes(&mut self, t: &Term) -> Result<bool> {
        match self.opt(t, "return_changes")? {
            None => Ok(false),
            Some(Datum::Bool(b)) => Ok(b),
            Some(Datum::Str(s)) if &*s == "always" => Ok(true),
            Some(other) => Err(ops::expected("BOOL", &other)),
        }
    }

    fn finish(&self, w: &TableWriter<'_>) {
        self.ctx.note_durable(w.durable_seq);
    }

    pub(super) fn insert(&mut self, t: &Term, args: &[Term]) -> Result<Val> {
        let first = self.eval(&args[0])?;
        let table = table_of(first)?;
        let conflict = match t.optarg("conflict") {
            None => Conflict::Error,
            Some(c) => match self.func_like(c)? {
                FuncLike::Func(f) => {
                    if !c.is_write_deterministic() || f.captures_tables() {
                        return Err(not_deterministic());
                    }
                    Conflict::Func(f)
                }
                FuncLike::Value(Datum::Str(s)) => match &*s {
                    "error" => Conflict::Error,
                    "replace" => Conflict::Replace,
                    "update" => Conflict::Update,
                    other => {
                        return Err(ReqlError::logic(format!(
                            "Conflict option `{other}` unrecognized (options are \"error\", \"replace\" and \"update\")."
                        )))
                    }
                },
                FuncLike::Value(other) => return Err(ops::expected("STRING", &other)),
            },
        };
        let durability = self.durability(t, &table)?;
        let mut stats = Stats {
            want_changes: self.return_changes(t)?,
            always_changes: self.always_changes(t)?,
            ..Stats::default()
        };
        let mut rejected = Stats {
            want_changes: stats.want_changes,
            always_changes: stats.always_changes,
            ..Stats::default()
        };
        let docs = match self.eval(&args[1])? {
            Val::Datum(d @ Datum::Object(_)) => vec![d],
            Val::Single(Single { doc: Some(d), .. }) => vec![d],
            other => self.ctx.to_array(other)?,
        };
        let touched = !docs.is_empty();
        let pk = table.primary_key.clone();
        // RethinkDB checks every document first, then hands the valid ones
        // to the table's eight hash shards, which answer in shard order.
        // Which duplicate a batch's `first_error` names follows from that.
        let mut valid = Vec::with_capacity(docs.len());
        // Its changes, though, come in the order of the documents.
        let mut changes: Vec<(usize, Datum)> = Vec::new();
        for (position, doc) in docs.into_iter().enumerate() {
            match prepare_insert(&pk, doc, &mut stats.generated) {
                Ok((shard, key, doc)) => valid.push((shard, position, key, doc)),
                Err(msg) => {
                    rejected.error_on(None, msg);
                    changes.extend(rejected.changes.drain(..).map(|c| (position, c)));
                }
            }
        }
        valid.sort_by_key(|(shard, position, ..)| (*shard, *position));
        for chunk in valid.chunks(LOCK_CHUNK) {
            let mut w = table.writer();
            for (_, position, key, doc) in chunk {
                self.insert_one(&mut w, &pk, key, doc, &conflict, durability, &mut stats)?;
                changes.extend(stats.changes.drain(..).map(|c| (*position, c)));
            }
            self.finish(&w);
        }
        changes.sort_by_key(|(position, _)| *position);
        stats.changes = changes.into_iter().map(|(_, c)| c).collect();
        stats.absorb_rejected(rejected);
        Ok(Val::Datum(stats.into_datum(touched)))
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_one(
        &mut self,
        w: &mut TableWriter<'_>,
        pk: &str,
        key: &Datum,
        doc: &Datum,
        conflict: &Conflict,
        durability: Durability,
        stats: &mut Stats,
    ) -> Result<()> {
        let (key, doc) = (key.clone(), doc.clone());
        if doc.has_extrema() {
            stats.error_on(None, "`r.minval` and `r.maxval` cannot be written to disk.");
            return Ok(());
        }
        let Some(old) = w.get(&key).cloned() else {
            w.put(&key, Some(doc.clone()), durability)?;
            stats.inserted += 1;
            stats.change(None, Some(doc));
            return Ok(());
        };
        let new = match conflict {
            Conflict::Error => {
                let msg = format!(
                    "Duplicate primary key `{pk}`:\n{}\n{}",
                    old.pretty(),
                    doc.pretty()
                );
                stats.error_on(Some(&old), msg);
                return Ok(());
            }
            Conflict::Replace => doc,
            Conflict::Update => merge_values(&old, &doc),
            Conflict::Func(f) => match f.call_datum(&[key.clone(), old.clone(), doc]) {
                Ok(v) => v,
                Err(e) => {
                    stats.error_on(Some(&old), e.message());
                    return Ok(());
                }
            },
        };
        self.store_replacement(w, pk, &key, old, new, durability, stats)
    }

    /// Stores `new` in place of `old` (`null` deletes), counting the outcome.
    #[allow(clippy::too_many_arguments)]
    fn store_replacement(
        &mut self,
        w: &mut TableWriter<'_>,
        pk: &str,
        key: &Datum,
        old: Datum,
        new: Datum,
        durability: Durability,
        stats: &mut Stats,
    ) -> Result<()> {
        match &new {
            Datum::Null => {
                w.put(key, None, durability)?;
                stats.deleted += 1;
                stats.change(Some(old), None);
            }
            Datum::Object(o) => {
                match o.get(pk) {
                    None => {
                        stats.error_on(Some(&old), missing_pk(pk, &new));
                        return Ok(());
                    }
                    Some(k) if k != key => {
                        stats.error_on(Some(&old), pk_changed(pk, &old, &new));
                        return Ok(());
                    }
                    _ => {}
                }
                if new == old {
                    stats.unchanged_doc(&old);
                } else {
                    w.put(key, Some(new.clone()), durability)?;
                    stats.replaced += 1;
                    stats.change(Some(old), Some(new));
                }
            }
            other => stats.error_on(Some(&old), not_object(other)),
        }
        Ok(())
    }

    /// The table and primary keys a write applies to.
    fn write_targets(&mut self, target: Val) -> Result<(Arc<Table>, Vec<Datum>)> {
        match target {
            Val::Single(s) => Ok((s.table, vec![s.key])),
            Val::ArraySel(table, items) => {
                let keys = items
                    .iter()
                    .filter_map(|d| d.get(&table.primary_key).cloned())
                    .collect();
                Ok((table, keys))
            }
            Val::Table(table) => {
                let keys = table
                    .read()
                    .all_docs()
                    .iter()
                    .filter_map(|d| d.get(&table.primary_key).cloned())
                    .collect();
                Ok((table, keys))
            }
            Val::Seq(s) if s.table.is_some() => {
                let table = s
                    .table
                    .clone()
                    .ok_or_else(|| ReqlError::internal("selection without table"))?;
                let mut s = *s;
                let mut keys = Vec::new();
                while let Some(d) = s.next()? {
                    if let Some(k) = d.get(&table.primary_key) {
                        keys.push(k.clone());
                    }
                }
                Ok((table, keys))
            }
            Val::Datum(d) => Err(ReqlError::logic(format!(
                "Expected type SELECTION but found DATUM:\n{}",
                d.pretty()
            ))),
            other => Err(ReqlError::logic(format!(
                "Expected type SELECTION but found {}.",
                other.type_name()
            ))),
        }
    }

    pub(super) fn update_or_replace(&mut self, ty: u32, t: &Term, args: &[Term]) -> Result<Val> {
        let is_update = ty == crate::term::tt::UPDATE;
        let target = self.eval(&args[0])?;
        let non_atomic = self.opt_bool(t, "non_atomic")?;
        if !non_atomic && !args[1].is_write_deterministic() {
            return Err(not_deterministic());
        }
        let how = self.func_like(&args[1])?;
        if let FuncLike::Func(f) = &how {
            if !non_atomic && f.captures_tables() {
                return Err(not_deterministic());
            }
        }
        let single = matches!(target, Val::Single(_));
        let (table, keys) = self.write_targets(target)?;
        let touched = single || !keys.is_empty();
        let durability = self.durability(t, &table)?;
        let mut stats = Stats {
            want_changes: self.return_changes(t)?,
            always_changes: self.always_changes(t)?,
            ..Stats::default()
        };
        let pk = table.primary_key.clone();
        for chunk in keys.chunks(LOCK_CHUNK) {
            // Outside the lock for non-atomic writes, whose functions may read tables.
            let precomputed: Option<Vec<(Option<Datum>, Result<Datum>)>> = if non_atomic {
                Some(
                    chunk
                        .iter()
                        .map(|k| {
                            let old = table.read().get(k).cloned();
                            let r = match &old {
                                Some(o) => how_apply(&how, o),
                                None if !is_update => how_apply(&how, &Datum::Null),
                                None => Ok(Datum::Null),
                            };
                            (old, r)
                        })
                        .collect(),
                )
            } else {
                None
            };
            let mut w = table.writer();
            for (i, key) in chunk.iter().enumerate() {
                let (old, result) = match &precomputed {
                    Some(p) => {
                        let (o, r) = &p[i];
                        (o.clone(), r.clone())
                    }
                    None => {
                        let old = w.get(key).cloned();
                        let r = match &old {
                            Some(o) => how_apply(&how, o),
                            None if !is_update => how_apply(&how, &Datum::Null),
                            None => Ok(Datum::Null),
                        };
                        (old, r)
                    }
                };
                if is_update {
                    let Some(old) = old else {
                        stats.skipped_doc();
                        continue;
                    };
                    let patch = match result {
                        Ok(p) => p,
                        Err(e) => {
                            stats.error_on(Some(&old), e.message());
                            continue;
                        }
                    };
                    if patch.is_null() {
                        stats.unchanged_doc(&old);
                        continue;
                    }
                    if patch.as_obj().is_none() || patch.ptype().is_some() {
                        stats.error_on(Some(&old), not_object(&patch));
                        continue;
                    }
                    let new = merge_values(&old, &patch);
                    if new.get(&pk) != old.get(&pk) {
                        stats.error_on(Some(&old), pk_changed(&pk, &old, &new));
                        continue;
                    }
                    if new == old {
                        stats.unchanged_doc(&old);
                        continue;
                    }
                    w.put(key, Some(new.clone()), durability)?;
                    stats.replaced += 1;
                    stats.change(Some(old), Some(new));
                } else {
                    let new = match result {
                        Ok(v) => v,
                        Err(e) => {
                            stats.error_on(old.as_ref(), e.message());
                            continue;
                        }
                    };
                    match old {
                        None => {
                            if new.is_null() {
                                stats.skipped_doc();
                                continue;
                            }
                            let Some(o) = new.as_obj() else {
                                stats.error_on(None, not_object(&new));
                                continue;
                            };
                            match o.get(&pk) {
                                None => stats.error_on(None, missing_pk(&pk, &new)),
                                // Unlike the message for an existing
                                // document, this one quotes nothing and
                                // ends without a full stop.
                                Some(k) if k != key => stats.error_on(
                                    None,
                                    format!(
                                        "Primary key `{pk}` cannot be changed (null -> {})",
                                        new.pretty()
                                    ),
                                ),
                                Some(_) => {
                                    w.put(key, Some(new.clone()), durability)?;
                                    stats.inserted += 1;
                                    stats.change(None, Some(new));
                                }
                            }
                        }
                        Some(old) => self.store_replacement(
                            &mut w, &pk, key, old, new, durability, &mut stats,
                        )?,
                    }
                }
            }
            self.finish(&w);
        }
        Ok(Val::Datum(stats.into_datum(touched)))
    }

    pub(super) fn delete(&mut self, t: &Term, args: &[Term]) -> Result<Val> {
        let target = self.eval(&args[0])?;
        let single = matches!(target, Val::Single(_));
        let (table, keys) = self.write_targets(target)?;
        let touched = single || !keys.is_empty();
        let durability = self.durability(t, &table)?;
        let mut stats = Stats {
            want_changes: self.return_changes(t)?,
            always_changes: self.always_changes(t)?,
            ..Stats::default()
        };
        for chunk in keys.chunks(LOCK_CHUNK) {
            let mut w = table.writer();
            for key in chunk {
                match w.get(key).cloned() {
                    None => stats.skipped_doc(),
                    Some(old) => {
                        w.put(key, None, durability)?;
                        stats.deleted += 1;
                        stats.change(Some(old), None);
                    }
                }
            }
            self.finish(&w);
        }
        Ok(Val::Datum(stats.into_datum(touched)))
    }
}

/// The checks RethinkDB makes on each inserted document before the write
/// reaches the table: an object, with a valid primary key (generated when
/// missing). Gives the key's hash shard, the key and the document to store.
fn prepare_insert(
    pk: &str,
    doc: Datum,
    generated: &mut Vec<Datum>,
) -> Result<(usize, Datum, Datum), String> {
    let Datum::Object(fields) = &doc else {
        return Err(format!(
            "Expected type OBJECT but found {}.",
            doc.type_name()
        ));
    };
    let (key, doc) = match fields.get(pk) {
        Some(k) => (k.clone(), doc.clone()),
        None => {
            let id = Datum::from(uuid::Uuid::new_v4().to_string());
            let mut o = (**fields).clone();
            o.insert(pk.to_string(), id.clone());
            generated.push(id.clone());
            (id, Datum::object(o))
        }
    };
    if doc.has_extrema() {
        // RethinkDB turns these away only in the table, after the other
        // documents (`r.minval` and `r.maxval` cannot be written to disk).
        return Ok((SHARDS, key, doc));
    }
    let bytes = primary_key_bytes(&key).map_err(|e| e.message().to_owned())?;
    Ok((shard_of(&bytes), key, doc))
}

fn how_apply(how: &FuncLike, old: &Datum) -> Result<Datum> {
    match how {
        FuncLike::Func(f) => f.call_datum(std::slice::from_ref(old)),
        FuncLike::Value(v) => Ok(v.clone()),
    }
}
