//! ReQL terms as wire JSON, each with the JavaScript a reader knows it by,
//! so a divergence names its query in a form that can be pasted into a
//! driver.

use serde_json::{json, Map, Value};

/// A term: what is sent, and how it reads.
#[derive(Clone, Debug)]
pub struct T {
    pub json: Value,
    pub js: String,
}

/// Term type ids, as in RethinkDB's `ql2.proto`.
pub mod id {
    pub const MAKE_ARRAY: u64 = 2;
    pub const VAR: u64 = 10;
    pub const DB: u64 = 14;
    pub const TABLE: u64 = 15;
    pub const GET: u64 = 16;
    pub const GT: u64 = 21;
    pub const ADD: u64 = 24;
    pub const PLUCK: u64 = 33;
    pub const WITHOUT: u64 = 34;
    pub const MERGE: u64 = 35;
    pub const FILTER: u64 = 39;
    pub const ORDER_BY: u64 = 41;
    pub const COUNT: u64 = 43;
    pub const NTH: u64 = 45;
    pub const UPDATE: u64 = 53;
    pub const DELETE: u64 = 54;
    pub const REPLACE: u64 = 55;
    pub const INSERT: u64 = 56;
    pub const DB_CREATE: u64 = 57;
    pub const DB_DROP: u64 = 58;
    pub const TABLE_CREATE: u64 = 60;
    pub const TABLE_DROP: u64 = 61;
    pub const TABLE_LIST: u64 = 62;
    pub const FUNC: u64 = 69;
    pub const SKIP: u64 = 70;
    pub const LIMIT: u64 = 71;
    pub const ASC: u64 = 73;
    pub const DESC: u64 = 74;
    pub const INDEX_CREATE: u64 = 75;
    pub const INDEX_DROP: u64 = 76;
    pub const INDEX_LIST: u64 = 77;
    pub const GET_ALL: u64 = 78;
    pub const DEFAULT: u64 = 92;
    pub const INDEX_WAIT: u64 = 140;
    pub const CHANGES: u64 = 152;
    pub const INDEX_RENAME: u64 = 156;
    pub const BRACKET: u64 = 170;
    pub const WAIT: u64 = 177;
    pub const MINVAL: u64 = 180;
    pub const MAXVAL: u64 = 181;
    pub const BETWEEN: u64 = 182;
}

/// A plain value. Arrays inside it are wrapped in MAKE_ARRAY, since a bare
/// JSON array on the wire is a term.
pub fn datum(v: Value) -> T {
    T {
        js: js_of(&v),
        json: wrap(v),
    }
}

fn wrap(v: Value) -> Value {
    match v {
        Value::Array(items) => json!([
            id::MAKE_ARRAY,
            items.into_iter().map(wrap).collect::<Vec<_>>()
        ]),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, wrap(v))).collect()),
        other => other,
    }
}

fn js_of(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", js_of(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(js_of).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// An object whose values are terms.
pub fn obj(fields: Vec<(&str, T)>) -> T {
    let js: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.js))
        .collect();
    let map: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.json))
        .collect();
    T {
        json: Value::Object(map),
        js: format!("{{{}}}", js.join(", ")),
    }
}

/// An array of terms.
pub fn array(items: Vec<T>) -> T {
    let js: Vec<String> = items.iter().map(|t| t.js.clone()).collect();
    T {
        json: json!([
            id::MAKE_ARRAY,
            items.into_iter().map(|t| t.json).collect::<Vec<_>>()
        ]),
        js: format!("[{}]", js.join(", ")),
    }
}

/// `r.name(args...)`.
pub fn top(term: u64, name: &str, args: Vec<T>) -> T {
    let js: Vec<String> = args.iter().map(|t| t.js.clone()).collect();
    T {
        json: json!([term, args.into_iter().map(|t| t.json).collect::<Vec<_>>()]),
        js: format!("r.{name}({})", js.join(", ")),
    }
}

/// A one-argument function whose parameter is variable `var`.
pub fn func(vars: &[u64], body: T) -> T {
    let names: Vec<String> = vars.iter().map(|v| format!("v{v}")).collect();
    T {
        json: json!([id::FUNC, [[id::MAKE_ARRAY, vars], body.json]]),
        js: format!("function({}) {{ return {}; }}", names.join(", "), body.js),
    }
}

/// The function parameter `var`.
pub fn var(v: u64) -> T {
    T {
        json: json!([id::VAR, [v]]),
        js: format!("v{v}"),
    }
}

pub fn db(name: &str) -> T {
    top(id::DB, "db", vec![datum(json!(name))])
}

pub fn minval() -> T {
    T {
        json: json!([id::MINVAL, []]),
        js: "r.minval".into(),
    }
}

pub fn maxval() -> T {
    T {
        json: json!([id::MAXVAL, []]),
        js: "r.maxval".into(),
    }
}

pub fn desc(index: &str) -> T {
    top(id::DESC, "desc", vec![datum(json!(index))])
}

pub fn asc(index: &str) -> T {
    top(id::ASC, "asc", vec![datum(json!(index))])
}

impl T {
    /// `self.name(args..., {optargs})`.
    pub fn call(self, term: u64, name: &str, args: Vec<T>, opts: Vec<(&str, T)>) -> T {
        let mut js: Vec<String> = vec![];
        let mut wire = vec![self.json];
        for a in args {
            js.push(a.js);
            wire.push(a.json);
        }
        let json = if opts.is_empty() {
            json!([term, wire])
        } else {
            let o = obj(opts);
            js.push(o.js);
            json!([term, wire, o.json])
        };
        T {
            json,
            js: format!("{}.{name}({})", self.js, js.join(", ")),
        }
    }

    /// `self(field)`.
    pub fn field(self, name: &str) -> T {
        T {
            json: json!([id::BRACKET, [self.json, name]]),
            js: format!("{}('{name}')", self.js),
        }
    }

    pub fn table(self, name: &str) -> T {
        self.call(id::TABLE, "table", vec![datum(json!(name))], vec![])
    }

    pub fn get(self, key: Value) -> T {
        self.call(id::GET, "get", vec![datum(key)], vec![])
    }
}
