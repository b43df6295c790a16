//! Latency samples and their percentiles.
//!
//! Every sample is kept and sorted once: runs here produce at most a few
//! hundred thousand samples, so exact nearest-rank percentiles cost a few
//! megabytes and no bucketing error, which matters when two close figures are
//! divided into a target ratio.

use std::time::Duration;

use serde::Serialize;

/// Latencies collected during one measurement, in nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// No samples yet, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            nanos: Vec::with_capacity(n),
        }
    }

    /// Adds one latency (saturating at `u64::MAX` nanoseconds).
    pub fn record(&mut self, latency: Duration) {
        self.nanos
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    /// How many samples are held.
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    /// Sorts the samples and computes the summary.
    pub fn summary(mut self) -> Summary {
        self.nanos.sort_unstable();
        let n = self.nanos.len();
        if n == 0 {
            return Summary::default();
        }
        let sum: u128 = self.nanos.iter().map(|&v| u128::from(v)).sum();
        let at = |q: f64| us(self.nanos[rank(n, q)]);
        Summary {
            count: n,
            mean_us: sum as f64 / n as f64 / 1000.0,
            min_us: us(self.nanos[0]),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: us(self.nanos[n - 1]),
        }
    }
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// The nearest-rank index of quantile `q` among `n` sorted samples: the
/// smallest sample with at least `q·n` samples at or below it.
fn rank(n: usize, q: f64) -> usize {
    let r = (q * n as f64).ceil() as usize;
    r.clamp(1, n) - 1
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples summarised.
    pub count: usize,
    /// Mean, in µs.
    pub mean_us: f64,
    /// Fastest sample, in µs.
    pub min_us: f64,
    /// Median (nearest rank), in µs.
    pub p50_us: f64,
    /// 90th percentile, in µs.
    pub p90_us: f64,
    /// 99th percentile, in µs.
    pub p99_us: f64,
    /// 99.9th percentile, in µs.
    pub p999_us: f64,
    /// Slowest sample, in µs.
    pub max_us: f64,
}

/// Microseconds for a table cell: three significant figures are plenty.
pub fn fmt_us(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0} ms", v / 1000.0)
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// A count per second for a table cell.
pub fn fmt_rate(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k/s", v / 1000.0)
    } else {
        format!("{v:.0}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values_us: &[u64]) -> Samples {
        let mut s = Samples::new();
        for &v in values_us {
            s.record(Duration::from_micros(v));
        }
        s
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let s = samples(&(1..=100).rev().collect::<Vec<_>>()).summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p90_us, 90.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(s.p999_us, 100.0);
        assert_eq!(s.max_us, 100.0);
        assert_eq!(s.mean_us, 50.5);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let s = samples(&[7]).summary();
        assert_eq!((s.p50_us, s.p99_us, s.max_us), (7.0, 7.0, 7.0));
    }

    #[test]
    fn no_samples_summarise_to_zero() {
        assert_eq!(Samples::new().summary(), Summary::default());
    }

    #[test]
    fn p99_of_a_tail_sees_the_tail() {
        // 990 fast, 10 slow: p99 is the last fast one, p99.9 a slow one.
        let mut values = vec![10; 990];
        values.extend([1000; 10]);
        let s = samples(&values).summary();
        assert_eq!(s.p99_us, 10.0);
        assert_eq!(s.p999_us, 1000.0);
    }

    #[test]
    fn formats_pick_a_readable_unit() {
        assert_eq!(fmt_us(412.4), "412 µs");
        assert_eq!(fmt_us(1234.0), "1.23 ms");
        assert_eq!(fmt_us(45_600.0), "45.6 ms");
        assert_eq!(fmt_rate(950.2), "950/s");
        assert_eq!(fmt_rate(12_345.0), "12.3k/s");
    }
}
