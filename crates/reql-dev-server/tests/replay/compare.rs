//! What may differ between a recorded answer and a live one, and how two
//! answers are compared: the normalisation rules of the transcripts'
//! README, applied as the reference checker (`replay.py`) applies them.

use serde_json::{Number, Value};

use super::ordered::{dumps, from_value, CANONICAL};

/// The name the transcripts give the database.
pub const DB_PLACEHOLDER: &str = "rqlconf";
/// The name the transcripts give the server.
pub const SERVER_PLACEHOLDER: &str = "<server_name>";

const FEED_NOTES: [i64; 4] = [1, 2, 3, 4];

/// Every UUID in `s`, whole or embedded, replaced by `<uuid>`.
pub fn mask_uuids(s: &str) -> String {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let b = s.as_bytes();
    let uuid_at = |i: usize| {
        let mut j = i;
        for (n, len) in GROUPS.iter().enumerate() {
            if n > 0 {
                if b.get(j) != Some(&b'-') {
                    return false;
                }
                j += 1;
            }
            for _ in 0..*len {
                if !b.get(j).is_some_and(u8::is_ascii_hexdigit) {
                    return false;
                }
                j += 1;
            }
        }
        true
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if uuid_at(i) {
            out.extend_from_slice(b"<uuid>");
            i += 36;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only ASCII was replaced, at ASCII positions: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn map_strings(v: &Value, f: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(f(s)),
        Value::Array(items) => Value::Array(items.iter().map(|x| map_strings(x, f)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, x)| (k.clone(), map_strings(x, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The names a run puts in place of the transcripts' placeholders.
pub struct Norm {
    pub fresh_db: Option<String>,
    pub server_name: Option<String>,
}

impl Norm {
    /// A value from the server under test, written back with the
    /// placeholders and with its UUIDs masked.
    pub fn value(&self, v: &Value) -> Value {
        map_strings(v, &|s| {
            let mut s = s.to_owned();
            if let Some(db) = self.fresh_db.as_deref().filter(|d| !d.is_empty()) {
                s = s.replace(db, DB_PLACEHOLDER);
            }
            if let Some(name) = self.server_name.as_deref().filter(|n| !n.is_empty()) {
                s = s.replace(name, SERVER_PLACEHOLDER);
            }
            mask_uuids(&s)
        })
    }

    /// A recorded value (already written with placeholders), its UUIDs
    /// masked.
    pub fn expected(&self, v: &Value) -> Value {
        map_strings(v, &|s| mask_uuids(s))
    }
}

/// The text by which values are sorted: `json.dumps(v, sort_keys=True,
/// ensure_ascii=False)`.
pub fn canon(v: &Value) -> String {
    dumps(&from_value(v), CANONICAL)
}

/// A value for a message, cut at 160 characters.
pub fn short(v: &Value) -> String {
    let s = canon(v);
    if s.chars().count() <= 160 {
        s
    } else {
        format!("{}...", s.chars().take(160).collect::<String>())
    }
}

/// A response without the fields that may differ: backtrace and profile.
pub fn strip_response(resp: &Value) -> Value {
    match resp {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "b" && k.as_str() != "p")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The hints of one line: which names of a list result count, and whether
/// the result has an order.
pub struct Hints<'a> {
    pub only: Option<&'a [Value]>,
    pub unordered: bool,
}

/// `resp` with the line's hints applied: `norm.only` filters a list
/// result; `unordered` sorts a list result, or the `changes` and
/// `generated_keys` of a write result.
pub fn apply_hints(resp: &Value, hints: &Hints<'_>) -> Value {
    let Value::Object(map) = resp else {
        return resp.clone();
    };
    let mut map = map.clone();
    let atom = map.get("t").and_then(Value::as_i64) == Some(1);
    if let (Some(only), true) = (hints.only, atom) {
        if let Some(Value::Array(r)) = map.get_mut("r") {
            if let Some(Value::Array(first)) = r.first_mut() {
                first.retain(|x| only.iter().any(|k| values_equal(k, x)));
            }
        }
    }
    if hints.unordered && atom {
        if let Some(Value::Array(r)) = map.get_mut("r") {
            match r.first_mut() {
                Some(Value::Array(items)) => sort_canonically(items),
                Some(Value::Object(result)) => {
                    for k in ["changes", "generated_keys"] {
                        if let Some(Value::Array(items)) = result.get_mut(k) {
                            sort_canonically(items);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Value::Object(map)
}

/// Sorts by canonical text, stably.
pub fn sort_canonically(items: &mut [Value]) {
    items.sort_by_cached_key(canon);
}

enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i.into())
    } else if let Some(u) = n.as_u64() {
        Num::Int(u.into())
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Numbers are equal by value, `5` and `5.0` alike, as in Python.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => x == y,
        (Num::Float(x), Num::Float(y)) => x == y,
        (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => {
            f.fract() == 0.0 && f.abs() < 1.7e38 && f as i128 == i
        }
    }
}

/// Python's `==` on decoded JSON.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| values_equal(p, q)))
        }
        _ => a == b,
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn key_repr(k: &str) -> String {
    if k.contains('\'') && !k.contains('"') {
        format!("\"{k}\"")
    } else {
        format!("'{}'", k.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// The first place where `actual` differs from `expected`, described
/// (`$.r[0].score: expected 3, got 4`); `None` when they are equal.
pub fn first_diff(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    if !same_kind(expected, actual) {
        return Some(format!(
            "{path}: expected {}, got {}",
            short(expected),
            short(actual)
        ));
    }
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(x), None) => {
                        return Some(format!(
                            "{path}: missing key {} (expected {})",
                            key_repr(k),
                            short(x)
                        ))
                    }
                    (None, Some(y)) => {
                        return Some(format!(
                            "{path}: unexpected key {} = {}",
                            key_repr(k),
                            short(y)
                        ))
                    }
                    (Some(x), Some(y)) => {
                        if let Some(d) = first_diff(x, y, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    (None, None) => {}
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if let Some(d) = first_diff(x, y, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            if a.len() != b.len() {
                let extra = if a.len() > b.len() {
                    &a[b.len()]
                } else {
                    &b[a.len()]
                };
                return Some(format!(
                    "{path}: expected {} items, got {} (first extra/missing: {})",
                    a.len(),
                    b.len(),
                    short(extra)
                ));
            }
            None
        }
        _ if values_equal(expected, actual) => None,
        _ => Some(format!(
            "{path}: expected {}, got {}",
            short(expected),
            short(actual)
        )),
    }
}

/// Python's truth value of decoded JSON.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Whether the first answer's notes mark a changefeed.
pub fn is_feed(first: &Value) -> bool {
    first.get("n").and_then(Value::as_array).is_some_and(|n| {
        n.iter()
            .any(|x| x.as_i64().is_some_and(|x| FEED_NOTES.contains(&x)))
    })
}

fn is_state(d: &Value) -> bool {
    d.as_object()
        .is_some_and(|m| m.len() == 1 && m.contains_key("state"))
}

/// The primary keys a change is about, as sortable text.
fn change_key(d: &Value) -> String {
    let Some(map) = d.as_object() else {
        return canon(d);
    };
    let ids: Vec<Value> = ["new_val", "old_val"]
        .iter()
        .filter_map(|k| map.get(*k)?.as_object()?.get("id").cloned())
        .collect();
    canon(&Value::Array(ids))
}

/// Changes of different documents that arrive together have no defined
/// order (they come from different shards): between state documents, the
/// changes are ordered by primary key, keeping the order of changes to the
/// same document.
pub fn canon_window(docs: &[Value]) -> Vec<Value> {
    let mut out = Vec::with_capacity(docs.len());
    let mut segment: Vec<Value> = Vec::new();
    for d in docs {
        if is_state(d) {
            segment.sort_by_cached_key(change_key);
            out.append(&mut segment);
            out.push(d.clone());
        } else {
            segment.push(d.clone());
        }
    }
    segment.sort_by_cached_key(change_key);
    out.append(&mut segment);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uuids_are_masked_whole_or_embedded() {
        assert_eq!(
            mask_uuids("Duplicate primary key `id`: 92d09258-560c-4432-9b18-8cf934a1b644!"),
            "Duplicate primary key `id`: <uuid>!"
        );
        assert_eq!(
            mask_uuids("92d09258-560c-4432-9b18-8cf934a1b64"),
            "92d09258-560c-4432-9b18-8cf934a1b64"
        );
    }

    #[test]
    fn numbers_compare_by_value_and_booleans_are_not_numbers() {
        assert_eq!(
            first_diff(&json!({"a": [5]}), &json!({"a": [5.0]}), "$"),
            None
        );
        assert!(first_diff(&json!(1), &json!(true), "$").is_some());
        assert_eq!(
            first_diff(&json!({"a": 1}), &json!({"b": 1}), "$").unwrap(),
            "$: missing key 'a' (expected 1)"
        );
    }

    #[test]
    fn changes_to_different_documents_are_ordered_between_states() {
        let docs = [
            json!({"new_val": {"id": "b"}, "old_val": null}),
            json!({"new_val": {"id": "a"}, "old_val": null}),
            json!({"state": "ready"}),
            json!({"new_val": {"id": "b", "v": 2}, "old_val": {"id": "b"}}),
            json!({"new_val": {"id": "a", "v": 1}, "old_val": {"id": "a"}}),
        ];
        let ids: Vec<Value> = canon_window(&docs)
            .iter()
            .map(|d| d.get("new_val").map_or(json!("state"), |v| v["id"].clone()))
            .collect();
        assert_eq!(
            ids,
            [
                json!("a"),
                json!("b"),
                json!("state"),
                json!("a"),
                json!("b")
            ]
        );
    }
}
