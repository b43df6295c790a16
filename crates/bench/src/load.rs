//! Closed-loop load: N clients, each sending its next operation when the
//! previous one has answered, as concurrency N. Throughput and latency come
//! from the same run.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::stats::{Samples, Summary};

/// One client of a load run. Each client owns its connection, so no two
/// operations share one.
pub trait Client: Send + 'static {
    /// Waits until the next operation is due, and answers when it was due:
    /// a client that keeps a schedule measures each operation from its slot,
    /// so one delayed behind a slow answer counts the delay too. A
    /// closed-loop client is always due now.
    fn due(&mut self) -> impl Future<Output = Instant> + Send + '_ {
        std::future::ready(Instant::now())
    }

    /// Performs operation number `seq` (unique across the run's clients).
    fn call(&mut self, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send + '_;
}

/// A client that starts its operations at a steady rate, whatever the
/// answers take (open loop): each operation waits for its slot, `period`
/// after the previous one's, and one that fell behind goes at once until it
/// has caught up. So its throughput is the offered rate for as long as the
/// server keeps up, and each latency is measured from the operation's slot:
/// the time a late answer made the next one wait counts against the server.
pub struct Paced<C> {
    inner: C,
    period: Duration,
    /// From the first call to the first slot.
    phase: Duration,
    next: Option<Instant>,
}

impl<C> Paced<C> {
    /// `inner` paced to `per_second` operations a second.
    pub fn new(inner: C, per_second: f64) -> Self {
        Self {
            inner,
            period: Duration::from_secs_f64(1.0 / per_second.max(1e-3)),
            phase: Duration::ZERO,
            next: None,
        }
    }

    /// `clients` sharing `per_second` operations a second evenly, their
    /// slots spread over the period rather than all at once: n clients at
    /// r/n a second offer a steady r a second, not a burst of n every n/r
    /// seconds, whose queue would count in every latency.
    pub fn staggered(clients: Vec<C>, per_second: f64) -> Vec<Self> {
        let n = clients.len().max(1);
        clients
            .into_iter()
            .enumerate()
            .map(|(k, inner)| {
                let mut paced = Self::new(inner, per_second / n as f64);
                paced.phase = paced.period * k as u32 / n as u32;
                paced
            })
            .collect()
    }
}

impl<C: Client> Client for Paced<C> {
    async fn due(&mut self) -> Instant {
        let now = Instant::now();
        let slot = self.next.unwrap_or(now + self.phase);
        self.next = Some(slot + self.period);
        tokio::time::sleep_until(slot).await;
        slot
    }

    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        self.inner.call(seq).await
    }
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Operations started during `warmup` are not measured; measurement
    /// stops taking new operations after `measure`.
    Time {
        /// Unmeasured time at the start.
        warmup: Duration,
        /// Measured time after the warm-up.
        measure: Duration,
    },
    /// Exactly this many operations, all measured, as fast as they go.
    Count(u64),
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Clients running at once.
    pub concurrency: usize,
    /// Measured operations that succeeded.
    pub ops: usize,
    /// Measured operations that failed.
    pub errors: u64,
    /// The first error seen, to say what went wrong.
    pub first_error: Option<String>,
    /// The measured window, to the last completion, in seconds.
    pub seconds: f64,
    /// Successful operations per second over the window.
    pub throughput: f64,
    /// Latencies of the successful measured operations.
    pub latency: Summary,
}

struct Outcome {
    samples: Samples,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

/// Runs `clients` (one task each) under `limit`.
pub async fn run<C: Client>(clients: Vec<C>, limit: Limit) -> LoadResult {
    run_sampled(clients, limit).await.0
}

/// [`run`], also giving back the latency samples, so that several runs'
/// percentiles can be taken over all their samples at once.
pub async fn run_sampled<C: Client>(clients: Vec<C>, limit: Limit) -> (LoadResult, Samples) {
    let concurrency = clients.len();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (measure_from, stop_at, count) = match limit {
        Limit::Time { warmup, measure } => {
            (start + warmup, Some(start + warmup + measure), u64::MAX)
        }
        Limit::Count(n) => (start, None, n),
    };
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut out = Outcome {
                    samples: Samples::with_capacity(4096),
                    errors: 0,
                    first_error: None,
                    last_done: None,
                };
                loop {
                    let began = client.due().await;
                    if stop_at.is_some_and(|t| began >= t) {
                        break;
                    }
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= count {
                        break;
                    }
                    let result = client.call(seq).await;
                    let done = Instant::now();
                    if began < measure_from {
                        continue;
                    }
                    match result {
                        Ok(()) => out.samples.record(done - began),
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                    out.last_done = Some(done);
                }
                out
            })
        })
        .collect();

    let mut samples = Samples::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut last_done = measure_from;
    for task in tasks {
        match task.await {
            Ok(out) => {
                samples.extend(out.samples);
                errors += out.errors;
                if first_error.is_none() {
                    first_error = out.first_error;
                }
                if let Some(t) = out.last_done {
                    last_done = last_done.max(t);
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("client task failed: {e}"));
            }
        }
    }
    // Operations still running at the deadline finish and count, so the
    // window ends at the last completion rather than at the deadline.
    let seconds = last_done
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let ops = samples.len();
    let result = LoadResult {
        concurrency,
        ops,
        errors,
        first_error,
        seconds,
        throughput: if seconds > 0.0 {
            ops as f64 / seconds
        } else {
            0.0
        },
        latency: samples.clone().summary(),
    };
    (result, samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy(Duration);

    impl Client for Sleepy {
        async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
            tokio::time::sleep(self.0).await;
            anyhow::ensure!(seq % 10 != 9, "every tenth fails");
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_count_limit_runs_exactly_that_many() {
        let clients = (0..4).map(|_| Sleepy(Duration::from_millis(1))).collect();
        let r = run(clients, Limit::Count(100)).await;
        assert_eq!(r.ops + r.errors as usize, 100);
        assert_eq!(r.errors, 10);
        assert!(r.first_error.unwrap().contains("every tenth"));
        assert!(r.latency.p50_us >= 1000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_client_keeps_its_rate() {
        let clients = vec![Paced::new(Sleepy(Duration::ZERO), 200.0)];
        let r = run(
            clients,
            Limit::Time {
                warmup: Duration::ZERO,
                measure: Duration::from_millis(250),
            },
        )
        .await;
        // 50 slots in 250 ms (0, 5, ..., 245 ms), a tenth failing by design.
        assert_eq!((r.ops, r.errors), (45, 5), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn staggered_clients_spread_their_slots_over_the_period() {
        let mut clients = Paced::staggered((0..4).map(|_| Sleepy(Duration::ZERO)).collect(), 40.0);
        // Four clients at 10/s each: the first slots 0, 25, 50 and 75 ms
        // after the first call, the second ones 100 ms after those.
        let start = Instant::now();
        let firsts: Vec<u128> = futures::future::join_all(clients.iter_mut().map(|c| c.due()))
            .await
            .into_iter()
            .map(|due| due.duration_since(start).as_millis())
            .collect();
        assert_eq!(firsts, [0, 25, 50, 75]);
        let second = clients[1].due().await.duration_since(start).as_millis();
        assert_eq!(second, 125);
    }

    #[tokio::test]
    async fn a_paced_client_that_falls_behind_counts_the_wait() {
        // Slots every 10 ms, answers in 25: each operation starts later
        // than its slot by more than the last, and its latency says so.
        let clients = vec![Paced::new(Sleepy(Duration::from_millis(25)), 100.0)];
        let r = run(clients, Limit::Count(8)).await;
        assert!(r.latency.max_us >= 25_000.0 + 6.0 * 15_000.0, "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_limit_skips_the_warm_up() {
        let clients = (0..2).map(|_| Sleepy(Duration::from_millis(5))).collect();
        let r = run(
            clients,
            Limit::Time {
                warmup: Duration::from_millis(50),
                measure: Duration::from_millis(100),
            },
        )
        .await;
        // The warm-up's 2 × 10 operations take seq 0-19 and are not counted;
        // the next 2 × 20 are, four of them failing (seq 29, 39, 49, 59).
        assert_eq!((r.ops, r.errors), (36, 4), "{r:?}");
        // From the warm-up's end to the last answer: 145 ms + 5 ms - 50 ms.
        assert!((r.seconds - 0.100).abs() < 1e-9, "{r:?}");
    }
}
