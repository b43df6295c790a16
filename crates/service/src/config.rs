//! Settings from the environment.
//!
//! Each binary declares its variables as one struct of typed `Option`
//! fields (`port: Option<u64>`, `grip_url: Option<String>`, ...), which
//! envy fills from the environment ([`from_env`]) or from explicit pairs in
//! tests ([`from_pairs`]). The helpers here then apply defaults and check
//! ranges and values, so that every problem ends as one [`ConfigError`]
//! line naming its variable, e.g.
//! `DB_POOL_SIZE: must be a number from 1 to 1024, got 0`.
//!
//! A variable set to an empty (or blank) value counts as unset, so
//! `STATUS_PORT=` in a `.env` file means "no status port".

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// Where both the origin and the worker find the database unless
/// `DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "rethinkdb://localhost:28015/leaderboard";

/// A configuration problem, phrased as one line that names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The variable at fault, e.g. `PORT`.
    pub variable: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: impl Into<String>, message: impl ToString) -> Self {
        Self {
            variable: variable.into(),
            message: message.to_string(),
        }
    }
}

/// Reads `T` from the process environment. A variable whose value is not
/// UTF-8 is read lossily, so that it fails its own check rather than
/// vanishing.
pub fn from_env<T: DeserializeOwned>() -> Result<T, ConfigError> {
    from_pairs(std::env::vars_os().filter_map(|(name, value)| {
        Some((
            name.into_string().ok()?,
            value.to_string_lossy().into_owned(),
        ))
    }))
}

/// Loads `.env` from the working directory into the environment, if there
/// is one: a missing file is normal (Heroku, Docker), a broken one is an
/// error naming the problem.
pub fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(format!("cannot read .env: {e}")),
    }
}

/// The `NAME=value` pairs of a dotenv file, such as `.env.example`, for
/// [`from_pairs`].
pub fn dotenv_pairs(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    dotenvy::from_path_iter(path)
        .and_then(|pairs| pairs.collect())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads `T` from `(NAME, value)` pairs, as tests do.
pub fn from_pairs<T, K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    K: Into<String>,
    V: Into<String>,
{
    let vars = pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .filter(|(_, v): &(String, String)| !v.trim().is_empty());
    envy::from_iter(vars).map_err(from_envy)
}

/// envy names the variable only in its text ("<why> while parsing value
/// '<value>' provided by <NAME>"), so it is read back from there.
fn from_envy(err: envy::Error) -> ConfigError {
    match err {
        envy::Error::MissingValue(field) => {
            ConfigError::new(field.to_ascii_uppercase(), "must be set")
        }
        envy::Error::Custom(text) => {
            let parsed = text.rsplit_once(" provided by ").and_then(|(head, var)| {
                let (_, value) = head.split_once(" while parsing value ")?;
                let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
                Some(ConfigError::new(
                    var,
                    format!("must be a whole number, got {value:?}"),
                ))
            });
            parsed.unwrap_or_else(|| ConfigError::new("environment", text))
        }
    }
}

/// A number checked against `range`, or `default` when unset. The result
/// may be any integer type that holds the range.
pub fn number<T: TryFrom<u64>>(
    variable: &str,
    value: Option<u64>,
    range: RangeInclusive<u64>,
    default: T,
) -> Result<T, ConfigError> {
    checked(variable, value, &range, "a number")
        .map(|n| n.and_then(|n| T::try_from(n).ok()).unwrap_or(default))
}

/// A number of seconds checked against `range`, or `default` when unset.
pub fn seconds(
    variable: &str,
    value: Option<u64>,
    range: RangeInclusive<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    checked(variable, value, &range, "a number of seconds")
        .map(|n| n.map_or(default, Duration::from_secs))
}

/// A number of milliseconds checked against `range`, or `default` when
/// unset.
pub fn millis(
    variable: &str,
    value: Option<u64>,
    range: RangeInclusive<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    checked(variable, value, &range, "a number of milliseconds")
        .map(|n| n.map_or(default, Duration::from_millis))
}

fn checked(
    variable: &str,
    value: Option<u64>,
    range: &RangeInclusive<u64>,
    what: &str,
) -> Result<Option<u64>, ConfigError> {
    match value {
        Some(n) if !range.contains(&n) => Err(ConfigError::new(
            variable,
            format!(
                "must be {what} from {} to {}, got {n}",
                range.start(),
                range.end()
            ),
        )),
        n => Ok(n),
    }
}

/// An on/off switch: `true`/`false`, `1`/`0`, `on`/`off` or `yes`/`no`,
/// or `default` when unset.
pub fn switch(variable: &str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    let Some(raw) = value else {
        return Ok(default);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(ConfigError::new(
            variable,
            format!("must be true or false (or 1/0, on/off, yes/no), got {raw:?}"),
        )),
    }
}

/// A value read by its own parser (a URL, a key...), or `default` parsed
/// the same way when unset; the parser's error becomes the message.
pub fn parsed<T, E: Display>(
    variable: &str,
    value: Option<&str>,
    default: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ConfigError> {
    parse(value.map_or(default, str::trim)).map_err(|e| ConfigError::new(variable, e))
}

/// `DATABASE_URL`, which the origin and the worker both read: its name and
/// default are here, its syntax is `parse`'s (the store's
/// `DatabaseUrl::parse`).
pub fn database_url<T, E: Display>(
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ConfigError> {
    parsed("DATABASE_URL", value, DEFAULT_DATABASE_URL, parse)
}

/// `TABLE_REPLICAS` and `TABLE_SHARDS`, which both binaries read: the
/// replicas per shard and the shards of each table that schema set-up
/// creates, each from 1 to 64 (RethinkDB's limits), default 1.
pub fn table_layout(replicas: Option<u64>, shards: Option<u64>) -> Result<(u8, u8), ConfigError> {
    Ok((
        number("TABLE_REPLICAS", replicas, 1..=64, 1)?,
        number("TABLE_SHARDS", shards, 1..=64, 1)?,
    ))
}

/// A comma-separated list, without blank items; empty when unset.
pub fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The variables a settings struct `T` reads: its field names in capitals,
/// as envy matches them, taken from the struct's own `Deserialize`
/// implementation (which names its fields to the deserializer), so that the
/// list cannot drift from the struct. For checks such as "every variable is
/// documented".
pub fn variables<T: DeserializeOwned>() -> Vec<String> {
    let mut fields: &'static [&'static str] = &[];
    // The deserializer stops at the struct, having noted its fields.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields.iter().map(|f| f.to_ascii_uppercase()).collect()
}

/// A deserializer that notes the fields a struct asks for, and reads
/// nothing.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

/// [`FieldNames`]'s only answer.
#[derive(Debug)]
struct NoValue;

impl std::fmt::Display for NoValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names only, no values")
    }
}

impl std::error::Error for NoValue {}

impl serde::de::Error for NoValue {
    fn custom<T: Display>(_: T) -> Self {
        NoValue
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = NoValue;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, NoValue> {
        Err(NoValue)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, NoValue> {
        *self.0 = fields;
        Err(NoValue)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Env {
        port: Option<u64>,
        name: Option<String>,
    }

    fn read(pairs: &[(&str, &str)]) -> Result<Env, ConfigError> {
        from_pairs(pairs.iter().copied())
    }

    #[test]
    fn variables_are_the_fields_in_capitals() {
        assert_eq!(variables::<Env>(), vec!["PORT", "NAME"]);
    }

    #[test]
    fn typed_fields_and_blank_values() {
        let env = read(&[("PORT", "8080"), ("NAME", "x"), ("OTHER", "y")]).unwrap();
        assert_eq!((env.port, env.name.as_deref()), (Some(8080), Some("x")));
        let env = read(&[("PORT", " "), ("NAME", "")]).unwrap();
        assert_eq!((env.port, env.name), (None, None));
    }

    #[test]
    fn a_value_that_is_not_a_number_names_its_variable() {
        let err = read(&[("PORT", "http")]).unwrap_err();
        assert_eq!(err.variable, "PORT");
        assert_eq!(
            err.to_string(),
            r#"PORT: must be a whole number, got "http""#
        );
        assert_eq!(read(&[("PORT", "-1")]).unwrap_err().variable, "PORT");
    }

    #[test]
    fn ranges_and_durations() {
        assert_eq!(number::<u16>("PORT", None, 0..=65_535, 5000), Ok(5000));
        assert_eq!(number::<u16>("PORT", Some(80), 0..=65_535, 5000), Ok(80));
        let err = number::<u16>("PORT", Some(70_000), 0..=65_535, 5000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PORT: must be a number from 0 to 65535, got 70000"
        );
        assert_eq!(
            seconds("S", Some(3), 1..=10, Duration::ZERO),
            Ok(Duration::from_secs(3))
        );
        assert_eq!(
            millis("M", None, 0..=10, Duration::from_millis(7)),
            Ok(Duration::from_millis(7))
        );
        let err = millis("M", Some(11), 0..=10, Duration::ZERO).unwrap_err();
        assert_eq!(
            err.message,
            "must be a number of milliseconds from 0 to 10, got 11"
        );
    }

    #[test]
    fn switches_lists_and_parsed_values() {
        assert_eq!(switch("A", None, true), Ok(true));
        assert_eq!(switch("A", Some("Off"), true), Ok(false));
        assert_eq!(
            switch("A", Some("sometimes"), true).unwrap_err().variable,
            "A"
        );
        assert_eq!(list(Some(" a, ,b ")), vec!["a", "b"]);
        assert!(list(None).is_empty());
        let port = parsed("P", None, "12", str::parse::<u16>);
        assert_eq!(port, Ok(12));
        let err = parsed("P", Some("x"), "12", str::parse::<u16>).unwrap_err();
        assert_eq!(err.variable, "P");
    }

    #[test]
    fn table_layout_is_one_to_sixty_four() {
        assert_eq!(table_layout(None, None), Ok((1, 1)));
        assert_eq!(table_layout(Some(3), Some(64)), Ok((3, 64)));
        assert_eq!(
            table_layout(Some(0), None).unwrap_err().to_string(),
            "TABLE_REPLICAS: must be a number from 1 to 64, got 0"
        );
        assert_eq!(
            table_layout(None, Some(65)).unwrap_err().to_string(),
            "TABLE_SHARDS: must be a number from 1 to 64, got 65"
        );
    }
}
