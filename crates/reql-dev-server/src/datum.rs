//! ReQL values: the datum type, RethinkDB's total order over it, JSON in and out
//! (with integral numbers written without a fractional part), the tab-indented
//! pretty print used inside error messages, and the primary-key encoding that
//! decides which of the eight hash shards a document lives in.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::error::{ReqlError, Result};

pub type Obj = BTreeMap<String, Datum>;

/// A ReQL value. Composite values are reference counted so that documents can be
/// handed out of a table and kept in streams without deep copies.
#[derive(Debug, Clone)]
pub enum Datum {
    MinVal,
    Null,
    Bool(bool),
    Num(f64),
    Str(Arc<str>),
    Array(Arc<Vec<Datum>>),
    Object(Arc<Obj>),
    MaxVal,
}

pub const REQL_TYPE: &str = "$reql_type$";

/// Doubles are exact integers up to 2^53; beyond that RethinkDB prints exponent form.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

impl Datum {
    pub fn array(v: Vec<Datum>) -> Datum {
        Datum::Array(Arc::new(v))
    }
    pub fn object(o: Obj) -> Datum {
        Datum::Object(Arc::new(o))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// ReQL truthiness: everything except `false` and `null`.
    pub fn truthy(&self) -> bool {
        !matches!(self, Datum::Null | Datum::Bool(false))
    }

    pub fn as_obj(&self) -> Option<&Obj> {
        match self {
            Datum::Object(o) => Some(o),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&Vec<Datum>> {
        match self {
            Datum::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Datum::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_num(&self) -> Option<f64> {
        match self {
            Datum::Num(n) => Some(*n),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Datum> {
        self.as_obj().and_then(|o| o.get(key))
    }

    /// The `$reql_type$` of a pseudotype object, if this is one.
    pub fn ptype(&self) -> Option<&str> {
        match self {
            Datum::Object(o) => o.get(REQL_TYPE).and_then(|t| t.as_str()),
            _ => None,
        }
    }

    /// The type name RethinkDB uses in messages and `typeOf`.
    pub fn type_name(&self) -> String {
        match self {
            Datum::MinVal => "MINVAL".into(),
            Datum::MaxVal => "MAXVAL".into(),
            Datum::Null => "NULL".into(),
            Datum::Bool(_) => "BOOL".into(),
            Datum::Num(_) => "NUMBER".into(),
            Datum::Str(_) => "STRING".into(),
            Datum::Array(_) => "ARRAY".into(),
            Datum::Object(_) => match self.ptype() {
                Some(t) => format!("PTYPE<{t}>"),
                None => "OBJECT".into(),
            },
        }
    }

    /// A number that is an exact integer, for arguments such as limits and indexes.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Datum::Num(n) if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT => Some(*n as i64),
            _ => None,
        }
    }

    fn sort_rank(&self) -> u8 {
        match self {
            Datum::MinVal => 0,
            Datum::Array(_) => 1,
            Datum::Bool(_) => 2,
            Datum::Null => 3,
            Datum::Num(_) => 4,
            Datum::Object(_) => {
                if self.ptype().is_some() {
                    6
                } else {
                    5
                }
            }
            Datum::Str(_) => 7,
            Datum::MaxVal => 8,
        }
    }

    /// Whether arrays and objects nest more than `limit` levels deep.
    pub fn deeper_than(&self, limit: usize) -> bool {
        match self {
            Datum::Array(a) => limit == 0 || a.iter().any(|x| x.deeper_than(limit - 1)),
            Datum::Object(o) => limit == 0 || o.values().any(|x| x.deeper_than(limit - 1)),
            _ => false,
        }
    }

    /// Whether the value holds `r.minval`/`r.maxval` anywhere, which cannot be stored
    /// or sent to a client.
    pub fn has_extrema(&self) -> bool {
        match self {
            Datum::MinVal | Datum::MaxVal => true,
            Datum::Array(a) => a.iter().any(Datum::has_extrema),
            Datum::Object(o) => o.values().any(Datum::has_extrema),
            _ => false,
        }
    }
}

impl From<bool> for Datum {
    fn from(b: bool) -> Self {
        Datum::Bool(b)
    }
}
impl From<f64> for Datum {
    fn from(n: f64) -> Self {
        Datum::Num(n)
    }
}
impl From<i64> for Datum {
    fn from(n: i64) -> Self {
        Datum::Num(n as f64)
    }
}
impl From<usize> for Datum {
    fn from(n: usize) -> Self {
        Datum::Num(n as f64)
    }
}
impl From<&str> for Datum {
    fn from(s: &str) -> Self {
        Datum::Str(s.into())
    }
}
impl From<String> for Datum {
    fn from(s: String) -> Self {
        Datum::Str(s.into())
    }
}

// ------------------------------------------------------------------ ordering

fn cmp_num(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or_else(|| a.total_cmp(&b))
}

fn cmp_ptype(a: &Obj, b: &Obj, ta: &str, tb: &str) -> Ordering {
    match ta.cmp(tb) {
        Ordering::Equal => {}
        o => return o,
    }
    match ta {
        "TIME" => {
            let ea = a.get("epoch_time").and_then(Datum::as_num).unwrap_or(0.0);
            let eb = b.get("epoch_time").and_then(Datum::as_num).unwrap_or(0.0);
            cmp_num(ea, eb)
        }
        "BINARY" => {
            let da = a.get("data").and_then(Datum::as_str).map(decode_base64);
            let db = b.get("data").and_then(Datum::as_str).map(decode_base64);
            da.cmp(&db)
        }
        _ => cmp_obj(a, b),
    }
}

fn cmp_obj(a: &Obj, b: &Obj) -> Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
        match ka.cmp(kb) {
            Ordering::Equal => {}
            o => return o,
        }
        match va.cmp(vb) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

pub fn decode_base64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .unwrap_or_default()
}

impl Ord for Datum {
    fn cmp(&self, other: &Self) -> Ordering {
        // The common same-type cases first: index keys are mostly strings,
        // numbers and arrays of them.
        match (self, other) {
            (Datum::Str(a), Datum::Str(b)) => return a.as_bytes().cmp(b.as_bytes()),
            (Datum::Num(a), Datum::Num(b)) => return cmp_num(*a, *b),
            (Datum::Array(a), Datum::Array(b)) => {
                if Arc::ptr_eq(a, b) {
                    return Ordering::Equal;
                }
                for (x, y) in a.iter().zip(b.iter()) {
                    match x.cmp(y) {
                        Ordering::Equal => {}
                        o => return o,
                    }
                }
                return a.len().cmp(&b.len());
            }
            (Datum::Bool(a), Datum::Bool(b)) => return a.cmp(b),
            _ => {}
        }
        let (ra, rb) = (self.sort_rank(), other.sort_rank());
        if ra != rb {
            return ra.cmp(&rb);
        }
        match (self, other) {
            (Datum::Object(a), Datum::Object(b)) => {
                if Arc::ptr_eq(a, b) {
                    return Ordering::Equal;
                }
                match (self.ptype(), other.ptype()) {
                    (Some(ta), Some(tb)) => cmp_ptype(a, b, ta, tb),
                    _ => cmp_obj(a, b),
                }
            }
            _ => Ordering::Equal,
        }
    }
}

impl PartialOrd for Datum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Datum {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Datum {}

// ------------------------------------------------------------------ JSON in

impl Datum {
    pub fn from_json(v: &serde_json::Value) -> Datum {
        match v {
            serde_json::Value::Null => Datum::Null,
            serde_json::Value::Bool(b) => Datum::Bool(*b),
            serde_json::Value::Number(n) => Datum::Num(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Datum::Str(s.as_str().into()),
            serde_json::Value::Array(a) => Datum::array(a.iter().map(Datum::from_json).collect()),
            serde_json::Value::Object(o) => Datum::object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Datum::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn parse_json(text: &str) -> std::result::Result<Datum, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        Ok(Datum::from_json(&v))
    }
}

/// Reads JSON straight into a datum, without an intermediate tree; used when a
/// data directory is loaded.
impl<'de> serde::Deserialize<'de> for Datum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Datum, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Datum;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> std::result::Result<Datum, E> {
                Ok(Datum::Null)
            }
            fn visit_none<E>(self) -> std::result::Result<Datum, E> {
                Ok(Datum::Null)
            }
            fn visit_bool<E>(self, b: bool) -> std::result::Result<Datum, E> {
                Ok(Datum::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> std::result::Result<Datum, E> {
                Ok(Datum::Num(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> std::result::Result<Datum, E> {
                Ok(Datum::Num(n as f64))
            }
            fn visit_f64<E>(self, n: f64) -> std::result::Result<Datum, E> {
                Ok(Datum::Num(n))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Datum, E> {
                Ok(Datum::Str(s.into()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Datum, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Datum::array(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Datum, A::Error> {
                let mut o = Obj::new();
                while let Some((k, v)) = a.next_entry::<String, Datum>()? {
                    o.insert(k, v);
                }
                Ok(Datum::object(o))
            }
        }
        d.deserialize_any(V)
    }
}

// ------------------------------------------------------------------ JSON out

pub fn write_number(n: f64, out: &mut String) {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT {
        // -0.0 comes out as 0 too, which integer decoders accept.
        let _ = write!(out, "{}", n as i64);
    } else if let Some(num) = serde_json::Number::from_f64(n) {
        let _ = write!(out, "{num}");
    } else {
        out.push_str("null");
    }
}

pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        let esc: Option<&str> = match ch {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", ch as u32);
            }
        }
        start = i + ch.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn extrema_error(d: &Datum) -> ReqlError {
    let which = if matches!(d, Datum::MinVal) {
        "r.minval"
    } else {
        "r.maxval"
    };
    ReqlError::logic(format!("Cannot convert `{which}` to JSON."))
}

impl Datum {
    /// Compact JSON, as sent to clients and written to the log.
    pub fn write_json(&self, out: &mut String) -> Result<()> {
        match self {
            Datum::MinVal | Datum::MaxVal => return Err(extrema_error(self)),
            Datum::Null => out.push_str("null"),
            Datum::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Datum::Num(n) => write_number(*n, out),
            Datum::Str(s) => write_json_string(s, out),
            Datum::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.write_json(out)?;
                }
                out.push(']');
            }
            Datum::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(k, out);
                    out.push(':');
                    v.write_json(out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> Result<String> {
        let mut s = String::new();
        self.write_json(&mut s)?;
        Ok(s)
    }

    /// The pretty print RethinkDB puts into error messages: tab indentation and a
    /// tab after each key's colon.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(0, &mut out);
        out
    }

    fn write_pretty(&self, depth: usize, out: &mut String) {
        let indent = |out: &mut String, n: usize| {
            for _ in 0..n {
                out.push('\t');
            }
        };
        match self {
            Datum::MinVal => out.push_str("r.minval"),
            Datum::MaxVal => out.push_str("r.maxval"),
            Datum::Array(a) if !a.is_empty() => {
                out.push_str("[\n");
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    indent(out, depth + 1);
                    x.write_pretty(depth + 1, out);
                }
                out.push('\n');
                indent(out, depth);
                out.push(']');
            }
            Datum::Object(o) if !o.is_empty() => {
                out.push_str("{\n");
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    indent(out, depth + 1);
                    write_json_string(k, out);
                    out.push_str(":\t");
                    v.write_pretty(depth + 1, out);
                }
                out.push('\n');
                indent(out, depth);
                out.push('}');
            }
            Datum::Array(_) => out.push_str("[]"),
            Datum::Object(_) => out.push_str("{}"),
            other => {
                // Scalars print as in compact JSON.
                let _ = other.write_json(out);
            }
        }
    }
}

// ------------------------------------------------------------------ keys and shards

/// Longest primary key RethinkDB accepts, in bytes of its printed form.
pub const MAX_PRIMARY_KEY_LEN: usize = 127;
const MAX_KEY_SIZE: usize = 250;

/// C's `%.20g`, which RethinkDB appends to the encoded form of a number key.
fn format_g20(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let sci = format!("{:.19e}", x);
    let (mant, exp) = match sci.split_once('e') {
        Some(p) => p,
        None => return sci,
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..20).contains(&exp) {
        let mant = trim_fraction(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (19 - exp).max(0) as usize;
        trim_fraction(&format!("{:.*}", decimals, x)).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn encode_key_part(d: &Datum, out: &mut Vec<u8>) -> Result<()> {
    match d {
        Datum::Num(n) => {
            let v = if *n == 0.0 { 0.0 } else { *n };
            let mut u = v.to_bits();
            if u & (1 << 63) != 0 {
                u = !u;
            } else {
                u ^= 1 << 63;
            }
            out.push(b'N');
            out.extend_from_slice(format!("{u:016x}").as_bytes());
            out.push(b'#');
            out.extend_from_slice(format_g20(v).as_bytes());
        }
        Datum::Str(s) => {
            out.push(b'S');
            out.extend_from_slice(s.as_bytes());
        }
        Datum::Bool(b) => {
            out.extend_from_slice(if *b { b"Bt" } else { b"Bf" });
        }
        Datum::Array(a) => {
            out.push(b'A');
            for x in a.iter() {
                encode_key_part(x, out)?;
                out.push(0);
            }
        }
        Datum::Object(_) if d.ptype().is_some() => {
            out.push(b'P');
            out.extend_from_slice(d.to_json()?.as_bytes());
        }
        Datum::MinVal => out.push(b'A' - 1),
        Datum::MaxVal => out.push(b'Z' + 1),
        Datum::Null | Datum::Object(_) => {
            return Err(ReqlError::logic(format!(
                "Primary keys must be either a number, string, bool, pseudotype or array (got type {}):\n{}",
                d.type_name(),
                d.pretty()
            )))
        }
    }
    Ok(())
}

/// Checks a primary key value and returns RethinkDB's byte encoding of it.
pub fn primary_key_bytes(d: &Datum) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if d.has_extrema() {
        return Err(extrema_error(d));
    }
    encode_key_part(d, &mut out)?;
    if out.len() > MAX_KEY_SIZE.min(MAX_PRIMARY_KEY_LEN + 1) {
        return Err(ReqlError::logic(format!(
            "Primary key too long (max {MAX_PRIMARY_KEY_LEN} characters): {}",
            d.to_json().unwrap_or_default()
        )));
    }
    Ok(out)
}

/// Number of hash shards every table is split into, as in RethinkDB.
pub const SHARDS: usize = 8;

/// Which hash shard a primary key belongs to. RethinkDB spreads a table over eight
/// shards by a hash of the encoded key; a table scan visits them in turn, which is
/// the order clients see for unordered reads.
pub fn shard_of(key_bytes: &[u8]) -> usize {
    let mut h: u64 = 0x47a5_9e38_1fb2_dc06;
    for &ch in key_bytes {
        let d = (((ch as u64).wrapping_mul(0x8020_0802) & 0x08_8442_2110)
            .wrapping_mul(0x01_0101_0101))
            << 23;
        h = h.wrapping_add(d);
        h = h ^ (h >> 11) ^ (h << 21);
    }
    let h = h & 0x7fff_ffff_ffff_ffff;
    let width = (1u64 << 63) / SHARDS as u64;
    ((h / width) as usize).min(SHARDS - 1)
}

/// Whether a value may be a secondary index key (RethinkDB skips documents whose
/// index function gives null, an object, or an error).
pub fn valid_index_key(d: &Datum) -> bool {
    match d {
        Datum::Null | Datum::MinVal | Datum::MaxVal => false,
        Datum::Object(_) => d.ptype().is_some(),
        Datum::Array(a) => a.iter().all(valid_index_key),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Datum {
        Datum::parse_json(s).unwrap()
    }

    #[test]
    fn integral_numbers_have_no_fraction() {
        assert_eq!(j("5.0").to_json().unwrap(), "5");
        assert_eq!(j("-3").to_json().unwrap(), "-3");
        assert_eq!(
            j("0.30000000000000004").to_json().unwrap(),
            "0.30000000000000004"
        );
        assert_eq!(j("3.5").to_json().unwrap(), "3.5");
        assert_eq!(Datum::Num(1.0 / 3.0 * 3.0).to_json().unwrap(), "1");
    }

    #[test]
    fn ordering_follows_type_names() {
        let mut v = [
            j("\"a\""),
            j("{}"),
            j("1"),
            j("null"),
            j("true"),
            j("[1]"),
            Datum::MaxVal,
            Datum::MinVal,
        ];
        v.sort();
        let names: Vec<String> = v.iter().map(Datum::type_name).collect();
        assert_eq!(
            names,
            ["MINVAL", "ARRAY", "BOOL", "NULL", "NUMBER", "OBJECT", "STRING", "MAXVAL"]
        );
        assert!(j("[\"a\", 5]") < j("[\"a\", 10]"));
        assert!(j("[\"a\", 10]") < Datum::array(vec!["a".into(), Datum::MaxVal]));
    }

    #[test]
    fn pretty_print_matches_rethinkdb() {
        let d = j(r#"{"board":"beta","id":"p01","score":37,"tags":["t1","all"],"s":{"d":3}}"#);
        assert_eq!(
            d.pretty(),
            "{\n\t\"board\":\t\"beta\",\n\t\"id\":\t\"p01\",\n\t\"s\":\t{\n\t\t\"d\":\t3\n\t},\n\t\"score\":\t37,\n\t\"tags\":\t[\n\t\t\"t1\",\n\t\t\"all\"\n\t]\n}"
        );
    }

    #[test]
    fn shards_match_recorded_scan_order() {
        // Recorded unordered scan of ids p00..p11 started with p07, the only key of
        // shard 0, and p00, p08 and p11 shared shard 1.
        let s = |k: &str| shard_of(&primary_key_bytes(&Datum::from(k)).unwrap());
        assert_eq!(s("p07"), 0);
        assert_eq!(s("p00"), 1);
        assert_eq!(s("p08"), 1);
        assert_eq!(s("p11"), 1);
        assert_eq!(s("p03"), 7);
        let n = |k: i64| shard_of(&primary_key_bytes(&Datum::from(k)).unwrap());
        assert_eq!(n(20), 0);
        assert_eq!(n(4), 1);
    }

    #[test]
    fn g20_format() {
        assert_eq!(format_g20(20.0), "20");
        assert_eq!(format_g20(1.5), "1.5");
        assert_eq!(format_g20(0.1), "0.10000000000000000555");
        assert_eq!(format_g20(1e25), "1.0000000000000000906e+25");
    }
}
