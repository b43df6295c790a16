//! The origin's configuration, read from the environment (and from `.env`
//! when one is present, loaded by `main`).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use store::DatabaseUrl;

/// The variables as strings; each is then checked by [`Settings::from_env`]
/// so that an error names the variable and says what it should be.
#[derive(Debug, Deserialize)]
struct RawEnv {
    port: Option<String>,
    host: Option<String>,
    database_url: Option<String>,
    grip_prefix: Option<String>,
    db_pool_size: Option<String>,
    db_timeout_ms: Option<String>,
    keep_alive_secs: Option<String>,
    recovery_link_secs: Option<String>,
    grip_url: Option<String>,
    grip_sig_key: Option<String>,
    grip_sig_iss: Option<String>,
    write_api_keys: Option<String>,
    write_jwt_key: Option<String>,
    write_jwt_iss: Option<String>,
    cors_allowed_origins: Option<String>,
    access_log: Option<String>,
}

#[derive(Clone)]
pub struct Settings {
    /// `HOST`: the address to bind, default `0.0.0.0` (all interfaces, as a
    /// Heroku dyno needs).
    pub host: String,
    /// `PORT`: default 5000; 0 picks a free port.
    pub port: u16,
    /// `DATABASE_URL`: default `rethinkdb://localhost:28015/leaderboard`.
    pub database_url: DatabaseUrl,
    /// `GRIP_PREFIX`: channel name prefix, default `leaderboard-`.
    pub grip_prefix: String,
    /// `DB_POOL_SIZE`: connections to the database, default 16.
    pub db_pool_size: usize,
    /// `DB_TIMEOUT_MS`: time limit of one query, default 10000.
    pub db_timeout: Duration,
    /// `KEEP_ALIVE_SECS`: an idle stream gets an SSE comment this often,
    /// default 20.
    pub keep_alive: Duration,
    /// `RECOVERY_LINK_SECS`: Pushpin also checks a silent stream for missed
    /// publishes this often, default 120.
    pub recovery_timeout: Duration,
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
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    None,
    Any,
    Origins(Vec<String>),
}

fn parse_cors(raw: Option<&str>) -> Result<Cors, ConfigError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(Cors::None);
    };
    if raw == "*" {
        return Ok(Cors::Any);
    }
    let mut origins = Vec::new();
    for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let url = url::Url::parse(origin).map_err(|e| {
            bad(
                "CORS_ALLOWED_ORIGINS",
                format!("{origin:?} is not an origin: {e}"),
            )
        })?;
        let clean = url.origin().ascii_serialization();
        if !matches!(url.scheme(), "http" | "https")
            || clean == "null"
            || url.path() != "/"
            || origin.ends_with('/')
        {
            return Err(bad(
                "CORS_ALLOWED_ORIGINS",
                format!("{origin:?} must be scheme://host[:port] with no path, e.g. https://game.example.com"),
            ));
        }
        origins.push(clean);
    }
    Ok(Cors::Origins(origins))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// A configuration problem, phrased as one line that names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

pub const DEFAULT_DATABASE_URL: &str = "rethinkdb://localhost:28015/leaderboard";
impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let raw: RawEnv = envy::from_env().map_err(|e| bad("environment", e.to_string()))?;
        Self::from_raw(raw)
    }

    /// Settings from explicit `(NAME, value)` pairs, as tests use.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let vars = pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
        let raw: RawEnv = envy::from_iter(vars).map_err(|e| bad("environment", e.to_string()))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawEnv) -> Result<Self, ConfigError> {
        let port = match raw.port.as_deref().map(str::trim) {
            None | Some("") => 5000,
            Some(p) => p.parse().map_err(|_| {
                bad(
                    "PORT",
                    format!("must be a port number (0-65535), got {p:?}"),
                )
            })?,
        };
        let host = raw
            .host
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let database_url = DatabaseUrl::parse(
            raw.database_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or(DEFAULT_DATABASE_URL),
        )
        .map_err(|e| bad("DATABASE_URL", e.to_string()))?;
        let grip_prefix = domain::check_channel_prefix(
            raw.grip_prefix
                .as_deref()
                .unwrap_or(domain::DEFAULT_CHANNEL_PREFIX),
        )
        .map_err(|e| bad("GRIP_PREFIX", e.message))?;
        let db_pool_size = match raw.db_pool_size.as_deref() {
            None => 16,
            Some(n) => n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| {
                    bad(
                        "DB_POOL_SIZE",
                        format!("must be a number from 1 to 1024, got {n:?}"),
                    )
                })?,
        };
        let db_timeout = match raw.db_timeout_ms.as_deref() {
            None => Duration::from_secs(10),
            Some(n) => n
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    bad(
                        "DB_TIMEOUT_MS",
                        format!("must be a positive number of milliseconds, got {n:?}"),
                    )
                })?,
        };
        let keep_alive = match raw.keep_alive_secs.as_deref() {
            None => Duration::from_secs(20),
            Some(n) => n
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=3600).contains(n))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    bad(
                        "KEEP_ALIVE_SECS",
                        format!("must be a number of seconds from 1 to 3600, got {n:?}"),
                    )
                })?,
        };
        let recovery_timeout = match raw.recovery_link_secs.as_deref() {
            None => Duration::from_secs(120),
            Some(n) => n
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=86_400).contains(n))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    bad(
                        "RECOVERY_LINK_SECS",
                        format!("must be a number of seconds from 1 to 86400, got {n:?}"),
                    )
                })?,
        };
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let grip_sig = match (non_empty(raw.grip_sig_key), non_empty(raw.grip_url)) {
            (Some(key), _) => {
                let key =
                    grip::Key::parse(key.trim()).map_err(|e| bad("GRIP_SIG_KEY", e.to_string()))?;
                let iss = non_empty(raw.grip_sig_iss);
                Some(grip::SigVerifier::new(&key, iss.as_deref()))
            }
            (None, Some(url)) => {
                let urls =
                    grip::GripUrl::parse_list(&url).map_err(|e| bad("GRIP_URL", e.to_string()))?;
                urls.iter().find_map(grip::SigVerifier::from_grip_url)
            }
            (None, None) => None,
        };
        let api_keys: Vec<String> = non_empty(raw.write_api_keys)
            .map(|k| {
                k.split(',')
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if api_keys.iter().any(|k| k.len() < 16) {
            return Err(bad(
                "WRITE_API_KEYS",
                "each key must be at least 16 characters",
            ));
        }
        let jwt_key = match non_empty(raw.write_jwt_key) {
            Some(k) => {
                let key =
                    grip::Key::parse(k.trim()).map_err(|e| bad("WRITE_JWT_KEY", e.to_string()))?;
                if key.len() < 16 {
                    return Err(bad("WRITE_JWT_KEY", "must be at least 16 bytes"));
                }
                Some(key)
            }
            None => None,
        };
        let write_auth = crate::auth::WriteAuth::new(
            &api_keys,
            jwt_key.as_ref().map(|k| k.expose_bytes()),
            non_empty(raw.write_jwt_iss),
        );
        let cors = parse_cors(raw.cors_allowed_origins.as_deref())?;
        let access_log = match raw.access_log.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(v) => parse_bool(v).ok_or_else(|| {
                bad(
                    "ACCESS_LOG",
                    format!("must be true or false (or 1/0, on/off, yes/no), got {v:?}"),
                )
            })?,
        };
        Ok(Self {
            access_log,
            write_auth,
            cors,
            recovery_timeout,
            grip_sig,
            keep_alive,
            host,
            port,
            database_url,
            grip_prefix,
            db_pool_size,
            db_timeout,
        })
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // DatabaseUrl's own Debug hides the password.
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database_url", &self.database_url)
            .field("grip_prefix", &self.grip_prefix)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_timeout", &self.db_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("recovery_timeout", &self.recovery_timeout)
            .field("grip_sig", &self.grip_sig)
            .field("write_auth", &self.write_auth)
            .field("cors", &self.cors)
            .field("access_log", &self.access_log)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = Settings::from_pairs([]).unwrap();
        assert_eq!(
            (s.port, s.host.as_str(), s.grip_prefix.as_str()),
            (5000, "0.0.0.0", "leaderboard-")
        );
        assert_eq!(s.database_url.db, "leaderboard");
        assert!(s.access_log);
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
        ] {
            let err = Settings::from_pairs(pairs).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().starts_with(var));
        }
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
