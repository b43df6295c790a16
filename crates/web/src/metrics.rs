//! Prometheus metrics of the origin, served at `GET /metrics`: requests by
//! route, method and status, a latency histogram by route, and database
//! errors by kind.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The origin's metrics. Cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    db_errors: IntCounterVec,
}

impl Metrics {
    /// Every metric at zero, registered under the `leaderboard_web` prefix.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("leaderboard_web".into()), None).unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer, by route pattern",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let db_errors = IntCounterVec::new(
            Opts::new(
                "database_errors_total",
                "Requests that failed on the database, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(db_errors.clone()),
        ] {
            // Registering distinct names in a fresh registry cannot clash.
            let _ = registry.register(collector);
        }
        Self {
            registry,
            requests,
            latency,
            db_errors,
        }
    }

    /// Records one answered request. `route` is the matched pattern (e.g.
    /// `/boards/{board}/`), never the raw path, so ids don't explode the
    /// number of series.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Records a request that failed on the database.
    pub fn database_error(&self, kind: &str) {
        self.db_errors.with_label_values(&[kind]).inc();
    }

    /// The text exposition format.
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

/// Status codes as static labels: no allocation per request.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        408 => "408",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        500 => "500",
        502 => "502",
        503 => "503",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.observe("/boards/{board}/", "GET", 200, Duration::from_millis(3));
        m.observe("/boards/{board}/", "GET", 404, Duration::from_millis(1));
        m.database_error("unavailable");
        let text = m.render();
        assert!(text.contains(r#"leaderboard_web_http_requests_total{method="GET",route="/boards/{board}/",status="200"} 1"#), "{text}");
        assert!(text.contains("leaderboard_web_http_request_duration_seconds_bucket"));
        assert!(text.contains(r#"leaderboard_web_database_errors_total{kind="unavailable"} 1"#));
    }
}
