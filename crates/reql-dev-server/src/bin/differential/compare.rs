//! Answers made comparable, and the places where two of them differ.

use serde_json::{Map, Value};

/// How an answer may be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The server defines the order.
    Exact,
    /// RethinkDB gives no order (a table scan, `getAll`, a multi-document
    /// `returnChanges`): items are compared as a multiset.
    Unordered,
    /// A write over an unordered selection. Its changes are a multiset, and
    /// its `first_error` names whichever failing document the shards
    /// answered for first, which varies from run to run on RethinkDB: with
    /// more than one error it is only checked to be one of them.
    Scan,
}

/// Where two answers differ: the path into the answer and both values.
pub struct Difference {
    pub path: String,
    pub dev: Value,
    pub real: Value,
}

/// Replaces what legitimately differs between two servers: generated ids
/// and the server's name in a table's configuration.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(mask_uuids(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "primary_replica" => Value::String("<server>".into()),
                        "replicas" => serde_json::json!(["<server>"]),
                        _ => normalize(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// `s` with every UUID (8-4-4-4-12 hex digits) replaced by `<uuid>`.
fn mask_uuids(s: &str) -> String {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    'outer: while i < bytes.len() {
        if i + 36 <= bytes.len() {
            let mut j = i;
            let mut ok = true;
            for (g, len) in SHAPE.iter().enumerate() {
                if g > 0 {
                    ok &= bytes[j] == b'-';
                    j += 1;
                }
                ok &= bytes[j..j + len].iter().all(u8::is_ascii_hexdigit);
                j += len;
            }
            if ok {
                out.push_str("<uuid>");
                i = j;
                continue 'outer;
            }
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// A total order on JSON values, used to compare multisets.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{k:?}:{}", canonical(&map[*k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        Value::Number(n) => format!("{}", n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

fn sort_multiset(items: &mut [Value]) {
    items.sort_by_key(canonical);
}

/// Puts an unordered answer in a canonical order: a stream's items, an
/// array atom, and the `changes` of a write result.
pub fn canonical_order(answer: &mut Value, order: Order) {
    if order == Order::Exact {
        return;
    }
    if let Some(Value::Array(items)) = answer.get_mut("items") {
        sort_multiset(items);
    }
    if let Some(r) = answer.get_mut("r") {
        match r {
            Value::Array(items) => sort_multiset(items),
            Value::Object(result) => {
                if order == Order::Scan {
                    mask_first_error(result);
                }
                if let Some(Value::Array(changes)) = result.get_mut("changes") {
                    sort_multiset(changes);
                }
            }
            _ => {}
        }
    }
}

/// With several errors, `first_error` becomes a placeholder when it is one
/// of the errors the changes show (or when they show none); otherwise it
/// stays, and shows up as a divergence.
fn mask_first_error(result: &mut Map<String, Value>) {
    if result.get("errors").and_then(Value::as_u64).unwrap_or(0) < 2 {
        return;
    }
    let errors: Vec<&Value> = result
        .get("changes")
        .and_then(Value::as_array)
        .map(|changes| changes.iter().filter_map(|c| c.get("error")).collect())
        .unwrap_or_default();
    let Some(first) = result.get("first_error") else {
        return;
    };
    if errors.is_empty() || errors.contains(&first) {
        result.insert(
            "first_error".into(),
            Value::String("<one of the errors>".into()),
        );
    }
}

/// A top-N feed (`orderBy(index).limit(n).changes()`) is compared by what
/// it says the top N are: its initial values, and the set after every
/// change is applied. The changes on the way differ between runs on
/// RethinkDB, which may pass through a row that is about to leave.
pub fn fold_top_n(answer: &mut Value, pk: &str) {
    if answer
        .get("n")
        .and_then(|n| n.as_array())
        .is_none_or(|n| !n.contains(&Value::from(3)))
    {
        return;
    }
    let Some(Value::Array(items)) = answer.get_mut("items").map(Value::take) else {
        return;
    };
    let mut states = Vec::new();
    let mut initial = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    for item in items {
        if item.get("state").is_some() {
            states.push(item);
            continue;
        }
        let old = item.get("old_val").filter(|v| !v.is_null());
        let new = item.get("new_val").filter(|v| !v.is_null()).cloned();
        match (item.get("old_val"), &new) {
            (None, Some(v)) => initial.push(v.clone()),
            _ => {
                if let Some(old) = old {
                    current.retain(|d| d.get(pk) != old.get(pk));
                }
            }
        }
        if let Some(v) = new {
            current.retain(|d| d.get(pk) != v.get(pk));
            current.push(v);
        }
    }
    sort_multiset(&mut initial);
    sort_multiset(&mut current);
    answer["items"] = serde_json::json!({
        "states": states,
        "initial": initial,
        "final": current,
    });
}

/// The document a feed item is about: its primary key, from `new_val` or
/// `old_val`. State documents have none.
fn feed_key(item: &Value, pk: &str) -> Option<String> {
    let side = |name: &str| item.get(name).and_then(|v| v.get(pk)).map(canonical);
    match (side("old_val"), side("new_val")) {
        (None, None) => None,
        (old, new) => Some(format!(
            "{}>{}",
            old.unwrap_or_default(),
            new.unwrap_or_default()
        )),
    }
}

/// Changes to different documents come in any order on RethinkDB, since
/// they come from different shards; between state documents the items are
/// put in key order, keeping the order of the changes to each document.
pub fn canonical_feed(items: &mut [Value], pk: &str) {
    let mut start = 0;
    for i in 0..=items.len() {
        let boundary = i == items.len() || feed_key(&items[i], pk).is_none();
        if boundary {
            items[start..i].sort_by_key(|item| feed_key(item, pk).unwrap_or_default());
            start = i + 1;
        }
    }
}

fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    // RethinkDB writes integral values without a fraction; `5.0` where it
    // writes `5` breaks a client that decodes an integer.
    a.as_f64() == b.as_f64() && a.is_f64() == b.is_f64()
}

/// Every place where `dev` and `real` differ.
pub fn differences(dev: &Value, real: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(dev, real, "$".to_owned(), &mut out);
    out
}

fn walk(dev: &Value, real: &Value, path: String, out: &mut Vec<Difference>) {
    match (dev, real) {
        (Value::Number(a), Value::Number(b)) if same_number(a, b) => {}
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(x, y, format!("{path}[{i}]"), out);
            }
        }
        (Value::Object(a), Value::Object(b)) => walk_object(a, b, &path, out),
        (a, b) if a == b => {}
        (a, b) => out.push(Difference {
            path,
            dev: a.clone(),
            real: b.clone(),
        }),
    }
}

fn walk_object(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Difference>,
) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let p = format!("{path}.{k}");
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) => walk(x, y, p, out),
            (x, y) => out.push(Difference {
                path: p,
                dev: x.cloned().unwrap_or(Value::String("<absent>".into())),
                real: y.cloned().unwrap_or(Value::String("<absent>".into())),
            }),
        }
    }
}
