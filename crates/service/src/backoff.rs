//! Exponential back-off with jitter.

use std::time::Duration;

use rand::Rng;

/// Delays between attempts to reach something that went away: each ceiling
/// doubles from `first` up to `max`, and each delay is a random point in the
/// upper half of its ceiling ("equal jitter").
///
/// The jitter matters when a database restarts: every origin and worker
/// lost it at the same moment, and without it they would all come back at
/// the same moments too, in waves. The lower bound keeps a real pause
/// between attempts.
///
/// ```
/// use std::time::Duration;
/// let mut backoff = service::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
/// backoff.reset(); // after a success
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// Back-off whose first delay is at most `first` and no delay more than
    /// `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Self {
            first,
            max,
            ceiling: first,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::thread_rng())
    }

    /// [`Backoff::next_delay`] with the given source of randomness (tests
    /// use a seeded one).
    pub fn next_delay_with(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(self.max);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(rng.gen::<f64>())
    }

    /// Starts again from the first delay, after a success.
    pub fn reset(&mut self) {
        self.ceiling = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_up_to_the_cap_and_each_delay_is_in_the_upper_half() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(100 * MS, 350 * MS);
        for ceiling in [100, 200, 350, 350, 350] {
            let d = b.next_delay_with(&mut rng);
            assert!(
                d >= ceiling * MS / 2 && d <= ceiling * MS,
                "{d:?} for a ceiling of {ceiling} ms"
            );
        }
    }

    #[test]
    fn reset_starts_again_from_the_first_delay() {
        let mut b = Backoff::new(100 * MS, 10_000 * MS);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= 100 * MS);
    }

    #[test]
    fn clients_that_start_together_spread_out() {
        // A thousand clients lose the database at the same moment: their
        // third attempts (ceiling 800 ms) must not land together.
        let mut rng = StdRng::seed_from_u64(42);
        let thirds: Vec<Duration> = (0..1000)
            .map(|_| {
                let mut b = Backoff::new(200 * MS, 10_000 * MS);
                b.next_delay_with(&mut rng);
                b.next_delay_with(&mut rng);
                b.next_delay_with(&mut rng)
            })
            .collect();
        // In 40 ms buckets over [400, 800] ms, no bucket holds more than
        // twice its fair share (1000 / 10 = 100).
        let mut buckets = [0usize; 11];
        for d in &thirds {
            assert!(*d >= 400 * MS && *d <= 800 * MS, "{d:?}");
            buckets[((d.as_millis() - 400) / 40) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n <= 200), "{buckets:?}");
        assert!(buckets[..10].iter().all(|&n| n >= 50), "{buckets:?}");
    }

    #[test]
    fn a_first_delay_above_the_cap_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(1));
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
