//! The worker's configuration, from the environment (and `.env`).

use std::fmt;
use std::time::Duration;

use grip::GripUrl;
use serde::Deserialize;
use store::DatabaseUrl;

#[derive(Debug, Deserialize)]
struct RawEnv {
    database_url: Option<String>,
    grip_url: Option<String>,
    grip_prefix: Option<String>,
    publish_interval_ms: Option<String>,
    status_port: Option<String>,
}

pub const DEFAULT_DATABASE_URL: &str = "rethinkdb://localhost:28015/leaderboard";
pub const DEFAULT_GRIP_URL: &str = "http://localhost:5561";

#[derive(Clone)]
pub struct Settings {
    /// `DATABASE_URL`, default `rethinkdb://localhost:28015/leaderboard`.
    pub database_url: DatabaseUrl,
    /// `GRIP_URL`: one or more comma-separated control URLs, default
    /// `http://localhost:5561` (a local Pushpin).
    pub grip_urls: Vec<GripUrl>,
    /// `GRIP_PREFIX`, default `leaderboard-`.
    pub grip_prefix: String,
    /// `PUBLISH_INTERVAL_MS`: at most one publish per board per interval,
    /// default 50.
    pub publish_interval: Duration,
    /// `STATUS_PORT`: serve `/healthz` and `/metrics` on this port (all
    /// interfaces); off when unset.
    pub status_port: Option<u16>,
}

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

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let raw: RawEnv = envy::from_env().map_err(|e| bad("environment", e.to_string()))?;
        Self::from_raw(raw)
    }

    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let vars = pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
        let raw: RawEnv = envy::from_iter(vars).map_err(|e| bad("environment", e.to_string()))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawEnv) -> Result<Self, ConfigError> {
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let database_url = DatabaseUrl::parse(
            non_empty(raw.database_url)
                .as_deref()
                .unwrap_or(DEFAULT_DATABASE_URL),
        )
        .map_err(|e| bad("DATABASE_URL", e.to_string()))?;
        let grip_urls = GripUrl::parse_list(
            non_empty(raw.grip_url)
                .as_deref()
                .unwrap_or(DEFAULT_GRIP_URL),
        )
        .map_err(|e| bad("GRIP_URL", e.to_string()))?;
        let grip_prefix = domain::check_channel_prefix(
            raw.grip_prefix
                .as_deref()
                .unwrap_or(domain::DEFAULT_CHANNEL_PREFIX),
        )
        .map_err(|e| bad("GRIP_PREFIX", e.message))?;
        let publish_interval = match raw.publish_interval_ms.as_deref() {
            None => Duration::from_millis(50),
            Some(n) => n
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= 60_000)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    bad(
                        "PUBLISH_INTERVAL_MS",
                        format!("must be a number of milliseconds from 0 to 60000, got {n:?}"),
                    )
                })?,
        };
        let status_port = match non_empty(raw.status_port) {
            None => None,
            Some(p) => Some(p.trim().parse::<u16>().map_err(|_| {
                bad(
                    "STATUS_PORT",
                    format!("must be a port number (0-65535), got {p:?}"),
                )
            })?),
        };
        Ok(Self {
            status_port,
            database_url,
            grip_urls,
            grip_prefix,
            publish_interval,
        })
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // DatabaseUrl and GripUrl hide their secrets in their own Display.
        let grip: Vec<String> = self.grip_urls.iter().map(ToString::to_string).collect();
        f.debug_struct("Settings")
            .field("database_url", &self.database_url)
            .field("grip_urls", &grip)
            .field("grip_prefix", &self.grip_prefix)
            .field("publish_interval", &self.publish_interval)
            .field("status_port", &self.status_port)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = Settings::from_pairs([]).unwrap();
        assert_eq!(s.grip_urls.len(), 1);
        assert_eq!(s.publish_interval, Duration::from_millis(50));
        assert_eq!(s.grip_prefix, "leaderboard-");
    }

    #[test]
    fn several_grip_urls() {
        let s = Settings::from_pairs([("GRIP_URL", "http://a:5561,http://b:5561")]).unwrap();
        assert_eq!(s.grip_urls.len(), 2);
    }

    #[test]
    fn errors_name_the_variable() {
        for (pairs, var) in [
            (vec![("GRIP_URL", "ftp://x")], "GRIP_URL"),
            (vec![("DATABASE_URL", "x")], "DATABASE_URL"),
            (vec![("PUBLISH_INTERVAL_MS", "-1")], "PUBLISH_INTERVAL_MS"),
            (vec![("GRIP_PREFIX", "a,b")], "GRIP_PREFIX"),
        ] {
            assert_eq!(Settings::from_pairs(pairs).unwrap_err().variable, var);
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let s = Settings::from_pairs([
            (
                "GRIP_URL",
                "https://api.fanout.io/realm/r?iss=r&key=topsecret",
            ),
            ("DATABASE_URL", "rethinkdb://admin:dbsecret@h/x"),
        ])
        .unwrap();
        let text = format!("{s:?}");
        assert!(
            !text.contains("topsecret") && !text.contains("dbsecret"),
            "{text}"
        );
    }
}
