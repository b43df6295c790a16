//! The seeded workload: leaderboard-shaped tables and the ReQL the dev
//! server implements, valid queries mixed with ones that must fail.
//!
//! Keys come from small pools, so writes collide, documents go missing and
//! come back, and reads find what writes left. Only `extra` and the `tmp*`
//! indexes are ever dropped, so most queries run against a schema that
//! exists.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub use crate::compare::Order;
use crate::terms::{self, array, asc, datum, desc, func, id, maxval, minval, obj, top, var, T};

#[derive(Clone, Debug)]
pub struct Query {
    pub term: T,
    pub order: Order,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// One query, run to its end.
    One(Query),
    /// Several queries sent at once on one connection.
    Parallel(Vec<Query>),
    /// A changefeed opened on a second connection, the writes, then the
    /// feed read until it goes quiet.
    Feed {
        feed: Query,
        writes: Vec<Query>,
        /// The primary key of the feed's table, which tells its changes apart.
        pk: &'static str,
    },
}

const BOARDS: [&str; 3] = ["b0", "b1", "b2"];
const TAGS: [&str; 3] = ["red", "green", "blue"];
const TMP_INDEXES: [&str; 2] = ["tmp", "tmp2"];

/// A table of the workload and its primary key.
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    pk: &'static str,
    keys: usize,
}

const SCORES: Table = Table {
    name: "scores",
    pk: "id",
    keys: 24,
};
const RANKS: Table = Table {
    name: "ranks",
    pk: "player",
    keys: 12,
};

pub struct Workload {
    rng: StdRng,
    db: String,
}

fn q(term: T) -> Query {
    Query {
        term,
        order: Order::Exact,
    }
}

fn unordered(term: T) -> Query {
    Query {
        term,
        order: Order::Unordered,
    }
}

fn scan_write(term: T) -> Query {
    Query {
        term,
        order: Order::Scan,
    }
}

fn s(v: &str) -> T {
    datum(json!(v))
}

fn n(v: i64) -> T {
    datum(json!(v))
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            db: format!("fuzz_{seed}"),
        }
    }

    pub fn db_name(&self) -> &str {
        &self.db
    }

    fn db(&self) -> T {
        terms::db(&self.db)
    }

    fn table(&self, t: Table) -> T {
        self.db().table(t.name)
    }

    /// The queries that build the schema; they are compared like the rest.
    pub fn setup(&self) -> Vec<Op> {
        let mut ops = vec![Op::One(q(top(
            id::DB_CREATE,
            "dbCreate",
            vec![s(&self.db)],
        )))];
        for t in [SCORES, RANKS] {
            let opts = if t.pk == "id" {
                vec![]
            } else {
                vec![("primary_key", s(t.pk))]
            };
            ops.push(Op::One(q(self.db().call(
                id::TABLE_CREATE,
                "tableCreate",
                vec![s(t.name)],
                opts,
            ))));
            ops.push(Op::One(q(self.table(t).call(
                id::WAIT,
                "wait",
                vec![],
                vec![],
            ))));
            ops.push(Op::One(q(self.table(t).call(
                id::INDEX_CREATE,
                "indexCreate",
                vec![s("board_score"), board_score_fn()],
                vec![],
            ))));
            for simple in ["score", "board"] {
                ops.push(Op::One(q(self.table(t).call(
                    id::INDEX_CREATE,
                    "indexCreate",
                    vec![s(simple)],
                    vec![],
                ))));
            }
            ops.push(Op::One(q(self.table(t).call(
                id::INDEX_CREATE,
                "indexCreate",
                vec![s("tags")],
                vec![("multi", datum(json!(true)))],
            ))));
            ops.push(Op::One(q(self.table(t).call(
                id::INDEX_WAIT,
                "indexWait",
                vec![],
                vec![],
            ))));
        }
        ops.push(Op::One(q(self.db().call(
            id::TABLE_CREATE,
            "tableCreate",
            vec![s("gen")],
            vec![],
        ))));
        ops
    }

    pub fn teardown(&self) -> Op {
        Op::One(q(top(id::DB_DROP, "dbDrop", vec![s(&self.db)])))
    }

    fn table_pick(&mut self) -> Table {
        if self.rng.gen_bool(0.7) {
            SCORES
        } else {
            RANKS
        }
    }

    fn key(&mut self, t: Table) -> Value {
        if t.pk == "id" && self.rng.gen_ratio(1, 8) {
            return json!(self.rng.gen_range(0..4));
        }
        let prefix = if t.pk == "id" { "p" } else { "q" };
        json!(format!("{prefix}{}", self.rng.gen_range(0..t.keys)))
    }

    fn board(&mut self) -> &'static str {
        BOARDS.choose(&mut self.rng).copied().unwrap_or("b0")
    }

    /// `tbl.filter({board: b})` for a board picked at random.
    fn one_board(&mut self, tbl: T) -> T {
        let b = self.board();
        tbl.call(
            id::FILTER,
            "filter",
            vec![datum(json!({ "board": b }))],
            vec![],
        )
    }

    fn score(&mut self) -> Value {
        match self.rng.gen_range(0..20) {
            0 => json!("high"),
            1 => json!(2.5),
            2 => json!(-3),
            _ => json!(self.rng.gen_range(0..40)),
        }
    }

    fn doc(&mut self, t: Table, key: Value) -> Value {
        let mut d = json!({ t.pk: key, "board": self.board(), "score": self.score() });
        if self.rng.gen_bool(0.5) {
            let tags: Vec<&str> = TAGS
                .iter()
                .copied()
                .filter(|_| self.rng.gen_bool(0.4))
                .collect();
            d["tags"] = json!(tags);
        }
        if self.rng.gen_bool(0.3) {
            d["name"] = json!(format!("n{}", self.rng.gen_range(0..5)));
        }
        d
    }

    fn fields(&mut self, t: Table) -> Vec<T> {
        let all = [t.pk, "board", "score", "tags", "name", "nosuch"];
        let k = self.rng.gen_range(1..=3);
        all.choose_multiple(&mut self.rng, k)
            .map(|f| s(f))
            .collect()
    }

    fn return_changes(&mut self) -> Vec<(&'static str, T)> {
        match self.rng.gen_range(0..4) {
            0 => vec![("return_changes", datum(json!(true)))],
            1 => vec![("return_changes", datum(json!("always")))],
            _ => vec![],
        }
    }

    /// The next operation of the workload.
    pub fn next(&mut self) -> Op {
        match self.rng.gen_range(0..100) {
            0..=39 => Op::One(self.write()),
            40..=79 => Op::One(self.read()),
            80..=87 => Op::One(self.schema()),
            88..=93 => {
                let k = self.rng.gen_range(2..=4);
                Op::Parallel((0..k).map(|_| self.read()).collect())
            }
            _ => self.feed(),
        }
    }

    fn write(&mut self) -> Query {
        let t = self.table_pick();
        let tbl = self.table(t);
        let key = self.key(t);
        match self.rng.gen_range(0..14) {
            0 | 1 => {
                let doc = self.doc(t, key);
                let mut opts = self.conflict();
                opts.extend(self.return_changes());
                q(tbl.call(id::INSERT, "insert", vec![datum(doc)], opts))
            }
            2 => {
                let k = self.rng.gen_range(2..=6);
                let docs: Vec<Value> = (0..k)
                    .map(|_| {
                        let key = self.key(t);
                        self.doc(t, key)
                    })
                    .collect();
                let mut opts = self.conflict();
                opts.extend(self.return_changes());
                unordered(tbl.call(id::INSERT, "insert", vec![datum(json!(docs))], opts))
            }
            3 => {
                // Generated keys go to a table of their own, which is only
                // counted: the keys differ between servers, and so would the
                // order of anything keyed by them.
                let k = self.rng.gen_range(1..=3);
                let docs: Vec<Value> = (0..k)
                    .map(|_| json!({ "board": self.board(), "score": self.score() }))
                    .collect();
                let docs = if k == 1 { docs[0].clone() } else { json!(docs) };
                unordered(self.db().table("gen").call(
                    id::INSERT,
                    "insert",
                    vec![datum(docs)],
                    vec![],
                ))
            }
            4 => {
                let bad = match self.rng.gen_range(0..4) {
                    0 => json!({ t.pk: null, "score": 1 }),
                    1 => json!(5),
                    2 => json!({ t.pk: [1, 2], "score": 1 }),
                    _ => json!([{ t.pk: key, "board": "b0" }, 7]),
                };
                q(tbl.call(id::INSERT, "insert", vec![datum(bad)], vec![]))
            }
            5 | 6 => {
                let patch = match self.rng.gen_range(0..5) {
                    0 => json!({ "score": "high" }),
                    1 => json!({ "board": self.board(), "score": self.rng.gen_range(0..40) }),
                    2 => json!({ t.pk: self.key(t) }),
                    _ => json!({ "score": self.rng.gen_range(0..40) }),
                };
                let opts = self.return_changes();
                q(tbl
                    .get(key)
                    .call(id::UPDATE, "update", vec![datum(patch)], opts))
            }
            7 => {
                let add = top_add(var(1).field("score"), n(self.rng.gen_range(1..5)));
                let f = func(&[1], obj(vec![("score", add)]));
                let opts = self.return_changes();
                q(tbl.get(key).call(id::UPDATE, "update", vec![f], opts))
            }
            8 | 9 => {
                let other = if self.rng.gen_ratio(1, 3) {
                    self.key(t)
                } else {
                    key.clone()
                };
                let doc = self.doc(t, other);
                let opts = self.return_changes();
                q(tbl
                    .get(key)
                    .call(id::REPLACE, "replace", vec![datum(doc)], opts))
            }
            10 => {
                let body = match self.rng.gen_range(0..3) {
                    0 => datum(Value::Null),
                    1 => {
                        let other = self.key(t);
                        var(1).call(
                            id::MERGE,
                            "merge",
                            vec![datum(json!({ t.pk: other }))],
                            vec![],
                        )
                    }
                    _ => var(1).call(
                        id::MERGE,
                        "merge",
                        vec![datum(json!({ "score": self.rng.gen_range(0..40) }))],
                        vec![],
                    ),
                };
                let opts = self.return_changes();
                q(tbl
                    .get(key)
                    .call(id::REPLACE, "replace", vec![func(&[1], body)], opts))
            }
            11 => {
                let opts = self.return_changes();
                q(tbl.get(key).call(id::DELETE, "delete", vec![], opts))
            }
            12 => {
                let sel = self.one_board(tbl.clone());
                let add = top_add(var(1).field("score"), n(1));
                let f = func(&[1], obj(vec![("score", add)]));
                let opts = self.return_changes();
                scan_write(sel.call(id::UPDATE, "update", vec![f], opts))
            }
            _ => {
                let b = self.board();
                let lo = self.rng.gen_range(0..20);
                let sel = tbl.call(
                    id::BETWEEN,
                    "between",
                    vec![array(vec![s(b), n(lo)]), array(vec![s(b), n(lo + 10)])],
                    vec![("index", s("board_score"))],
                );
                let opts = self.return_changes();
                scan_write(sel.call(id::DELETE, "delete", vec![], opts))
            }
        }
    }

    fn conflict(&mut self) -> Vec<(&'static str, T)> {
        match self.rng.gen_range(0..6) {
            0 => vec![("conflict", s("error"))],
            1 => vec![("conflict", s("replace"))],
            2 => vec![("conflict", s("update"))],
            3 => {
                // (key, old, new) => old.merge({score: old.score + new.score})
                let add = top_add(var(2).field("score"), var(3).field("score"));
                let body = var(2).call(id::MERGE, "merge", vec![obj(vec![("score", add)])], vec![]);
                vec![("conflict", func(&[1, 2, 3], body))]
            }
            _ => vec![],
        }
    }

    fn read(&mut self) -> Query {
        let t = self.table_pick();
        let tbl = self.table(t);
        let key = self.key(t);
        match self.rng.gen_range(0..16) {
            0 => q(tbl.get(key)),
            1 => {
                let f = self.fields(t);
                q(tbl.get(key).call(id::PLUCK, "pluck", f, vec![]))
            }
            2 => {
                let f = self.fields(t);
                q(tbl.get(key).call(id::WITHOUT, "without", f, vec![]))
            }
            3 => {
                let field = ["score", "name", "nosuch"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("score");
                let read = tbl.get(key).field(field);
                if self.rng.gen_bool(0.6) {
                    q(read.call(id::DEFAULT, "default", vec![n(-1)], vec![]))
                } else {
                    q(read)
                }
            }
            4 => {
                let k = self.rng.gen_range(1..=3);
                let keys: Vec<T> = (0..k).map(|_| datum(self.key(t))).collect();
                unordered(tbl.call(id::GET_ALL, "getAll", keys, vec![]))
            }
            5 => {
                let (index, keys): (&str, Vec<T>) = match self.rng.gen_range(0..3) {
                    0 => {
                        let b = self.board();
                        let sc = self.score();
                        ("board_score", vec![array(vec![s(b), datum(sc)])])
                    }
                    1 => ("board", vec![s(self.board()), s(self.board())]),
                    _ => ("tags", vec![s(TAGS[self.rng.gen_range(0..3)])]),
                };
                unordered(tbl.call(id::GET_ALL, "getAll", keys, vec![("index", s(index))]))
            }
            6..=8 => self.between(tbl),
            9 | 10 => {
                let index = ["score", "board_score", t.pk, "nosuch"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("score");
                let dir = if self.rng.gen_bool(0.5) {
                    desc(index)
                } else {
                    asc(index)
                };
                let ordered = tbl.call(id::ORDER_BY, "orderBy", vec![], vec![("index", dir)]);
                q(self.tail(ordered))
            }
            11 => q(tbl.call(id::COUNT, "count", vec![], vec![])),
            12 => {
                let sel = self.one_board(tbl.clone());
                if self.rng.gen_bool(0.5) {
                    q(sel.call(id::COUNT, "count", vec![], vec![]))
                } else {
                    let f = self.fields(t);
                    unordered(sel.call(id::PLUCK, "pluck", f, vec![]))
                }
            }
            13 => {
                let gt = var(1).field("score").call(
                    id::GT,
                    "gt",
                    vec![n(self.rng.gen_range(0..40))],
                    vec![],
                );
                let opts = match self.rng.gen_range(0..3) {
                    0 => vec![("default", datum(json!(true)))],
                    1 => vec![("default", datum(json!(false)))],
                    _ => vec![],
                };
                let f = self.fields(t);
                unordered(
                    tbl.call(id::FILTER, "filter", vec![func(&[1], gt)], opts)
                        .call(id::WITHOUT, "without", f, vec![]),
                )
            }
            14 => {
                let missing = match self.rng.gen_range(0..3) {
                    0 => self.db().table("nosuch"),
                    1 => top(id::DB, "db", vec![s("fuzz_nosuch")]).table(t.name),
                    _ => tbl.call(
                        id::GET_ALL,
                        "getAll",
                        vec![s("b0")],
                        vec![("index", s("nosuch"))],
                    ),
                };
                q(missing.call(id::COUNT, "count", vec![], vec![]))
            }
            _ => unordered(
                self.db()
                    .table("gen")
                    .call(id::COUNT, "count", vec![], vec![]),
            ),
        }
    }

    /// `between` on the compound index, within a board or across boards.
    fn between(&mut self, tbl: T) -> Query {
        let b = self.board();
        let lo = match self.rng.gen_range(0..3) {
            0 => array(vec![s(b), minval()]),
            1 => minval(),
            _ => array(vec![s(b), n(self.rng.gen_range(0..30))]),
        };
        let hi = match self.rng.gen_range(0..3) {
            0 => array(vec![s(b), maxval()]),
            1 => maxval(),
            _ => array(vec![s(b), n(self.rng.gen_range(10..45))]),
        };
        let mut opts = vec![("index", s("board_score"))];
        if self.rng.gen_ratio(1, 4) {
            opts.push(("left_bound", s("open")));
        }
        if self.rng.gen_ratio(1, 4) {
            opts.push(("right_bound", s("closed")));
        }
        let range = tbl.call(id::BETWEEN, "between", vec![lo, hi], opts);
        if self.rng.gen_bool(0.3) {
            return unordered(range);
        }
        let dir = if self.rng.gen_bool(0.5) {
            desc("board_score")
        } else {
            asc("board_score")
        };
        let ordered = range.call(id::ORDER_BY, "orderBy", vec![], vec![("index", dir)]);
        q(self.tail(ordered))
    }

    /// What follows an ordered read: a limit, an element, a count or
    /// nothing, and sometimes a projection.
    fn tail(&mut self, ordered: T) -> T {
        let read = match self.rng.gen_range(0..6) {
            0 => ordered.call(
                id::LIMIT,
                "limit",
                vec![n(self.rng.gen_range(0..6))],
                vec![],
            ),
            1 => ordered.call(id::NTH, "nth", vec![n(self.rng.gen_range(-2..6))], vec![]),
            2 => ordered.call(id::COUNT, "count", vec![], vec![]),
            3 => ordered
                .call(id::SKIP, "skip", vec![n(self.rng.gen_range(0..4))], vec![])
                .call(
                    id::LIMIT,
                    "limit",
                    vec![n(self.rng.gen_range(1..4))],
                    vec![],
                ),
            _ => ordered,
        };
        if self.rng.gen_ratio(1, 3) {
            let fields = vec![s("board"), s("score")];
            read.call(id::PLUCK, "pluck", fields, vec![])
        } else {
            read
        }
    }

    fn schema(&mut self) -> Query {
        let t = self.table_pick();
        let tbl = self.table(t);
        match self.rng.gen_range(0..11) {
            0 => q(self
                .db()
                .call(id::TABLE_CREATE, "tableCreate", vec![s(t.name)], vec![])),
            1 => q(self
                .db()
                .call(id::TABLE_CREATE, "tableCreate", vec![s("extra")], vec![])),
            2 => q(self
                .db()
                .call(id::TABLE_DROP, "tableDrop", vec![s("extra")], vec![])),
            3 => q(self.db().call(id::TABLE_LIST, "tableList", vec![], vec![])),
            4 => q(tbl.call(id::INDEX_LIST, "indexList", vec![], vec![])),
            5 => {
                let name = TMP_INDEXES.choose(&mut self.rng).copied().unwrap_or("tmp");
                let mut args = vec![s(name)];
                if self.rng.gen_bool(0.5) {
                    args.push(func(&[1], var(1).field("name")));
                }
                let opts = if self.rng.gen_ratio(1, 4) {
                    vec![("multi", datum(json!(true)))]
                } else {
                    vec![]
                };
                q(tbl.call(id::INDEX_CREATE, "indexCreate", args, opts))
            }
            6 => {
                let name = ["tmp", "tmp2", "score"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("tmp");
                q(tbl.call(id::INDEX_CREATE, "indexCreate", vec![s(name)], vec![]))
            }
            7 => {
                let name = TMP_INDEXES.choose(&mut self.rng).copied().unwrap_or("tmp");
                q(tbl.call(id::INDEX_DROP, "indexDrop", vec![s(name)], vec![]))
            }
            8 => {
                let (from, to) = if self.rng.gen_bool(0.5) {
                    ("tmp", "tmp2")
                } else {
                    ("tmp2", "tmp")
                };
                // Onto an index that exists only without `overwrite`: on
                // RethinkDB a read right after an overwriting rename may
                // not find the index yet.
                let (to, opts) = if self.rng.gen_ratio(1, 4) {
                    ("score", vec![])
                } else if self.rng.gen_ratio(1, 3) {
                    (to, vec![("overwrite", datum(json!(true)))])
                } else {
                    (to, vec![])
                };
                q(tbl.call(id::INDEX_RENAME, "indexRename", vec![s(from), s(to)], opts))
            }
            9 => q(tbl.call(id::INDEX_WAIT, "indexWait", vec![], vec![]).call(
                id::PLUCK,
                "pluck",
                vec![s("index"), s("ready"), s("multi"), s("outdated")],
                vec![],
            )),
            _ => q(top(id::DB_CREATE, "dbCreate", vec![s(&self.db)])),
        }
    }

    fn feed(&mut self) -> Op {
        let t = self.table_pick();
        let tbl = self.table(t);
        let mut opts: Vec<(&str, T)> = Vec::new();
        for name in ["include_states", "include_initial", "include_types"] {
            if self.rng.gen_bool(0.4) {
                opts.push((name, datum(json!(true))));
            }
        }
        let source = match self.rng.gen_range(0..7) {
            0 => tbl,
            1 => {
                let key = self.key(t);
                tbl.get(key)
            }
            2 => {
                let b = self.board();
                tbl.call(
                    id::BETWEEN,
                    "between",
                    vec![array(vec![s(b), minval()]), array(vec![s(b), maxval()])],
                    vec![("index", s("board_score"))],
                )
            }
            3 => self.one_board(tbl.clone()),
            4 => {
                let keys: Vec<T> = (0..3).map(|_| datum(self.key(t))).collect();
                tbl.call(id::GET_ALL, "getAll", keys, vec![])
            }
            _ => {
                if self.rng.gen_bool(0.5) {
                    opts.push(("include_offsets", datum(json!(true))));
                }
                let dir = if self.rng.gen_bool(0.5) {
                    desc("score")
                } else {
                    asc("score")
                };
                tbl.call(id::ORDER_BY, "orderBy", vec![], vec![("index", dir)])
                    .call(
                        id::LIMIT,
                        "limit",
                        vec![n(self.rng.gen_range(1..4))],
                        vec![],
                    )
            }
        };
        if self.rng.gen_ratio(1, 5) {
            opts.push(("squash", datum(json!(true))));
        }
        let feed = q(source.call(id::CHANGES, "changes", vec![], opts));
        let k = self.rng.gen_range(1..=4);
        let writes = (0..k)
            .map(|_| {
                // Writes to the feed's table, so the feed sees them.
                let mut w = self.write();
                while !w.term.js.contains(&format!("table('{}')", t.name)) {
                    w = self.write();
                }
                w
            })
            .collect();
        Op::Feed {
            feed,
            writes,
            pk: t.pk,
        }
    }
}

fn board_score_fn() -> T {
    func(
        &[1],
        array(vec![var(1).field("board"), var(1).field("score")]),
    )
}

fn top_add(a: T, b: T) -> T {
    a.call(id::ADD, "add", vec![b], vec![])
}
