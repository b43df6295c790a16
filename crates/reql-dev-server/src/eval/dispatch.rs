//! `Evaluator::eval`: sends each term type to the file of the family that implements it.

use std::borrow::Cow;
use std::sync::Arc;

use super::{admin, changes, control, ops, time, Env, FuncVal, QueryCtx, Val};
use crate::datum::Datum;
use crate::error::{ReqlError, Result};
use crate::term::{tt, Kind, Term};

pub struct Evaluator<'a> {
    pub(super) ctx: &'a Arc<QueryCtx>,
    pub(super) env: Env,
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
                    let first = match self.eval(&args[0]) {
                        Err(e) if e.is_read_time() => {
                            // RethinkDB meets this error only when the
                            // stream is read, after the term has checked
                            // its own arguments; `limit(0)` never reads it.
                            if self.check_args_before_read(*ty, &args)? == Reads::Nothing {
                                use super::seq::{Seq, SeqKind, Source};
                                let empty = Seq::new(
                                    Source::Items(Vec::new().into_iter()),
                                    SeqKind::Selection,
                                    self.ctx.clone(),
                                );
                                return Ok(Val::Seq(Box::new(empty)));
                            }
                            return Err(e);
                        }
                        first => first?,
                    };
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

    /// The checks of a term's own arguments that come before its sequence is
    /// read.
    fn check_args_before_read(&mut self, ty: u32, args: &[Term]) -> Result<Reads> {
        match ty {
            tt::NTH => {
                let i = self.int32(&args[1])?;
                if i < -1 {
                    return Err(super::transform::stream_index_error(i));
                }
            }
            tt::LIMIT => {
                let n = self.int32(&args[1])?;
                if super::transform::count_arg(ty, n)? == 0 {
                    return Ok(Reads::Nothing);
                }
            }
            tt::SKIP => {
                let n = self.int(&args[1])?;
                super::transform::count_arg(ty, n)?;
            }
            _ => {}
        }
        Ok(Reads::Stream)
    }

    /// Terms that do not take a sequence first.
    fn eval_op(&mut self, ty: u32, t: &Term, args: &[Term]) -> Result<Val> {
        use tt::*;
        match ty {
            // Control structures (control.rs)
            MAKE_ARRAY => self.make_array(args),
            VAR => self.var(args),
            IMPLICIT_VAR => self.implicit_var(),
            FUNCALL => self.funcall(args),
            ERROR => self.error(args),
            BRANCH => self.branch(args),
            DEFAULT => self.default(args),
            RANGE => self.range(args),
            JSON => self.json(args),
            TO_JSON_STRING => self.json_string(args),
            BINARY => self.binary(args),
            UUID => control::uuid(),
            TYPE_OF => self.type_of(args),
            // Math and logic (math.rs)
            EQ | NE | LT | LE | GT | GE => self.compare(ty, args),
            NOT => self.not(args),
            OR | AND => self.and_or(ty, args),
            ADD | SUB | MUL | DIV => self.arithmetic(ty, args),
            MOD => self.modulo(args),
            FLOOR | CEIL | ROUND => self.rounding(ty, args),
            // Strings (strings.rs) and times (time.rs)
            UPCASE => self.upcase(args),
            DOWNCASE => self.downcase(args),
            SPLIT => self.split(args),
            EPOCH_TIME => self.epoch_time(args),
            NOW => time::now(self.ctx.now),
            TO_EPOCH_TIME => self.epoch_seconds(args),
            // Documents (documents.rs)
            MAKE_OBJ => self.make_obj(t),
            OBJECT => self.object(args),
            LITERAL => self.literal(args),
            // Ordering values, valid only where `orderBy` reads them.
            ASC | DESC => Err(ReqlError::logic(format!(
                "{} may only be used as an argument to ORDER_BY or as the `index` of ORDER_BY.",
                if ty == ASC { "ASC" } else { "DESC" }
            ))),
            MINVAL => Ok(Val::Datum(Datum::MinVal)),
            MAXVAL => Ok(Val::Datum(Datum::MaxVal)),
            // Selecting data (selecting.rs)
            DB => self.db(args),
            TABLE => self.table(t, args),
            GET => self.get(args),
            GET_ALL => self.get_all(t, args),
            BETWEEN => {
                let first = self.eval(&args[0])?;
                self.between(first, t, args)
            }
            // Transformations (transform.rs) and aggregation (aggregation.rs)
            UNION => self.union(args),
            GROUP => {
                let first = self.eval(&args[0])?;
                self.group(first, t, args)
            }
            UNGROUP => self.ungroup(args),
            // Changefeeds (changes.rs), writes (write.rs), administration (admin.rs)
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
            // Documents (documents.rs)
            GET_FIELD | BRACKET => self.get_field(ty, first, args),
            PLUCK | WITHOUT | HAS_FIELDS | WITH_FIELDS => self.field_paths(ty, first, args),
            MERGE => self.merge(first, args),
            KEYS => self.keys(first),
            VALUES => self.values(first),
            APPEND | PREPEND => self.append_or_prepend(ty, first, args),
            // Selecting data (selecting.rs)
            FILTER => self.filter(t, first, args),
            // Transformations (transform.rs)
            MAP => self.map(first, args),
            CONCAT_MAP => self.concat_map(first, args),
            ORDER_BY => self.order_by(first, t, args),
            SKIP | LIMIT => self.skip_or_limit(ty, first, args),
            SLICE => self.slice(first, t, args),
            NTH => {
                let i = self.int32(&args[1])?;
                self.nth(first, i)
            }
            IS_EMPTY => self.is_empty(first),
            // Aggregation (aggregation.rs)
            COUNT => self.count(first, args),
            SUM | AVG | MIN | MAX => self.aggregate(ty, first, t, args),
            REDUCE => self.reduce(first, args),
            DISTINCT => self.distinct(t, first),
            CONTAINS => self.contains(first, args),
            // Control structures (control.rs)
            COERCE_TO => self.coerce_to(first, args),
            _ => Err(ReqlError::internal(format!("term {ty} dispatched wrongly"))),
        }
    }
}

/// Whether a term reads the stream it is given.
#[derive(PartialEq, Eq)]
enum Reads {
    Stream,
    Nothing,
}
