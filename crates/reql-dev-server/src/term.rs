//! ReQL terms: parsing the JSON term tree of a query, the compile-time checks the
//! real server makes before running anything (term types, argument counts,
//! optional arguments, variable scope), and the JavaScript-like rendering and
//! binary form RethinkDB shows for a secondary index function.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::datum::{write_json_string, Datum};
use crate::error::{ReqlError, Result};

/// `TermType` ids from `ql2.proto`.
pub mod tt {
    pub const DATUM: u32 = 1;
    pub const MAKE_ARRAY: u32 = 2;
    pub const MAKE_OBJ: u32 = 3;
    pub const VAR: u32 = 10;
    pub const JAVASCRIPT: u32 = 11;
    pub const UUID: u32 = 169;
    pub const HTTP: u32 = 153;
    pub const ERROR: u32 = 12;
    pub const IMPLICIT_VAR: u32 = 13;
    pub const DB: u32 = 14;
    pub const TABLE: u32 = 15;
    pub const GET: u32 = 16;
    pub const GET_ALL: u32 = 78;
    pub const EQ: u32 = 17;
    pub const NE: u32 = 18;
    pub const LT: u32 = 19;
    pub const LE: u32 = 20;
    pub const GT: u32 = 21;
    pub const GE: u32 = 22;
    pub const NOT: u32 = 23;
    pub const ADD: u32 = 24;
    pub const SUB: u32 = 25;
    pub const MUL: u32 = 26;
    pub const DIV: u32 = 27;
    pub const MOD: u32 = 28;
    pub const FLOOR: u32 = 183;
    pub const CEIL: u32 = 184;
    pub const ROUND: u32 = 185;
    pub const APPEND: u32 = 29;
    pub const PREPEND: u32 = 80;
    pub const DIFFERENCE: u32 = 95;
    pub const SET_INSERT: u32 = 88;
    pub const SET_INTERSECTION: u32 = 89;
    pub const SET_UNION: u32 = 90;
    pub const SET_DIFFERENCE: u32 = 91;
    pub const SLICE: u32 = 30;
    pub const SKIP: u32 = 70;
    pub const LIMIT: u32 = 71;
    pub const OFFSETS_OF: u32 = 87;
    pub const CONTAINS: u32 = 93;
    pub const GET_FIELD: u32 = 31;
    pub const KEYS: u32 = 94;
    pub const VALUES: u32 = 186;
    pub const OBJECT: u32 = 143;
    pub const HAS_FIELDS: u32 = 32;
    pub const WITH_FIELDS: u32 = 96;
    pub const PLUCK: u32 = 33;
    pub const WITHOUT: u32 = 34;
    pub const MERGE: u32 = 35;
    pub const BETWEEN_DEPRECATED: u32 = 36;
    pub const BETWEEN: u32 = 182;
    pub const REDUCE: u32 = 37;
    pub const MAP: u32 = 38;
    pub const FOLD: u32 = 187;
    pub const FILTER: u32 = 39;
    pub const CONCAT_MAP: u32 = 40;
    pub const ORDER_BY: u32 = 41;
    pub const DISTINCT: u32 = 42;
    pub const COUNT: u32 = 43;
    pub const IS_EMPTY: u32 = 86;
    pub const UNION: u32 = 44;
    pub const NTH: u32 = 45;
    pub const BRACKET: u32 = 170;
    pub const INNER_JOIN: u32 = 48;
    pub const OUTER_JOIN: u32 = 49;
    pub const EQ_JOIN: u32 = 50;
    pub const ZIP: u32 = 72;
    pub const RANGE: u32 = 173;
    pub const INSERT_AT: u32 = 82;
    pub const DELETE_AT: u32 = 83;
    pub const CHANGE_AT: u32 = 84;
    pub const SPLICE_AT: u32 = 85;
    pub const COERCE_TO: u32 = 51;
    pub const TYPE_OF: u32 = 52;
    pub const UPDATE: u32 = 53;
    pub const DELETE: u32 = 54;
    pub const REPLACE: u32 = 55;
    pub const INSERT: u32 = 56;
    pub const DB_CREATE: u32 = 57;
    pub const DB_DROP: u32 = 58;
    pub const DB_LIST: u32 = 59;
    pub const TABLE_CREATE: u32 = 60;
    pub const TABLE_DROP: u32 = 61;
    pub const TABLE_LIST: u32 = 62;
    pub const CONFIG: u32 = 174;
    pub const STATUS: u32 = 175;
    pub const WAIT: u32 = 177;
    pub const RECONFIGURE: u32 = 176;
    pub const REBALANCE: u32 = 179;
    pub const SYNC: u32 = 138;
    pub const GRANT: u32 = 188;
    pub const INDEX_CREATE: u32 = 75;
    pub const INDEX_DROP: u32 = 76;
    pub const INDEX_LIST: u32 = 77;
    pub const INDEX_STATUS: u32 = 139;
    pub const INDEX_WAIT: u32 = 140;
    pub const INDEX_RENAME: u32 = 156;
    pub const SET_WRITE_HOOK: u32 = 189;
    pub const GET_WRITE_HOOK: u32 = 190;
    pub const FUNCALL: u32 = 64;
    pub const BRANCH: u32 = 65;
    pub const OR: u32 = 66;
    pub const AND: u32 = 67;
    pub const FOR_EACH: u32 = 68;
    pub const FUNC: u32 = 69;
    pub const ASC: u32 = 73;
    pub const DESC: u32 = 74;
    pub const INFO: u32 = 79;
    pub const MATCH: u32 = 97;
    pub const UPCASE: u32 = 141;
    pub const DOWNCASE: u32 = 142;
    pub const SAMPLE: u32 = 81;
    pub const DEFAULT: u32 = 92;
    pub const JSON: u32 = 98;
    pub const TO_JSON_STRING: u32 = 172;
    pub const ISO8601: u32 = 99;
    pub const TO_ISO8601: u32 = 100;
    pub const EPOCH_TIME: u32 = 101;
    pub const TO_EPOCH_TIME: u32 = 102;
    pub const NOW: u32 = 103;
    pub const IN_TIMEZONE: u32 = 104;
    pub const DURING: u32 = 105;
    pub const DATE: u32 = 106;
    pub const TIME_OF_DAY: u32 = 126;
    pub const TIMEZONE: u32 = 127;
    pub const YEAR: u32 = 128;
    pub const MONTH: u32 = 129;
    pub const DAY: u32 = 130;
    pub const DAY_OF_WEEK: u32 = 131;
    pub const DAY_OF_YEAR: u32 = 132;
    pub const HOURS: u32 = 133;
    pub const MINUTES: u32 = 134;
    pub const SECONDS: u32 = 135;
    pub const TIME: u32 = 136;
    pub const LITERAL: u32 = 137;
    pub const GROUP: u32 = 144;
    pub const SUM: u32 = 145;
    pub const AVG: u32 = 146;
    pub const MIN: u32 = 147;
    pub const MAX: u32 = 148;
    pub const SPLIT: u32 = 149;
    pub const UNGROUP: u32 = 150;
    pub const RANDOM: u32 = 151;
    pub const CHANGES: u32 = 152;
    pub const ARGS: u32 = 154;
    pub const BINARY: u32 = 155;
    pub const MINVAL: u32 = 180;
    pub const MAXVAL: u32 = 181;
}

/// Static facts about a term type: its JavaScript name, how many arguments it
/// takes, which optional arguments it accepts, and whether this server runs it.
pub struct TermInfo {
    pub name: &'static str,
    pub min: usize,
    pub max: Option<usize>,
    pub optargs: &'static [&'static str],
    pub supported: bool,
}

const ANY: &[&str] = &["*"];
const WRITE_OPTS: &[&str] = &[
    "durability",
    "return_changes",
    "non_atomic",
    "ignore_write_hook",
];

pub fn info(ty: u32) -> Option<TermInfo> {
    use tt::*;
    let i = |name, min, max: Option<usize>, optargs| {
        Some(TermInfo {
            name,
            min,
            max,
            optargs,
            supported: true,
        })
    };
    let unsupported = |name| {
        Some(TermInfo {
            name,
            min: 0,
            max: None,
            optargs: ANY,
            supported: false,
        })
    };
    let n = None;
    match ty {
        DATUM => i("datum", 0, n, &[]),
        MAKE_ARRAY => i("expr", 0, n, &[]),
        MAKE_OBJ => i("expr", 0, Some(0), ANY),
        VAR => i("var", 1, Some(1), &[]),
        UUID => i("uuid", 0, Some(1), &[]),
        ERROR => i("error", 0, Some(1), &[]),
        IMPLICIT_VAR => i("row", 0, Some(0), &[]),
        DB => i("db", 1, Some(1), &[]),
        TABLE => i(
            "table",
            1,
            Some(2),
            &["read_mode", "identifier_format", "use_outdated"],
        ),
        GET => i("get", 2, Some(2), &[]),
        GET_ALL => i("getAll", 2, n, &["index"]),
        EQ => i("eq", 2, n, &[]),
        NE => i("ne", 2, n, &[]),
        LT => i("lt", 2, n, &[]),
        LE => i("le", 2, n, &[]),
        GT => i("gt", 2, n, &[]),
        GE => i("ge", 2, n, &[]),
        NOT => i("not", 1, Some(1), &[]),
        ADD => i("add", 1, n, &[]),
        SUB => i("sub", 1, n, &[]),
        MUL => i("mul", 1, n, &[]),
        DIV => i("div", 1, n, &[]),
        MOD => i("mod", 2, Some(2), &[]),
        FLOOR => i("floor", 1, Some(1), &[]),
        CEIL => i("ceil", 1, Some(1), &[]),
        ROUND => i("round", 1, Some(1), &[]),
        APPEND => i("append", 2, Some(2), &[]),
        PREPEND => i("prepend", 2, Some(2), &[]),
        DIFFERENCE => i("difference", 2, Some(2), &[]),
        SET_INSERT => i("setInsert", 2, Some(2), &[]),
        SET_INTERSECTION => i("setIntersection", 2, Some(2), &[]),
        SET_UNION => i("setUnion", 2, Some(2), &[]),
        SET_DIFFERENCE => i("setDifference", 2, Some(2), &[]),
        SLICE => i("slice", 2, Some(3), &["left_bound", "right_bound"]),
        SKIP => i("skip", 2, Some(2), &[]),
        LIMIT => i("limit", 2, Some(2), &[]),
        OFFSETS_OF => i("offsetsOf", 2, Some(2), &[]),
        CONTAINS => i("contains", 1, n, &[]),
        GET_FIELD => i("getField", 2, Some(2), &[]),
        KEYS => i("keys", 1, Some(1), &[]),
        VALUES => i("values", 1, Some(1), &[]),
        OBJECT => i("object", 0, n, &[]),
        HAS_FIELDS => i("hasFields", 1, n, &[]),
        WITH_FIELDS => i("withFields", 1, n, &[]),
        PLUCK => i("pluck", 1, n, &[]),
        WITHOUT => i("without", 1, n, &[]),
        MERGE => i("merge", 1, n, &[]),
        BETWEEN => i(
            "between",
            3,
            Some(3),
            &["index", "left_bound", "right_bound"],
        ),
        REDUCE => i("reduce", 2, Some(2), &[]),
        MAP => i("map", 2, n, &[]),
        FILTER => i("filter", 2, Some(2), &["default"]),
        CONCAT_MAP => i("concatMap", 2, Some(2), &[]),
        ORDER_BY => i("orderBy", 1, n, &["index"]),
        DISTINCT => i("distinct", 1, Some(1), &["index"]),
        COUNT => i("count", 1, Some(2), &[]),
        IS_EMPTY => i("isEmpty", 1, Some(1), &[]),
        UNION => i("union", 0, n, &["interleave"]),
        NTH => i("nth", 2, Some(2), &[]),
        BRACKET => i("bracket", 2, Some(2), &[]),
        ZIP => i("zip", 1, Some(1), &[]),
        RANGE => i("range", 0, Some(2), &[]),
        INSERT_AT => i("insertAt", 3, Some(3), &[]),
        DELETE_AT => i("deleteAt", 2, Some(3), &[]),
        CHANGE_AT => i("changeAt", 3, Some(3), &[]),
        SPLICE_AT => i("spliceAt", 3, Some(3), &[]),
        COERCE_TO => i("coerceTo", 2, Some(2), &[]),
        TYPE_OF => i("typeOf", 1, Some(1), &[]),
        UPDATE => i("update", 2, Some(2), WRITE_OPTS),
        DELETE => i("delete", 1, Some(1), WRITE_OPTS),
        REPLACE => i("replace", 2, Some(2), WRITE_OPTS),
        INSERT => i(
            "insert",
            2,
            Some(2),
            &[
                "durability",
                "return_changes",
                "conflict",
                "ignore_write_hook",
            ],
        ),
        DB_CREATE => i("dbCreate", 1, Some(1), &[]),
        DB_DROP => i("dbDrop", 1, Some(1), &[]),
        DB_LIST => i("dbList", 0, Some(0), &[]),
        TABLE_CREATE => i(
            "tableCreate",
            1,
            Some(2),
            &[
                "primary_key",
                "shards",
                "replicas",
                "primary_replica_tag",
                "nonvoting_replica_tags",
                "durability",
            ],
        ),
        TABLE_DROP => i("tableDrop", 1, Some(2), &[]),
        TABLE_LIST => i("tableList", 0, Some(1), &[]),
        CONFIG => i("config", 1, Some(1), &[]),
        STATUS => i("status", 1, Some(1), &[]),
        WAIT => i("wait", 0, Some(1), &["wait_for", "timeout"]),
        INDEX_CREATE => i("indexCreate", 2, Some(3), &["multi", "geo"]),
        INDEX_DROP => i("indexDrop", 2, Some(2), &[]),
        INDEX_LIST => i("indexList", 1, Some(1), &[]),
        INDEX_STATUS => i("indexStatus", 1, n, &[]),
        INDEX_WAIT => i("indexWait", 1, n, &[]),
        INDEX_RENAME => i("indexRename", 3, Some(3), &["overwrite"]),
        FUNCALL => i("do", 1, n, &[]),
        BRANCH => i("branch", 3, n, &[]),
        OR => i("or", 0, n, &[]),
        AND => i("and", 0, n, &[]),
        FOR_EACH => i("forEach", 2, Some(2), &[]),
        FUNC => i("func", 2, Some(2), &[]),
        ASC => i("asc", 1, Some(1), &[]),
        DESC => i("desc", 1, Some(1), &[]),
        INFO => i("info", 1, Some(1), &[]),
        UPCASE => i("upcase", 1, Some(1), &[]),
        DOWNCASE => i("downcase", 1, Some(1), &[]),
        DEFAULT => i("default", 2, Some(2), &[]),
        JSON => i("json", 1, Some(1), &[]),
        TO_JSON_STRING => i("toJsonString", 1, Some(1), &[]),
        EPOCH_TIME => i("epochTime", 1, Some(1), &[]),
        TO_EPOCH_TIME => i("toEpochTime", 1, Some(1), &[]),
        NOW => i("now", 0, Some(0), &[]),
        LITERAL => i("literal", 0, Some(1), &[]),
        GROUP => i("group", 1, n, &["index", "multi"]),
        SUM => i("sum", 1, Some(2), &[]),
        AVG => i("avg", 1, Some(2), &[]),
        MIN => i("min", 1, Some(2), &["index"]),
        MAX => i("max", 1, Some(2), &["index"]),
        SPLIT => i("split", 1, Some(3), &[]),
        UNGROUP => i("ungroup", 1, Some(1), &[]),
        CHANGES => i(
            "changes",
            1,
            Some(1),
            &[
                "squash",
                "include_states",
                "include_initial",
                "include_offsets",
                "include_types",
                "changefeed_queue_size",
            ],
        ),
        ARGS => i("args", 1, Some(1), &[]),
        BINARY => i("binary", 1, Some(1), &[]),
        MINVAL => i("minval", 0, Some(0), &[]),
        MAXVAL => i("maxval", 0, Some(0), &[]),
        JAVASCRIPT => unsupported("js"),
        HTTP => unsupported("http"),
        BETWEEN_DEPRECATED => unsupported("between_deprecated"),
        FOLD => unsupported("fold"),
        INNER_JOIN => unsupported("innerJoin"),
        OUTER_JOIN => unsupported("outerJoin"),
        EQ_JOIN => unsupported("eqJoin"),
        RECONFIGURE => unsupported("reconfigure"),
        REBALANCE => unsupported("rebalance"),
        SYNC => unsupported("sync"),
        GRANT => unsupported("grant"),
        SET_WRITE_HOOK => unsupported("setWriteHook"),
        GET_WRITE_HOOK => unsupported("getWriteHook"),
        MATCH => unsupported("match"),
        SAMPLE => unsupported("sample"),
        ISO8601 => unsupported("ISO8601"),
        TO_ISO8601 => unsupported("toISO8601"),
        IN_TIMEZONE => unsupported("inTimezone"),
        DURING => unsupported("during"),
        DATE => unsupported("date"),
        TIME_OF_DAY => unsupported("timeOfDay"),
        TIMEZONE => unsupported("timezone"),
        YEAR => unsupported("year"),
        MONTH => unsupported("month"),
        DAY => unsupported("day"),
        DAY_OF_WEEK => unsupported("dayOfWeek"),
        DAY_OF_YEAR => unsupported("dayOfYear"),
        HOURS => unsupported("hours"),
        MINUTES => unsupported("minutes"),
        SECONDS => unsupported("seconds"),
        TIME => unsupported("time"),
        RANDOM => unsupported("random"),
        107..=125 => unsupported("timeConstant"),
        157..=168 | 171 => unsupported("geospatial"),
        191..=196 => unsupported("bitwise"),
        _ => None,
    }
}

// ------------------------------------------------------------------ tree

/// A node of a query's term tree. Nodes are shared so that function values can
/// keep their body without copying it.
#[derive(Clone, Debug)]
pub struct Term(Arc<Node>);

#[derive(Debug)]
pub struct Node {
    /// Position of the node in a pre-order walk of the query, as RethinkDB numbers
    /// backtrace frames; it shows up in the stored form of index functions.
    pub bt: u32,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    Datum(Datum),
    Op {
        ty: u32,
        args: Vec<Term>,
        optargs: BTreeMap<String, Term>,
    },
    Func {
        params: Vec<i64>,
        params_bt: u32,
        body: Term,
    },
}

impl Term {
    pub fn datum(d: Datum) -> Term {
        Term(Arc::new(Node {
            bt: 0,
            kind: Kind::Datum(d),
        }))
    }

    pub fn op(ty: u32, args: Vec<Term>) -> Term {
        Term(Arc::new(Node {
            bt: 0,
            kind: Kind::Op {
                ty,
                args,
                optargs: BTreeMap::new(),
            },
        }))
    }

    pub fn func(params: Vec<i64>, body: Term) -> Term {
        Term(Arc::new(Node {
            bt: 0,
            kind: Kind::Func {
                params,
                params_bt: 0,
                body,
            },
        }))
    }

    pub fn kind(&self) -> &Kind {
        &self.0.kind
    }

    pub fn bt(&self) -> u32 {
        self.0.bt
    }

    pub fn ty(&self) -> u32 {
        match &self.0.kind {
            Kind::Datum(_) => tt::DATUM,
            Kind::Op { ty, .. } => *ty,
            Kind::Func { .. } => tt::FUNC,
        }
    }

    pub fn args(&self) -> &[Term] {
        match &self.0.kind {
            Kind::Op { args, .. } => args,
            _ => &[],
        }
    }

    pub fn optarg(&self, name: &str) -> Option<&Term> {
        match &self.0.kind {
            Kind::Op { optargs, .. } => optargs.get(name),
            _ => None,
        }
    }

    pub fn as_datum(&self) -> Option<&Datum> {
        match &self.0.kind {
            Kind::Datum(d) => Some(d),
            _ => None,
        }
    }

    /// Parses the JSON form of a term, numbering nodes in pre-order from `next`.
    pub fn parse(v: &serde_json::Value) -> Result<Term> {
        let mut next = 1;
        parse_node(v, &mut next)
    }

    /// Whether the term contains `r.row` outside nested functions.
    pub fn uses_implicit_var(&self) -> bool {
        match &self.0.kind {
            Kind::Datum(_) => false,
            Kind::Func { .. } => false,
            Kind::Op { ty, args, optargs } => {
                *ty == tt::IMPLICIT_VAR
                    || args.iter().any(Term::uses_implicit_var)
                    || optargs.values().any(Term::uses_implicit_var)
            }
        }
    }

    /// Terms whose result can differ between two runs, which RethinkDB refuses in
    /// index functions.
    pub fn is_deterministic(&self) -> bool {
        self.deterministic(false)
    }

    /// Whether an atomic write may run this term: as [`Term::is_deterministic`],
    /// but `r.now()` is allowed, because it is fixed once per query (RethinkDB
    /// 2.4.4 accepts it in `update`, `replace` and conflict functions, and
    /// refuses it in index functions).
    pub fn is_write_deterministic(&self) -> bool {
        self.deterministic(true)
    }

    fn deterministic(&self, in_write: bool) -> bool {
        match &self.0.kind {
            Kind::Datum(_) => true,
            Kind::Func { body, .. } => body.deterministic(in_write),
            Kind::Op { ty, .. } if *ty == tt::NOW && in_write => true,
            Kind::Op { ty, args, optargs } => {
                use tt::*;
                let own = !matches!(
                    *ty,
                    TABLE
                        | DB
                        | GET
                        | GET_ALL
                        | BETWEEN
                        | UUID
                        | NOW
                        | RANDOM
                        | SAMPLE
                        | JAVASCRIPT
                        | HTTP
                        | CHANGES
                        | DB_LIST
                        | TABLE_LIST
                        | INDEX_LIST
                        | INDEX_STATUS
                        | INDEX_WAIT
                        | CONFIG
                        | STATUS
                        | INFO
                        | WAIT
                        | INSERT
                        | UPDATE
                        | DELETE
                        | REPLACE
                        | DB_CREATE
                        | DB_DROP
                        | TABLE_CREATE
                        | TABLE_DROP
                        | INDEX_CREATE
                        | INDEX_DROP
                        | INDEX_RENAME
                );
                own && args.iter().all(|a| a.deterministic(in_write))
                    && optargs.values().all(|a| a.deterministic(in_write))
            }
        }
    }
}

fn is_literal(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Array(a) => {
            // Only `[2, [...]]` (MAKE_ARRAY) of literals is itself a literal.
            a.len() == 2
                && a[0].as_u64() == Some(tt::MAKE_ARRAY as u64)
                && a[1].as_array().is_some_and(|xs| xs.iter().all(is_literal))
        }
        serde_json::Value::Object(o) => o.values().all(is_literal),
        _ => true,
    }
}

/// Turns a literal JSON term (no operations inside) into its value.
fn literal_value(v: &serde_json::Value) -> Datum {
    match v {
        serde_json::Value::Array(a) => match a.get(1).and_then(|x| x.as_array()) {
            Some(xs) => Datum::array(xs.iter().map(literal_value).collect()),
            None => Datum::array(Vec::new()),
        },
        serde_json::Value::Object(o) => Datum::object(
            o.iter()
                .map(|(k, v)| (k.clone(), literal_value(v)))
                .collect(),
        ),
        other => Datum::from_json(other),
    }
}

fn parse_node(v: &serde_json::Value, next: &mut u32) -> Result<Term> {
    let bt = *next;
    *next += 1;
    let node = |kind| Ok(Term(Arc::new(Node { bt, kind })));
    match v {
        serde_json::Value::Array(a) => {
            if is_literal(v) {
                return node(Kind::Datum(literal_value(v)));
            }
            let ty = a.first().and_then(|t| t.as_u64()).ok_or_else(|| {
                ReqlError::compile("Expected a TermType as the first element of a term.")
            })?;
            let ty = u32::try_from(ty)
                .map_err(|_| ReqlError::compile(format!("Unrecognized TermType: {ty}.")))?;
            if ty == tt::DATUM {
                let d = a.get(1).map(Datum::from_json).unwrap_or(Datum::Null);
                return node(Kind::Datum(d));
            }
            let args_json: &[serde_json::Value] = match a.get(1) {
                None => &[],
                Some(serde_json::Value::Array(xs)) => xs,
                Some(_) => {
                    return Err(ReqlError::compile(
                        "Expected the arguments of a term to be an array.",
                    ))
                }
            };
            if ty == tt::FUNC && args_json.len() == 2 {
                if let Some(params) = func_params(&args_json[0]) {
                    let params_bt = *next;
                    *next += 1;
                    let body = parse_node(&args_json[1], next)?;
                    return node(Kind::Func {
                        params,
                        params_bt,
                        body,
                    });
                }
            }
            let mut args = Vec::with_capacity(args_json.len());
            for x in args_json {
                args.push(parse_node(x, next)?);
            }
            let mut optargs = BTreeMap::new();
            match a.get(2) {
                None => {}
                Some(serde_json::Value::Object(o)) => {
                    for (k, x) in o {
                        optargs.insert(k.clone(), parse_node(x, next)?);
                    }
                }
                Some(_) => {
                    return Err(ReqlError::compile(
                        "Expected the optional arguments of a term to be an object.",
                    ))
                }
            }
            node(Kind::Op { ty, args, optargs })
        }
        serde_json::Value::Object(o) => {
            if is_literal(v) {
                return node(Kind::Datum(literal_value(v)));
            }
            let mut optargs = BTreeMap::new();
            for (k, x) in o {
                optargs.insert(k.clone(), parse_node(x, next)?);
            }
            node(Kind::Op {
                ty: tt::MAKE_OBJ,
                args: Vec::new(),
                optargs,
            })
        }
        other => node(Kind::Datum(Datum::from_json(other))),
    }
}

fn func_params(v: &serde_json::Value) -> Option<Vec<i64>> {
    let xs = match v {
        serde_json::Value::Array(a) if a.len() == 2 && a[0].as_u64() == Some(2) => {
            a[1].as_array()?
        }
        _ => return None,
    };
    xs.iter().map(|x| x.as_i64()).collect()
}

// ------------------------------------------------------------------ compile checks

pub fn arity_message(min: usize, max: Option<usize>, found: usize) -> String {
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    match max {
        Some(m) if m == min => format!("Expected {min} {} but found {found}.", plural(min)),
        Some(m) => format!("Expected between {min} and {m} arguments but found {found}."),
        None => format!("Expected {min} or more arguments but found {found}."),
    }
}

/// The checks RethinkDB makes before running a query; they fail with COMPILE_ERROR.
pub fn check(term: &Term) -> Result<()> {
    check_node(term, &mut Vec::new(), 0)
}

fn check_node(term: &Term, vars: &mut Vec<i64>, funcs: usize) -> Result<()> {
    match term.kind() {
        Kind::Datum(_) => Ok(()),
        Kind::Func { params, body, .. } => {
            let before = vars.len();
            vars.extend(params.iter().copied());
            let r = check_node(body, vars, funcs + 1);
            vars.truncate(before);
            r
        }
        Kind::Op { ty, args, optargs } => {
            let info = info(*ty)
                .ok_or_else(|| ReqlError::compile(format!("Unrecognized TermType: {ty}.")))?;
            if *ty == tt::FUNC {
                return Err(ReqlError::compile(
                    "Expected a list of variable names as the first argument of FUNC.",
                ));
            }
            let spread = args.iter().any(|a| a.ty() == tt::ARGS);
            if !spread && (args.len() < info.min || info.max.is_some_and(|m| args.len() > m)) {
                return Err(ReqlError::compile(arity_message(
                    info.min,
                    info.max,
                    args.len(),
                )));
            }
            if info.optargs != ANY {
                for k in optargs.keys() {
                    if !info.optargs.contains(&k.as_str()) {
                        return Err(ReqlError::compile(format!(
                            "Unrecognized optional argument `{k}`."
                        )));
                    }
                }
            }
            match *ty {
                tt::VAR => {
                    let id = args
                        .first()
                        .and_then(|a| a.as_datum())
                        .and_then(Datum::as_num)
                        .map(|n| n as i64);
                    match id {
                        Some(id) if vars.contains(&id) => {}
                        _ => return Err(ReqlError::compile("Variable name not found.")),
                    }
                }
                tt::IMPLICIT_VAR if funcs == 0 => {
                    return Err(ReqlError::compile("r.row is not defined in this context."))
                }
                _ => {}
            }
            for a in args {
                check_node(a, vars, funcs)?;
            }
            for a in optargs.values() {
                check_node(a, vars, funcs)?;
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ index functions

/// The forms RethinkDB reports for an index function in `indexStatus`: the query
/// that would recreate it and its stored binary form.
pub struct IndexFunctionForms {
    pub query: String,
    pub blob_base64: String,
}

/// Variable id RethinkDB uses for the function it builds from a plain field name.
pub const FIELD_INDEX_VAR: i64 = -19;

pub fn field_index_function(field: &str) -> Term {
    let var = Term::op(
        tt::VAR,
        vec![Term::datum(Datum::Num(FIELD_INDEX_VAR as f64))],
    );
    Term::func(
        vec![FIELD_INDEX_VAR],
        Term::op(tt::GET_FIELD, vec![var, Term::datum(Datum::from(field))]),
    )
}

pub fn index_function_forms(name: &str, func: &Term, multi: bool, geo: bool) -> IndexFunctionForms {
    let mut opts = Vec::new();
    if multi {
        opts.push("multi: true");
    }
    if geo {
        opts.push("geo: true");
    }
    let mut query = format!("indexCreate('{name}', ");
    js(func, &mut query, false);
    if !opts.is_empty() {
        query.push_str(&format!(", {{{}}}", opts.join(", ")));
    }
    query.push(')');

    let (params, body) = match func.kind() {
        Kind::Func { params, body, .. } => (params.clone(), body.clone()),
        _ => (Vec::new(), func.clone()),
    };
    let mut body_json = String::new();
    serialize_bt(&body, &mut body_json);
    let mut blob: Vec<u8> = b"$reql_index_function$".to_vec();
    blob.extend_from_slice(&[0x09, 0x07, 0x07, 0x07, 0, 0, 0, 0, 0, 0]);
    blob.push(params.len().min(255) as u8);
    for p in &params {
        blob.extend_from_slice(&p.to_le_bytes());
    }
    blob.extend_from_slice(&((body_json.len() + 1) as u32).to_le_bytes());
    blob.extend_from_slice(body_json.as_bytes());
    blob.push(0);
    blob.extend_from_slice(&body.bt().to_le_bytes());
    blob.push(multi as u8);
    blob.push(geo as u8);
    IndexFunctionForms {
        query,
        blob_base64: mime_base64(&blob),
    }
}

/// Base64 with CRLF line breaks every 76 characters, as RethinkDB encodes binaries.
fn mime_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(plain.len() + plain.len() / 38);
    for (i, chunk) in plain.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(&String::from_utf8_lossy(chunk));
    }
    out
}

fn serialize_bt(t: &Term, out: &mut String) {
    match t.kind() {
        Kind::Datum(d) => {
            out.push_str("[1,");
            out.push_str(&d.to_json().unwrap_or_else(|_| "null".into()));
            out.push_str(&format!(",{}]", t.bt()));
        }
        Kind::Func {
            params,
            params_bt,
            body,
        } => {
            let ps: Vec<String> = params.iter().map(|p| p.to_string()).collect();
            out.push_str(&format!("[69,[[1,[{}],{}],", ps.join(","), params_bt));
            serialize_bt(body, out);
            out.push_str(&format!("],{}]", t.bt()));
        }
        Kind::Op { ty, args, optargs } => {
            out.push_str(&format!("[{ty},["));
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                serialize_bt(a, out);
            }
            out.push(']');
            if !optargs.is_empty() {
                out.push_str(",{");
                for (i, (k, v)) in optargs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(k, out);
                    out.push(':');
                    serialize_bt(v, out);
                }
                out.push('}');
            }
            out.push_str(&format!(",{}]", t.bt()));
        }
    }
}

fn var_name(id: i64) -> String {
    if id < 0 {
        format!("_var{}", -id)
    } else {
        format!("var{id}")
    }
}

/// Terms rendered as `r.name(...)` rather than as a method on their first argument.
fn is_top_level(ty: u32) -> bool {
    use tt::*;
    matches!(
        ty,
        DB | UUID
            | ERROR
            | BRANCH
            | RANGE
            | JSON
            | LITERAL
            | EPOCH_TIME
            | NOW
            | MINVAL
            | MAXVAL
            | ASC
            | DESC
            | ARGS
            | BINARY
            | OBJECT
            | DB_CREATE
            | DB_DROP
            | DB_LIST
            | FUNCALL
    )
}

fn js(t: &Term, out: &mut String, in_array: bool) {
    match t.kind() {
        Kind::Datum(d) => match d {
            Datum::Array(_) | Datum::Object(_) if !in_array => {
                out.push_str("r.expr(");
                out.push_str(&d.to_json().unwrap_or_default());
                out.push(')');
            }
            _ => out.push_str(&d.to_json().unwrap_or_else(|_| "null".into())),
        },
        Kind::Func { params, body, .. } => {
            let names: Vec<String> = params.iter().map(|p| var_name(*p)).collect();
            out.push_str(&format!("function({}) {{ return ", names.join(", ")));
            js(body, out, false);
            out.push_str("; }");
        }
        Kind::Op { ty, args, optargs } => {
            let join = |out: &mut String, xs: &[Term]| {
                for (i, a) in xs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    js(a, out, false);
                }
            };
            match *ty {
                tt::VAR => {
                    let id = args
                        .first()
                        .and_then(|a| a.as_datum())
                        .and_then(Datum::as_num)
                        .unwrap_or(0.0);
                    out.push_str(&var_name(id as i64));
                }
                tt::IMPLICIT_VAR => out.push_str("r.row"),
                tt::MAKE_ARRAY => {
                    if !in_array {
                        out.push_str("r.expr(");
                    }
                    out.push('[');
                    for (i, a) in args.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        js(a, out, true);
                    }
                    out.push(']');
                    if !in_array {
                        out.push(')');
                    }
                }
                tt::MAKE_OBJ => {
                    out.push('{');
                    for (i, (k, v)) in optargs.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(k);
                        out.push_str(": ");
                        js(v, out, true);
                    }
                    out.push('}');
                }
                tt::BRACKET if args.len() == 2 => {
                    js(&args[0], out, false);
                    out.push('(');
                    js(&args[1], out, false);
                    out.push(')');
                }
                _ => {
                    let name = info(*ty).map(|i| i.name).unwrap_or("unknown");
                    if is_top_level(*ty) || args.is_empty() {
                        out.push_str("r.");
                        out.push_str(name);
                        out.push('(');
                        join(out, args);
                    } else {
                        js(&args[0], out, false);
                        out.push('.');
                        out.push_str(name);
                        out.push('(');
                        join(out, &args[1..]);
                    }
                    if !optargs.is_empty() {
                        if !args.is_empty() {
                            out.push_str(", ");
                        }
                        out.push('{');
                        for (i, (k, v)) in optargs.iter().enumerate() {
                            if i > 0 {
                                out.push_str(", ");
                            }
                            out.push_str(k);
                            out.push_str(": ");
                            js(v, out, false);
                        }
                        out.push('}');
                    }
                    out.push(')');
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_term(json: &str) -> Term {
        Term::parse(&serde_json::from_str(json).unwrap()).unwrap()
    }

    fn func_arg(t: &Term) -> Term {
        t.args()[2].clone()
    }

    #[test]
    fn field_index_forms_match_rethinkdb() {
        let f = index_function_forms("board", &field_index_function("board"), false, false);
        assert_eq!(
            f.query,
            "indexCreate('board', function(_var19) { return _var19.getField(\"board\"); })"
        );
        assert_eq!(f.blob_base64, "JHJlcWxfaW5kZXhfZnVuY3Rpb24kCQcHBwAAAAAAAAHt/////////yoAAABbMzEsW1sxMCxbWzEs\r\nLTE5LDBdXSwwXSxbMSwiYm9hcmQiLDBdXSwwXQAAAAAAAAA=");
        let t = index_function_forms("tags", &field_index_function("tags"), true, false);
        assert_eq!(
            t.query,
            "indexCreate('tags', function(_var19) { return _var19.getField(\"tags\"); }, {multi: true})"
        );
        assert_eq!(t.blob_base64, "JHJlcWxfaW5kZXhfZnVuY3Rpb24kCQcHBwAAAAAAAAHt/////////ykAAABbMzEsW1sxMCxbWzEs\r\nLTE5LDBdXSwwXSxbMSwidGFncyIsMF1dLDBdAAAAAAABAA==");
    }

    #[test]
    fn user_index_forms_match_rethinkdb() {
        let q = query_term(
            r#"[75, [[15, ["scores"]], "board_score", [69, [[2, [1]], [2, [[170, [[13, []], "board"]], [170, [[13, []], "score"]]]]]]]]"#,
        );
        let f = index_function_forms("board_score", &func_arg(&q), false, false);
        assert_eq!(f.query, "indexCreate('board_score', function(var1) { return r.expr([r.row(\"board\"), r.row(\"score\")]); })");
        assert_eq!(f.blob_base64, "JHJlcWxfaW5kZXhfZnVuY3Rpb24kCQcHBwAAAAAAAAEBAAAAAAAAAFAAAABbMixbWzE3MCxbWzEz\r\nLFtdLDldLFsxLCJib2FyZCIsMTBdXSw4XSxbMTcwLFtbMTMsW10sMTJdLFsxLCJzY29yZSIsMTNd\r\nXSwxMV1dLDddAAcAAAAAAA==");

        let q = query_term(
            r#"[75, [[15, ["scores"]], "score_fn", [69, [[2, [2]], [170, [[10, [2]], "score"]]]]]]"#,
        );
        let f = index_function_forms("score_fn", &func_arg(&q), false, false);
        assert_eq!(
            f.query,
            "indexCreate('score_fn', function(var2) { return var2(\"score\"); })"
        );
        assert_eq!(f.blob_base64, "JHJlcWxfaW5kZXhfZnVuY3Rpb24kCQcHBwAAAAAAAAECAAAAAAAAACoAAABbMTcwLFtbMTAsW1sx\r\nLDIsOV1dLDhdLFsxLCJzY29yZSIsMTBdXSw3XQAHAAAAAAA=");

        let q = query_term(
            r#"[75, [[15, ["scores"]], "board_score", [69, [[2, [1]], [2, [[31, [[10, [1]], "board"]], [31, [[10, [1]], "score"]]]]]]]]"#,
        );
        let f = index_function_forms("board_score", &func_arg(&q), false, false);
        assert_eq!(f.query, "indexCreate('board_score', function(var1) { return r.expr([var1.getField(\"board\"), var1.getField(\"score\")]); })");
        assert_eq!(f.blob_base64, "JHJlcWxfaW5kZXhfZnVuY3Rpb24kCQcHBwAAAAAAAAEBAAAAAAAAAF4AAABbMixbWzMxLFtbMTAs\r\nW1sxLDEsMTBdXSw5XSxbMSwiYm9hcmQiLDExXV0sOF0sWzMxLFtbMTAsW1sxLDEsMTRdXSwxM10s\r\nWzEsInNjb3JlIiwxNV1dLDEyXV0sN10ABwAAAAAA");
    }

    #[test]
    fn compile_errors() {
        let e = |j: &str| check(&query_term(j)).unwrap_err().message().to_string();
        assert_eq!(
            e("[16, [[15, [\"scores\"]]]]"),
            "Expected 2 arguments but found 1."
        );
        assert_eq!(e("[9999, []]"), "Unrecognized TermType: 9999.");
        assert_eq!(e("[10, [3]]"), "Variable name not found.");
        assert_eq!(e("[13, []]"), "r.row is not defined in this context.");
        assert_eq!(
            e("[15, [\"m\"], {\"bogus\": 1}]"),
            "Unrecognized optional argument `bogus`."
        );
        assert!(check(&query_term(
            "[64, [[69, [[2, [7]], [24, [[10, [7]], 1]]]], 41]]"
        ))
        .is_ok());
    }
}
