//! Selecting data: `db`, `table`, `get`, `getAll`, `between` and `filter`.

use super::seq::{FilterDefault, Op, Pred, Seq, SeqKind, Source, TableScan};
use super::{admin, ops, table_of, val_kind, Evaluator, FuncLike, Single, Val};
use crate::datum::Datum;
use crate::error::{ReqlError, Result};
use crate::storage::{ScanSpec, Table};
use crate::term::Term;

impl Evaluator<'_> {
    pub(super) fn db(&mut self, args: &[Term]) -> Result<Val> {
        let name = self.string(&args[0])?;
        admin::check_name("Database", &name)?;
        Ok(Val::Db(self.ctx.store()?.db(&name)?))
    }

    pub(super) fn table(&mut self, t: &Term, args: &[Term]) -> Result<Val> {
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

    pub(super) fn get(&mut self, args: &[Term]) -> Result<Val> {
        let table = table_of(self.eval(&args[0])?)?;
        let key = self.datum(&args[1])?;
        crate::datum::primary_key_bytes(&key).map_err(|e| ReqlError::missing(e.message()))?;
        let doc = table.read().get(&key).cloned();
        Ok(Val::Single(Single { table, key, doc }))
    }

    pub(super) fn get_all(&mut self, t: &Term, args: &[Term]) -> Result<Val> {
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
        // On the primary index RethinkDB answers in the order of a table
        // scan, shard after shard, whatever the order of the keys.
        let mut order: Vec<&Datum> = keys.iter().collect();
        if index.is_none() {
            order.sort_by_cached_key(|k| {
                let bytes = crate::datum::primary_key_bytes(k).unwrap_or_default();
                (crate::datum::shard_of(&bytes), bytes)
            });
        }
        {
            let data = table.read();
            for k in order {
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

    pub(super) fn between(&mut self, first: Val, t: &Term, args: &[Term]) -> Result<Val> {
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

    pub(super) fn filter(&mut self, t: &Term, first: Val, args: &[Term]) -> Result<Val> {
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

    pub(super) fn db_name(&mut self, t: Option<&Term>) -> Result<String> {
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

    pub(super) fn require_index(&self, table: &Table, name: &str) -> Result<Option<String>> {
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
