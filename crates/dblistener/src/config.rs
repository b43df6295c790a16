//! The worker's configuration, from the environment (and `.env`).

use std::fmt;
use std::time::Duration;

use domain::Shards;
use grip::GripUrl;
use serde::Deserialize;
use service::config;
pub use service::ConfigError;
use store::{DatabaseUrl, SchemaOptions};

/// The variables, typed as envy reads them.
#[derive(Debug, Deserialize)]
struct Env {
    database_url: Option<String>,
    grip_url: Option<String>,
    grip_prefix: Option<String>,
    publish_interval_ms: Option<u64>,
    status_port: Option<u64>,
    table_replicas: Option<u64>,
    table_shards: Option<u64>,
    worker_shards: Option<u64>,
    lease_ttl_ms: Option<u64>,
    worker_id: Option<String>,
    rank_digests: Option<bool>,
    publish_log: Option<String>,
}

/// Where `GRIP_URL` points when unset: a local Pushpin's control port.
pub const DEFAULT_GRIP_URL: &str = "http://localhost:5561";

/// The worker's settings, each from the environment variable named on it.
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
    /// `TABLE_REPLICAS` and `TABLE_SHARDS`: the layout of tables that
    /// schema set-up creates (if the worker is first to start); default 1
    /// and 1.
    pub table_layout: SchemaOptions,
    /// `WORKER_SHARDS`: how many shards the boards are split into between
    /// workers, 1 to 1024, default 16. Every worker of a deployment must
    /// use the same number.
    pub worker_shards: Shards,
    /// `LEASE_TTL_MS`: how long a shard lease lasts unless renewed, 1,000
    /// to 60,000, default 5,000. A dead worker's shards are taken over
    /// within about this long.
    pub lease_ttl: Duration,
    /// `WORKER_ID`: this worker's name in the leases table; by default the
    /// host name, the process id and a random suffix, unique per process.
    pub worker_id: Option<String>,
    /// `RANK_DIGESTS`: keep the rank digests of the boards of the shards
    /// held, default `true`. Without them, a rank deeper than a few hundred
    /// players is refused with 503; `false` is for measuring what keeping
    /// them costs.
    pub rank_digests: bool,
    /// `PUBLISH_LOG`: a file to append a JSON line to for every item
    /// published (see [`crate::publog`]); off when unset. For audits such
    /// as the fault campaign, not for production.
    pub publish_log: Option<std::path::PathBuf>,
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
            database_url: config::database_url(env.database_url.as_deref(), DatabaseUrl::parse)?,
            grip_urls: config::parsed(
                "GRIP_URL",
                env.grip_url.as_deref(),
                DEFAULT_GRIP_URL,
                GripUrl::parse_list,
            )?,
            grip_prefix: domain::channel_prefix(env.grip_prefix.as_deref())
                .map_err(|e| ConfigError::new("GRIP_PREFIX", e.message))?,
            publish_interval: config::millis(
                "PUBLISH_INTERVAL_MS",
                env.publish_interval_ms,
                0..=60_000,
                Duration::from_millis(50),
            )?,
            worker_shards: {
                let n: u16 = config::number(
                    "WORKER_SHARDS",
                    env.worker_shards,
                    1..=u64::from(domain::shard::SLOTS),
                    domain::shard::DEFAULT_SHARDS,
                )?;
                Shards::new(n).unwrap_or_default()
            },
            lease_ttl: config::millis(
                "LEASE_TTL_MS",
                env.lease_ttl_ms,
                1_000..=60_000,
                Duration::from_millis(5_000),
            )?,
            worker_id: match env.worker_id {
                Some(id)
                    if id.is_empty()
                        || id.len() > 100
                        || !id.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    return Err(ConfigError::new(
                        "WORKER_ID",
                        "must be 1 to 100 visible ASCII characters".to_owned(),
                    ))
                }
                other => other,
            },
            rank_digests: env.rank_digests.unwrap_or(true),
            publish_log: env
                .publish_log
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from),
            status_port: env
                .status_port
                .map(|p| config::number("STATUS_PORT", Some(p), 0..=65_535, 0))
                .transpose()?,
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
            .field("rank_digests", &self.rank_digests)
            .field("publish_log", &self.publish_log)
            .field("table_layout", &self.table_layout)
            .field("worker_shards", &self.worker_shards.count())
            .field("lease_ttl", &self.lease_ttl)
            .field("worker_id", &self.worker_id)
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
        assert_eq!(s.grip_urls.len(), 1);
        assert_eq!(s.publish_interval, Duration::from_millis(50));
        assert_eq!(s.grip_prefix, "leaderboard-");
        assert_eq!(s.table_layout, SchemaOptions::default());
        assert_eq!(s.worker_shards.count(), 16);
        assert_eq!(s.lease_ttl, Duration::from_secs(5));
        assert_eq!(s.worker_id, None);
        let s = Settings::from_pairs([("TABLE_REPLICAS", "3")]).unwrap();
        assert_eq!((s.table_layout.replicas, s.table_layout.shards), (3, 1));
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
            (vec![("STATUS_PORT", "70000")], "STATUS_PORT"),
            (vec![("STATUS_PORT", "x")], "STATUS_PORT"),
            (vec![("TABLE_REPLICAS", "65")], "TABLE_REPLICAS"),
            (vec![("TABLE_SHARDS", "0")], "TABLE_SHARDS"),
            (vec![("WORKER_SHARDS", "0")], "WORKER_SHARDS"),
            (vec![("WORKER_SHARDS", "1025")], "WORKER_SHARDS"),
            (vec![("LEASE_TTL_MS", "999")], "LEASE_TTL_MS"),
            (vec![("WORKER_ID", "a b")], "WORKER_ID"),
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
