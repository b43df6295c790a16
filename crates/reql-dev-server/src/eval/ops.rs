//! Operations on plain values: arithmetic, comparison, type checks and coercion,
//! and the pseudotypes (times, binaries) the transcripts use.

use std::cmp::Ordering;

use crate::datum::{Datum, Obj, REQL_TYPE};
use crate::error::{ReqlError, Result};

pub fn expected(ty: &str, found: &Datum) -> ReqlError {
    ReqlError::logic(format!(
        "Expected type {ty} but found {}.",
        found.type_name()
    ))
}

pub fn num(d: &Datum) -> Result<f64> {
    d.as_num().ok_or_else(|| expected("NUMBER", d))
}

pub fn string(d: &Datum) -> Result<&str> {
    d.as_str().ok_or_else(|| expected("STRING", d))
}

pub fn int(d: &Datum) -> Result<i64> {
    let n = num(d)?;
    d.as_int().ok_or_else(|| {
        ReqlError::logic(format!(
            "Number not an integer: {}",
            d.to_json().unwrap_or_else(|_| n.to_string())
        ))
    })
}

pub fn boolean(d: &Datum) -> Result<bool> {
    match d {
        Datum::Bool(b) => Ok(*b),
        other => Err(expected("BOOL", other)),
    }
}

pub fn object(d: &Datum) -> Result<&Obj> {
    match d {
        Datum::Object(o) => Ok(o),
        other => Err(expected("OBJECT", other)),
    }
}

pub fn array(d: &Datum) -> Result<&Vec<Datum>> {
    match d {
        Datum::Array(a) => Ok(a),
        other => Err(expected("ARRAY", other)),
    }
}

fn finite(n: f64) -> Result<Datum> {
    if n.is_finite() {
        Ok(Datum::Num(n))
    } else {
        Err(ReqlError::logic(format!("Non-finite number: {n}")))
    }
}

fn time_value(d: &Datum) -> Option<f64> {
    if d.ptype() == Some("TIME") {
        d.get("epoch_time").and_then(Datum::as_num)
    } else {
        None
    }
}

pub fn make_time(epoch: f64, tz: &str) -> Datum {
    let mut o = Obj::new();
    o.insert(REQL_TYPE.into(), Datum::from("TIME"));
    o.insert("epoch_time".into(), Datum::Num(epoch));
    o.insert("timezone".into(), Datum::from(tz));
    Datum::object(o)
}

fn with_time(d: &Datum, epoch: f64) -> Datum {
    let tz = d
        .get("timezone")
        .and_then(Datum::as_str)
        .unwrap_or("+00:00");
    make_time(epoch, tz)
}

pub fn add(a: &Datum, b: &Datum) -> Result<Datum> {
    if let Some(t) = time_value(a) {
        return Ok(with_time(a, t + num(b)?));
    }
    match a {
        Datum::Num(x) => finite(x + num(b)?),
        Datum::Str(x) => {
            let y = string(b)?;
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(Datum::from(s))
        }
        Datum::Array(x) => {
            let y = array(b)?;
            let mut v = (**x).clone();
            v.extend(y.iter().cloned());
            Ok(Datum::array(v))
        }
        other => Err(expected("NUMBER", other)),
    }
}

pub fn sub(a: &Datum, b: &Datum) -> Result<Datum> {
    if let Some(t) = time_value(a) {
        if let Some(u) = time_value(b) {
            return finite(t - u);
        }
        return Ok(with_time(a, t - num(b)?));
    }
    finite(num(a)? - num(b)?)
}

pub fn mul(a: &Datum, b: &Datum) -> Result<Datum> {
    match (a, b) {
        (Datum::Array(x), Datum::Num(_)) | (Datum::Num(_), Datum::Array(x)) => {
            let n = if let Datum::Num(_) = a {
                int(a)?
            } else {
                int(b)?
            };
            let total = (x.len() as u128) * (n.max(0) as u128);
            if total > crate::eval::DEFAULT_ARRAY_LIMIT as u128 {
                return Err(crate::eval::seq::array_limit_error(
                    crate::eval::DEFAULT_ARRAY_LIMIT,
                ));
            }
            let mut v = Vec::new();
            for _ in 0..n.max(0) {
                v.extend(x.iter().cloned());
            }
            Ok(Datum::array(v))
        }
        _ => finite(num(a)? * num(b)?),
    }
}

pub fn div(a: &Datum, b: &Datum) -> Result<Datum> {
    let (x, y) = (num(a)?, num(b)?);
    if y == 0.0 {
        return Err(ReqlError::logic("Cannot divide by zero."));
    }
    finite(x / y)
}

pub fn modulo(a: &Datum, b: &Datum) -> Result<Datum> {
    let (x, y) = (int(a)?, int(b)?);
    if y == 0 {
        return Err(ReqlError::logic("Cannot take a number modulo 0."));
    }
    Ok(Datum::Num((x.wrapping_rem(y)) as f64))
}

pub fn compare(ty: u32, a: &Datum, b: &Datum) -> bool {
    use crate::term::tt;
    let o = a.cmp(b);
    match ty {
        tt::EQ => o == Ordering::Equal,
        tt::NE => o != Ordering::Equal,
        tt::LT => o == Ordering::Less,
        tt::LE => o != Ordering::Greater,
        tt::GT => o == Ordering::Greater,
        _ => o != Ordering::Less,
    }
}

pub fn coerce(d: &Datum, to: &str) -> Result<Datum> {
    let target = to.to_ascii_uppercase();
    let from = d.type_name();
    if from == target {
        return Ok(d.clone());
    }
    let fail = || ReqlError::logic(format!("Cannot coerce {from} to {target}."));
    match (d, target.as_str()) {
        (Datum::Object(o), "ARRAY") if d.ptype().is_none() => Ok(Datum::array(
            o.iter()
                .map(|(k, v)| Datum::array(vec![Datum::from(k.as_str()), v.clone()]))
                .collect(),
        )),
        (Datum::Array(a), "OBJECT") => {
            let mut o = Obj::new();
            for pair in a.iter() {
                match pair.as_array().map(|p| p.as_slice()) {
                    Some([Datum::Str(k), v]) => {
                        o.insert(k.to_string(), v.clone());
                    }
                    _ => {
                        return Err(ReqlError::logic(format!(
                            "Expected array of size 2, but got size {}.",
                            pair.as_array().map(Vec::len).unwrap_or(0)
                        )))
                    }
                }
            }
            Ok(Datum::object(o))
        }
        (Datum::Str(s), "NUMBER") => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Datum::Num)
            .ok_or_else(|| ReqlError::logic(format!("Could not coerce `{s}` to NUMBER."))),
        (_, "STRING") => match d {
            Datum::Str(_) => Ok(d.clone()),
            _ => Ok(Datum::from(d.to_json()?)),
        },
        (Datum::Str(s), "BINARY") => {
            use base64::Engine as _;
            let mut o = Obj::new();
            o.insert(REQL_TYPE.into(), Datum::from("BINARY"));
            o.insert(
                "data".into(),
                Datum::from(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())),
            );
            Ok(Datum::object(o))
        }
        (_, "BOOL") => Ok(Datum::Bool(d.truthy())),
        _ => Err(fail()),
    }
}

/// ASCII-only case mapping, as RethinkDB does it.
pub fn upcase(s: &str) -> String {
    s.chars().map(|c| c.to_ascii_uppercase()).collect()
}

pub fn downcase(s: &str) -> String {
    s.chars().map(|c| c.to_ascii_lowercase()).collect()
}

pub fn keys(d: &Datum) -> Result<Datum> {
    let o = object(d)?;
    Ok(Datum::array(
        o.keys().map(|k| Datum::from(k.as_str())).collect(),
    ))
}

pub fn values(d: &Datum) -> Result<Datum> {
    let o = object(d)?;
    Ok(Datum::array(o.values().cloned().collect()))
}

/// Resolves a possibly negative index into `len` elements.
pub fn index_into(i: i64, len: usize) -> Option<usize> {
    let idx = if i < 0 { len as i64 + i } else { i };
    if idx >= 0 && (idx as usize) < len {
        Some(idx as usize)
    } else {
        None
    }
}

pub fn out_of_bounds(i: i64) -> ReqlError {
    ReqlError::missing(format!("Index out of bounds: {i}"))
}

pub fn split(s: &str, sep: Option<&str>, max: Option<i64>) -> Datum {
    let max = max.filter(|m| *m >= 0).map(|m| m as usize);
    let parts: Vec<Datum> = match sep {
        None => {
            let words = s.split_whitespace();
            match max {
                Some(m) => {
                    let mut out: Vec<String> = Vec::new();
                    let mut rest = s.trim_start();
                    while out.len() < m {
                        match rest.find(char::is_whitespace) {
                            Some(p) => {
                                out.push(rest[..p].to_string());
                                rest = rest[p..].trim_start();
                                if rest.is_empty() {
                                    break;
                                }
                            }
                            None => break,
                        }
                    }
                    if !rest.is_empty() {
                        out.push(rest.to_string());
                    }
                    out.into_iter().map(Datum::from).collect()
                }
                None => words.map(Datum::from).collect(),
            }
        }
        Some("") => s.chars().map(|c| Datum::from(c.to_string())).collect(),
        Some(sep) => match max {
            Some(m) => s.splitn(m + 1, sep).map(Datum::from).collect(),
            None => s.split(sep).map(Datum::from).collect(),
        },
    };
    Datum::array(parts)
}
