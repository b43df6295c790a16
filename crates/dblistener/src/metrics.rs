//! Prometheus metrics and health of the worker, served on `STATUS_PORT`
//! (`GET /metrics`, `GET /healthz`) when it is set.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The worker's metrics. Cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Board changes read from the changefeeds.
    pub changes: IntCounter,
    /// Snapshots published (one per board per publish).
    pub publishes: IntCounter,
    /// Boards whose read or publish failed (they are retried).
    pub publish_failures: IntCounter,
    /// Times the changefeeds were lost and reopened.
    pub reconnects: IntCounter,
    /// 1 while the changefeeds are open and ready.
    pub feed_ready: IntGauge,
    /// Boards waiting to be published.
    pub dirty_boards: IntGauge,
    /// From the first change of a board to the publish that carries it.
    pub lag: Histogram,
    /// Shards whose lease this worker holds.
    pub shards_owned: IntGauge,
    /// The epoch of each lease held, by shard.
    pub lease_epoch: IntGaugeVec,
    /// Leases taken (free or expired).
    pub lease_takes: IntCounter,
    /// Leases taken over from another worker whose lease had expired.
    pub takeovers: IntCounter,
    /// Leases lost: not renewed in time, or taken by another worker.
    pub lease_losses: IntCounter,
    /// Leases handed back (to make room for other workers, or on stop).
    pub lease_releases: IntCounter,
    /// The shards held and their epochs, for `/healthz`.
    pub owned: Arc<Mutex<BTreeMap<u16, u64>>>,
    /// 1 while live workers with another `WORKER_SHARDS` keep this one out.
    pub layout_refused: IntGauge,
    /// Why, for `/healthz`.
    pub layout_conflict: Arc<Mutex<Option<LayoutConflict>>>,
    /// Boards whose rank digest this worker keeps.
    pub rank_boards: IntGauge,
    /// Leaves of those digests.
    pub rank_leaves: IntGauge,
    /// Leaves whose count is in doubt, waiting for a recount.
    pub rank_doubtful_leaves: IntGauge,
    /// Leaves read and cut again.
    pub rank_cuts: IntCounter,
    /// Leaves recounted on the index.
    pub rank_recounts: IntCounter,
    /// Recounts that found a count wrong.
    pub rank_corrections: IntCounter,
    /// Digest writes.
    pub rank_writes: IntCounter,
}

/// Live workers hold a layout of another number of shards than this
/// worker's `WORKER_SHARDS`; it publishes nothing until they are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutConflict {
    /// This worker's `WORKER_SHARDS`.
    pub mine: u16,
    /// The layout's number of shards.
    pub theirs: u16,
    /// The layout's live members.
    pub members: Vec<String>,
}

impl LayoutConflict {
    /// The conflict explained for the log and `/healthz`.
    pub fn message(&self) -> String {
        format!(
            "WORKER_SHARDS is {} here but {} on the running workers ({}); \
             this worker publishes nothing until they all stop or every worker agrees",
            self.mine,
            self.theirs,
            self.members.join(", ")
        )
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `dblistener` prefix.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("dblistener".into()), None).unwrap_or_default();
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let metrics = Self {
            changes: counter(
                "changes_consumed_total",
                "Board changes read from the changefeeds",
            ),
            publishes: counter("publishes_total", "Board snapshots published"),
            publish_failures: counter(
                "publish_failures_total",
                "Board reads or publishes that failed and will be retried",
            ),
            reconnects: counter(
                "feed_reconnects_total",
                "Times the changefeeds were lost and reopened",
            ),
            feed_ready: gauge("feed_ready", "1 while the changefeeds are open and ready"),
            dirty_boards: gauge("dirty_boards", "Boards waiting to be published"),
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "publish_lag_seconds",
                    "From a board's first unpublished change to its publish",
                )
                .buckets(vec![
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 30.0,
                ]),
            )
            .expect("valid metric"),
            shards_owned: gauge("shards_owned", "Shards whose lease this worker holds"),
            lease_epoch: IntGaugeVec::new(
                Opts::new("lease_epoch", "The epoch of each shard lease held"),
                &["shard"],
            )
            .expect("valid metric"),
            lease_takes: counter("lease_takes_total", "Shard leases taken"),
            takeovers: counter(
                "lease_takeovers_total",
                "Shard leases taken over from a worker whose lease had expired",
            ),
            lease_losses: counter(
                "lease_losses_total",
                "Shard leases lost: not renewed in time, or taken by another worker",
            ),
            lease_releases: counter("lease_releases_total", "Shard leases handed back"),
            owned: Arc::new(Mutex::new(BTreeMap::new())),
            layout_refused: gauge(
                "layout_refused",
                "1 while live workers with another WORKER_SHARDS keep this worker out",
            ),
            layout_conflict: Arc::new(Mutex::new(None)),
            rank_boards: gauge("rank_boards", "Boards whose rank digest this worker keeps"),
            rank_leaves: gauge("rank_leaves", "Leaves of the rank digests kept"),
            rank_doubtful_leaves: gauge(
                "rank_doubtful_leaves",
                "Rank digest leaves whose count waits for a recount",
            ),
            rank_cuts: counter("rank_cuts_total", "Rank digest leaves read and cut again"),
            rank_recounts: counter(
                "rank_recounts_total",
                "Rank digest leaves recounted on the index",
            ),
            rank_corrections: counter(
                "rank_corrections_total",
                "Rank digest recounts that found a count wrong",
            ),
            rank_writes: counter("rank_writes_total", "Rank digest writes"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.changes.clone()),
            Box::new(metrics.publishes.clone()),
            Box::new(metrics.publish_failures.clone()),
            Box::new(metrics.reconnects.clone()),
            Box::new(metrics.feed_ready.clone()),
            Box::new(metrics.dirty_boards.clone()),
            Box::new(metrics.lag.clone()),
            Box::new(metrics.shards_owned.clone()),
            Box::new(metrics.lease_epoch.clone()),
            Box::new(metrics.lease_takes.clone()),
            Box::new(metrics.takeovers.clone()),
            Box::new(metrics.lease_losses.clone()),
            Box::new(metrics.lease_releases.clone()),
            Box::new(metrics.layout_refused.clone()),
            Box::new(metrics.rank_boards.clone()),
            Box::new(metrics.rank_leaves.clone()),
            Box::new(metrics.rank_doubtful_leaves.clone()),
            Box::new(metrics.rank_cuts.clone()),
            Box::new(metrics.rank_recounts.clone()),
            Box::new(metrics.rank_corrections.clone()),
            Box::new(metrics.rank_writes.clone()),
        ];
        for c in collectors {
            let _ = metrics.registry.register(c);
        }
        metrics
    }

    /// Records the shards now held, with their epochs.
    pub fn set_owned(&self, owned: BTreeMap<u16, u64>) {
        let mut current = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        for shard in current.keys() {
            if !owned.contains_key(shard) {
                let _ = self.lease_epoch.remove_label_values(&[&shard.to_string()]);
            }
        }
        for (shard, epoch) in &owned {
            self.lease_epoch
                .with_label_values(&[&shard.to_string()])
                .set(*epoch as i64);
        }
        self.shards_owned.set(owned.len() as i64);
        *current = owned;
    }

    /// The shards held and their epochs.
    pub fn owned(&self) -> BTreeMap<u16, u64> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records whether other workers' layout keeps this one out.
    pub fn set_layout_conflict(&self, conflict: Option<LayoutConflict>) {
        self.layout_refused.set(i64::from(conflict.is_some()));
        *self
            .layout_conflict
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = conflict;
    }

    /// What keeps this worker out, if anything.
    pub fn layout_conflict(&self) -> Option<LayoutConflict> {
        self.layout_conflict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records one publish's lag: from the board's first unpublished change
    /// to the publish.
    pub fn observe_lag(&self, lag: Duration) {
        self.lag.observe(lag.as_secs_f64());
    }

    /// Every metric in Prometheus' text format, for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
