//! The origin's configuration, read from the environment (and from `.env`
//! when one is present, loaded by `main`).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use service::config;
pub use service::ConfigError;
use store::{DatabaseUrl, SchemaOptions};

/// The variables, typed as envy reads them; [`Settings::from_env`] then
/// applies defaults and checks each one, so that an error names it.
#[derive(Debug, Deserialize)]
struct Env {
    port: Option<u64>,
    host: Option<String>,
    web_concurrency: Option<u64>,
    database_url: Option<String>,
    grip_prefix: Option<String>,
    db_pool_size: Option<u64>,
    rank_reads: Option<u64>,
    rank_read_share: Option<u64>,
    db_timeout_ms: Option<u64>,
    keep_alive_secs: Option<u64>,
    recovery_link_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    grip_url: Option<String>,
    grip_sig_key: Option<String>,
    grip_sig_iss: Option<String>,
    write_api_keys: Option<String>,
    write_jwt_key: Option<String>,
    write_jwt_iss: Option<String>,
    cors_allowed_origins: Option<String>,
    access_log: Option<String>,
    table_replicas: Option<u64>,
    table_shards: Option<u64>,
}

/// The origin's settings, each from the environment variable named on it.
#[derive(Clone)]
pub struct Settings {
    /// `HOST`: the address to bind, default `0.0.0.0` (all interfaces, as a
    /// Heroku dyno needs).
    pub host: String,
    /// `PORT`: default 5000; 0 picks a free port.
    pub port: u16,
    /// `WEB_CONCURRENCY`: how many worker threads serve requests (Heroku
    /// sets it by dyno size); default one per CPU core.
    pub workers: Option<usize>,
    /// `DATABASE_URL`: default `rethinkdb://localhost:28015/leaderboard`.
    pub database_url: DatabaseUrl,
    /// `GRIP_PREFIX`: channel name prefix, default `leaderboard-`.
    pub grip_prefix: String,
    /// `DB_POOL_SIZE`: connections to the database, default 16.
    pub db_pool_size: usize,
    /// `RANK_READS`: rank queries (a player, around-me, a page after the
    /// first, each rank of a friends list) this origin has in flight at the
    /// database, default 1; more wait, up to 2 s, then get 503. Ranks cost
    /// the same at any depth, but a crowd of readers must not starve the
    /// writes.
    pub rank_reads: usize,
    /// `RANK_READ_SHARE`: while rank reads wait for a place, the percent of
    /// the time their places may be busy, default 100 (no rests): below
    /// 100, each place rests after its read until the share is kept (at
    /// most 250 ms). A rank read alone never waits.
    pub rank_read_share: u8,
    /// `DB_TIMEOUT_MS`: time limit of one query, default 10000.
    pub db_timeout: Duration,
    /// `KEEP_ALIVE_SECS`: an idle stream gets an SSE comment this often,
    /// default 20.
    pub keep_alive: Duration,
    /// `RECOVERY_LINK_SECS`: Pushpin also checks a silent stream for missed
    /// publishes this often, default 120.
    pub recovery_timeout: Duration,
    /// `BODY_TIMEOUT_SECS`: a request body must arrive within this, else
    /// 408; default 10.
    pub body_timeout: Duration,
    /// Grip-Sig verification: `GRIP_SIG_KEY` (Pushpin's `sig_key`, may be
    /// `base64:`) with optional `GRIP_SIG_ISS`, or else `GRIP_URL`'s
    /// `verify-key`/`verify-iss`. Off when neither is set.
    pub grip_sig: Option<grip::SigVerifier>,
    /// `WRITE_API_KEYS` (comma-separated, each at least 16 characters) and
    /// `WRITE_JWT_KEY` (HS256 secret, may be `base64:`, at least 16 bytes)
    /// with optional `WRITE_JWT_ISS`. Writes are open when neither is set.
    pub write_auth: crate::auth::WriteAuth,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins allowed to call the
    /// API from a browser page, or `*`. None by default.
    pub cors: Cors,
    /// `ACCESS_LOG`: a log line per request, default `true`. A router in
    /// front that logs requests already (Heroku's does) makes it redundant;
    /// it is about 10% of the origin's instructions per request.
    pub access_log: bool,
    /// `TABLE_REPLICAS` and `TABLE_SHARDS`: the layout of tables that
    /// schema set-up creates, and that `leaderboard-web reconfigure` sets;
    /// default 1 and 1.
    pub table_layout: SchemaOptions,
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers: only same-origin pages may call.
    None,
    /// `*`: any origin.
    Any,
    /// These origins only, each `scheme://host[:port]`.
    Origins(Vec<String>),
}

fn parse_cors(raw: Option<&str>) -> Result<Cors, ConfigError> {
    let bad = |message: String| ConfigError::new("CORS_ALLOWED_ORIGINS", message);
    if raw.map(str::trim) == Some("*") {
        return Ok(Cors::Any);
    }
    let listed = config::list(raw);
    if listed.is_empty() {
        return Ok(Cors::None);
    }
    let mut origins = Vec::new();
    for origin in listed {
        let url = url::Url::parse(&origin)
            .map_err(|e| bad(format!("{origin:?} is not an origin: {e}")))?;
        let clean = url.origin().ascii_serialization();
        if !matches!(url.scheme(), "http" | "https")
            || clean == "null"
            || url.path() != "/"
            || origin.ends_with('/')
        {
            return Err(bad(format!(
                "{origin:?} must be scheme://host[:port] with no path, e.g. https://game.example.com"
            )));
        }
        origins.push(clean);
    }
    Ok(Cors::Origins(origins))
}

/// Grip-Sig verification from `GRIP_SIG_KEY`, or else from `GRIP_URL`.
fn grip_sig(env: &Env) -> Result<Option<grip::SigVerifier>, ConfigError> {
    if let Some(key) = env.grip_sig_key.as_deref() {
        let key = grip::Key::parse(key.trim()).map_err(|e| ConfigError::new("GRIP_SIG_KEY", e))?;
        return Ok(Some(grip::SigVerifier::new(
            &key,
            env.grip_sig_iss.as_deref(),
        )));
    }
    let Some(url) = env.grip_url.as_deref() else {
        return Ok(None);
    };
    let urls = grip::GripUrl::parse_list(url).map_err(|e| ConfigError::new("GRIP_URL", e))?;
    Ok(urls.iter().find_map(grip::SigVerifier::from_grip_url))
}

fn write_auth(env: Env) -> Result<crate::auth::WriteAuth, ConfigError> {
    let api_keys = config::list(env.write_api_keys.as_deref());
    if api_keys.iter().any(|k| k.len() < 16) {
        return Err(ConfigError::new(
            "WRITE_API_KEYS",
            "each key must be at least 16 characters",
        ));
    }
    let jwt_key = match env.write_jwt_key.as_deref() {
        Some(k) => {
            let key =
                grip::Key::parse(k.trim()).map_err(|e| ConfigError::new("WRITE_JWT_KEY", e))?;
            if key.len() < 16 {
                return Err(ConfigError::new(
                    "WRITE_JWT_KEY",
                    "must be at least 16 bytes",
                ));
            }
            Some(key)
        }
        None => None,
    };
    Ok(crate::auth::WriteAuth::new(
        &api_keys,
        jwt_key.as_ref().map(|k| k.expose_bytes()),
        env.write_jwt_iss,
    ))
}

impl Settings {
    /// The environment variables these settings read, by name (`PORT`,
    /// ...), from the struct envy fills, so that a new one cannot be
    /// left out; `docs/configuration.md` documents each.
    pub fn variables() -> Vec<String> {
        config::variables::<Env>()
    }

    /// Settings from the process environment and `.env`, checked.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(config::from_env()?)
    }

    /// Settings from explicit `(NAME, value)` pairs, as tests use.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        Self::from_vars(config::from_pairs(pairs)?)
    }

    fn from_vars(env: Env) -> Result<Self, ConfigError> {
        let (replicas, shards) = config::table_layout(env.table_replicas, env.table_shards)?;
        Ok(Self {
            table_layout: SchemaOptions { replicas, shards },
            host: env.host.clone().unwrap_or_else(|| "0.0.0.0".to_owned()),
            port: config::number("PORT", env.port, 0..=65_535, 5000)?,
            workers: env
                .web_concurrency
                .map(|n| config::number("WEB_CONCURRENCY", Some(n), 1..=1024, 1))
                .transpose()?,
            database_url: config::database_url(env.database_url.as_deref(), DatabaseUrl::parse)?,
            grip_prefix: domain::channel_prefix(env.grip_prefix.as_deref())
                .map_err(|e| ConfigError::new("GRIP_PREFIX", e.message))?,
            db_pool_size: config::number("DB_POOL_SIZE", env.db_pool_size, 1..=1024, 16)?,
            rank_reads: config::number("RANK_READS", env.rank_reads, 1..=1024, 1)?,
            rank_read_share: config::number("RANK_READ_SHARE", env.rank_read_share, 1..=100, 100)?,
            db_timeout: config::millis(
                "DB_TIMEOUT_MS",
                env.db_timeout_ms,
                1..=3_600_000,
                Duration::from_secs(10),
            )?,
            keep_alive: config::seconds(
                "KEEP_ALIVE_SECS",
                env.keep_alive_secs,
                1..=3600,
                Duration::from_secs(20),
            )?,
            recovery_timeout: config::seconds(
                "RECOVERY_LINK_SECS",
                env.recovery_link_secs,
                1..=86_400,
                Duration::from_secs(120),
            )?,
            body_timeout: config::seconds(
                "BODY_TIMEOUT_SECS",
                env.body_timeout_secs,
                1..=300,
                Duration::from_secs(10),
            )?,
            grip_sig: grip_sig(&env)?,
            cors: parse_cors(env.cors_allowed_origins.as_deref())?,
            access_log: config::switch("ACCESS_LOG", env.access_log.as_deref(), true)?,
            write_auth: write_auth(env)?,
        })
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // DatabaseUrl's own Debug hides the password.
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("workers", &self.workers)
            .field("database_url", &self.database_url)
            .field("grip_prefix", &self.grip_prefix)
            .field("db_pool_size", &self.db_pool_size)
            .field("rank_reads", &self.rank_reads)
            .field("rank_read_share", &self.rank_read_share)
            .field("db_timeout", &self.db_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("recovery_timeout", &self.recovery_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("grip_sig", &self.grip_sig)
            .field("write_auth", &self.write_auth)
            .field("cors", &self.cors)
            .field("access_log", &self.access_log)
            .field("table_layout", &self.table_layout)
            .finish()
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// `.env.example` says its values are the defaults: they must be.
    #[test]
    fn the_env_example_holds_the_defaults() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.env.example"));
        let pairs = config::dotenv_pairs(path).unwrap();
        let from_file = Settings::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect(".env.example is a valid configuration");
        let defaults = Settings::from_pairs([]).expect("the defaults are valid");
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn defaults() {
        let s = Settings::from_pairs([]).unwrap();
        assert_eq!(
            (s.port, s.host.as_str(), s.grip_prefix.as_str()),
            (5000, "0.0.0.0", "leaderboard-")
        );
        assert_eq!(s.database_url.db, "leaderboard");
        assert!(s.access_log);
        assert_eq!(s.body_timeout, Duration::from_secs(10));
        assert_eq!(s.workers, None);
        assert_eq!(s.table_layout, SchemaOptions::default());
        let laid_out =
            Settings::from_pairs([("TABLE_REPLICAS", "3"), ("TABLE_SHARDS", "2")]).unwrap();
        assert_eq!(
            laid_out.table_layout,
            SchemaOptions {
                replicas: 3,
                shards: 2
            }
        );
        let quiet = Settings::from_pairs([("ACCESS_LOG", "off")]).unwrap();
        assert!(!quiet.access_log);
    }

    #[test]
    fn errors_name_the_variable() {
        for (pairs, var) in [
            (vec![("PORT", "http")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("DATABASE_URL", "mysql://x/y")], "DATABASE_URL"),
            (vec![("GRIP_PREFIX", "a b")], "GRIP_PREFIX"),
            (vec![("DB_POOL_SIZE", "0")], "DB_POOL_SIZE"),
            (vec![("ACCESS_LOG", "sometimes")], "ACCESS_LOG"),
            (vec![("BODY_TIMEOUT_SECS", "0")], "BODY_TIMEOUT_SECS"),
            (vec![("BODY_TIMEOUT_SECS", "ten")], "BODY_TIMEOUT_SECS"),
            (vec![("WEB_CONCURRENCY", "0")], "WEB_CONCURRENCY"),
            (vec![("KEEP_ALIVE_SECS", "3601")], "KEEP_ALIVE_SECS"),
            (vec![("TABLE_REPLICAS", "0")], "TABLE_REPLICAS"),
            (vec![("TABLE_SHARDS", "65")], "TABLE_SHARDS"),
        ] {
            let err = Settings::from_pairs(pairs).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().starts_with(var));
        }
    }

    #[test]
    fn numbers_and_blank_values() {
        let s = Settings::from_pairs([
            ("BODY_TIMEOUT_SECS", "2"),
            ("WEB_CONCURRENCY", "1"),
            ("PORT", ""),
            ("DB_TIMEOUT_MS", "250"),
        ])
        .unwrap();
        assert_eq!(s.body_timeout, Duration::from_secs(2));
        assert_eq!(s.workers, Some(1));
        assert_eq!(s.port, 5000, "an empty variable counts as unset");
        assert_eq!(s.db_timeout, Duration::from_millis(250));
    }

    #[test]
    fn grip_sig_from_its_own_variable_or_grip_url() {
        assert!(Settings::from_pairs([]).unwrap().grip_sig.is_none());
        let s = Settings::from_pairs([("GRIP_SIG_KEY", "changeme")]).unwrap();
        assert!(s.grip_sig.is_some());
        let s = Settings::from_pairs([(
            "GRIP_URL",
            "http://localhost:5561?verify-key=abc&verify-iss=pushpin",
        )])
        .unwrap();
        assert!(s.grip_sig.is_some());
        let err = Settings::from_pairs([("GRIP_SIG_KEY", "base64:!!!")]).unwrap_err();
        assert_eq!(err.variable, "GRIP_SIG_KEY");
        assert!(!format!("{s:?}").contains("abc"));
    }

    #[test]
    fn write_auth_and_cors() {
        let s = Settings::from_pairs([("WRITE_API_KEYS", "0123456789abcdef, fedcba9876543210")])
            .unwrap();
        assert!(s.write_auth.is_enabled());
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        assert_eq!(
            Settings::from_pairs([("WRITE_API_KEYS", "short")])
                .unwrap_err()
                .variable,
            "WRITE_API_KEYS"
        );
        assert_eq!(
            Settings::from_pairs([("WRITE_JWT_KEY", "short")])
                .unwrap_err()
                .variable,
            "WRITE_JWT_KEY"
        );
        let s = Settings::from_pairs([(
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, http://localhost:3000",
        )])
        .unwrap();
        assert_eq!(
            s.cors,
            Cors::Origins(vec![
                "https://a.example".into(),
                "http://localhost:3000".into()
            ])
        );
        assert_eq!(
            Settings::from_pairs([("CORS_ALLOWED_ORIGINS", "*")])
                .unwrap()
                .cors,
            Cors::Any
        );
        for bad in ["https://a.example/path", "ftp://x", "not a url"] {
            assert_eq!(
                Settings::from_pairs([("CORS_ALLOWED_ORIGINS", bad)])
                    .unwrap_err()
                    .variable,
                "CORS_ALLOWED_ORIGINS"
            );
        }
    }

    #[test]
    fn debug_hides_the_database_password() {
        let s = Settings::from_pairs([("DATABASE_URL", "rethinkdb://admin:s3cret@db/lb")]).unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
