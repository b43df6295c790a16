//! JSON as the transcripts' own checker reads and writes it: object keys in
//! their recorded order, numbers written as Python writes them, strings
//! escaped as Python's `json` module escapes them.
//!
//! The frames the replay sends are built from this form, so a server sees
//! each query byte for byte as the reference checker sends it (keys in the
//! recorded order, compact separators). `serde_json`'s map sorts its keys,
//! which a server could tell apart. The same writer gives the canonical text
//! by which unordered results are sorted, so both checkers sort alike.

use std::fmt::Write as _;

use serde_json::Value;

/// A JSON value that keeps the order of its object keys.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// An integer, as its decimal text.
    Int(String),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The value under `key`, for an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The same value with `old` replaced by `new` in every string (keys
    /// are left alone).
    pub fn replace_in_strings(&self, old: &str, new: &str) -> Json {
        match self {
            Json::String(s) => Json::String(s.replace(old, new)),
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|x| x.replace_in_strings(old, new))
                    .collect(),
            ),
            Json::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.replace_in_strings(old, new)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// How a value is written: the options of Python's `json.dumps` in use.
#[derive(Clone, Copy)]
pub struct Style {
    /// `separators=(',', ':')` instead of `(', ', ': ')`.
    pub compact: bool,
    /// Non-ASCII characters as `\uXXXX`.
    pub ensure_ascii: bool,
    /// Object keys in sorted order.
    pub sort_keys: bool,
}

/// `json.dumps(v)`: spaced separators, ASCII only, keys as given.
pub const PYTHON_DEFAULT: Style = Style {
    compact: false,
    ensure_ascii: true,
    sort_keys: false,
};

/// How the checker writes a query frame.
pub const FRAME: Style = Style {
    compact: true,
    ensure_ascii: false,
    sort_keys: false,
};

/// How the checker writes a value to compare or sort it.
pub const CANONICAL: Style = Style {
    compact: false,
    ensure_ascii: false,
    sort_keys: true,
};

/// Parses one JSON text.
pub fn parse(text: &str) -> Result<Json, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", b as char, self.i))
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("unexpected token at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields: Vec<(String, Json)> = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value()?;
                    // As in Python, a repeated key keeps its first place and
                    // its last value.
                    match fields.iter_mut().find(|(x, _)| *x == k) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((k, v)),
                    }
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(fields));
                        }
                        _ => return Err(format!("expected ',' or '}}' at {}", self.i)),
                    }
                }
            }
            Some(_) => self.number(),
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        let mut float = false;
        while let Some(&b) = self.s.get(self.i) {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
        if text.is_empty() {
            return Err(format!("unexpected character at {start}"));
        }
        if float {
            text.parse::<f64>()
                .map(Json::Float)
                .map_err(|e| format!("{text}: {e}"))
        } else {
            // Python reads any integer; keep its digits.
            text.parse::<i128>()
                .map(|n| Json::Int(n.to_string()))
                .map_err(|e| format!("{text}: {e}"))
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(digits).map_err(|e| e.to_string())?, 16)
            .map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                } else {
                                    self.i = save;
                                    hi
                                }
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        other => return Err(format!("bad escape \\{}", other as char)),
                    };
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

/// Python's `repr` of a float, which is how `json.dumps` writes one:
/// the shortest digits that read back the same, in positional notation
/// from 1e-4 up to 1e16 and in scientific notation (`1e+16`, `1.5e-05`)
/// outside it.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` writes the shortest round-trip digits: `-1.5e-5`, `0e0`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let body = if !(-4..16).contains(&exp) {
        let m = if digits.len() == 1 {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        format!(
            "{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        )
    } else if exp >= 0 {
        let whole = exp as usize + 1;
        if digits.len() <= whole {
            format!("{digits}{}.0", "0".repeat(whole - digits.len()))
        } else {
            format!("{}.{}", &digits[..whole], &digits[whole..])
        }
    } else {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    };
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `v` as Python's `json.dumps` does with the options of `style`.
pub fn dumps(v: &Json, style: Style) -> String {
    let mut out = String::new();
    write_json(&mut out, v, style);
    out
}

fn write_json(out: &mut String, v: &Json, style: Style) {
    let (item_sep, key_sep) = if style.compact {
        (",", ":")
    } else {
        (", ", ": ")
    };
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(n) => out.push_str(n),
        Json::Float(f) => out.push_str(&python_float(*f)),
        Json::String(s) => write_str(out, s, style.ensure_ascii),
        Json::Array(items) => {
            out.push('[');
            for (n, x) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(item_sep);
                }
                write_json(out, x, style);
            }
            out.push(']');
        }
        Json::Object(fields) => {
            let mut fields: Vec<&(String, Json)> = fields.iter().collect();
            if style.sort_keys {
                fields.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (n, (k, x)) in fields.into_iter().enumerate() {
                if n > 0 {
                    out.push_str(item_sep);
                }
                write_str(out, k, style.ensure_ascii);
                out.push_str(key_sep);
                write_json(out, x, style);
            }
            out.push('}');
        }
    }
}

/// A `serde_json` value in this form (its keys come sorted).
pub fn from_value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => {
            if n.is_f64() {
                Json::Float(n.as_f64().unwrap_or(f64::NAN))
            } else {
                Json::Int(n.to_string())
            }
        }
        Value::String(s) => Json::String(s.clone()),
        Value::Array(items) => Json::Array(items.iter().map(from_value).collect()),
        Value::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_python_writes_them() {
        for (f, text) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (5.0, "5.0"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(python_float(f), text, "{f}");
        }
    }

    #[test]
    fn keys_keep_their_order_and_strings_their_escapes() {
        let text = r#"{"b": [1, 2.5, "x\u00e9\n"], "a": {"$hex": "00"}, "b": true}"#;
        let v = parse(text).unwrap();
        assert_eq!(dumps(&v, FRAME), "{\"b\":true,\"a\":{\"$hex\":\"00\"}}");
        let v = parse(r#"["é\u007f", 1e+16, -3]"#).unwrap();
        assert_eq!(dumps(&v, PYTHON_DEFAULT), r#"["\u00e9\u007f", 1e+16, -3]"#);
        assert_eq!(dumps(&v, CANONICAL), "[\"é\u{7f}\", 1e+16, -3]");
    }
}
