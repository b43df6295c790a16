//! The command line: `bench <scenario> [--flag value]...`.
//!
//! Hand-rolled because it is a dozen flags of three kinds (number, list,
//! path); every flag has a default sized so that `all` takes a few minutes
//! on two cores, and `smoke` replaces them with tiny ones.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    ScoreAdd,
    Read,
    E2e,
    Top5,
    Burst,
    Memory,
    DevServer,
    All,
    Smoke,
}

impl Scenario {
    pub const SINGLE: [Scenario; 7] = [
        Scenario::DevServer,
        Scenario::ScoreAdd,
        Scenario::Read,
        Scenario::E2e,
        Scenario::Burst,
        Scenario::Memory,
        Scenario::Top5,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ScoreAdd => "score-add",
            Scenario::Read => "read",
            Scenario::E2e => "e2e",
            Scenario::Top5 => "top5",
            Scenario::Burst => "burst",
            Scenario::Memory => "memory",
            Scenario::DevServer => "devserver",
            Scenario::All => "all",
            Scenario::Smoke => "smoke",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Scenario::All, Scenario::Smoke]
            .into_iter()
            .chain(Self::SINGLE)
            .find(|sc| sc.name() == s)
    }
}

/// Sizes and options of a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: Scenario,
    pub json: PathBuf,
    /// Measured time of each throughput point.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    pub concurrency: Vec<usize>,
    /// Players on the score-add board; operations cycle through them.
    pub players: usize,
    pub subscribers: Vec<usize>,
    /// Fewest arrivals to collect per subscriber count (rounds ×
    /// subscribers).
    pub e2e_samples: usize,
    /// Fewest rounds per subscriber count.
    pub e2e_min_rounds: usize,
    /// Also measure fan-out with Pushpin's default `message_rate`.
    pub compare_pushpin_defaults: bool,
    pub top5_sizes: Vec<usize>,
    /// Reads per top-5 size.
    pub top5_reads: usize,
    /// Documents per bulk insert.
    pub batch: usize,
    pub burst_adds: u64,
    pub burst_concurrency: usize,
    /// The worker's PUBLISH_INTERVAL_MS.
    pub publish_interval_ms: u64,
    /// Changefeed deliveries timed by the devserver scenario.
    pub feed_rounds: usize,
}

impl Config {
    fn defaults(scenario: Scenario) -> Self {
        let mut config = Self {
            scenario,
            json: PathBuf::from(format!("target/bench/{}.json", scenario.name())),
            duration: Duration::from_secs(3),
            warmup: Duration::from_millis(500),
            concurrency: vec![1, 16, 64],
            players: 100,
            subscribers: vec![1, 100, 1000],
            e2e_samples: 200,
            e2e_min_rounds: 20,
            compare_pushpin_defaults: true,
            top5_sizes: vec![1_000, 100_000, 1_000_000],
            top5_reads: 2000,
            batch: 2000,
            burst_adds: 10_000,
            burst_concurrency: 64,
            publish_interval_ms: 50,
            feed_rounds: 500,
        };
        if scenario == Scenario::Smoke {
            config.duration = Duration::from_millis(300);
            config.warmup = Duration::from_millis(100);
            config.concurrency = vec![1, 4];
            config.players = 10;
            config.subscribers = vec![1, 5];
            config.e2e_samples = 10;
            config.e2e_min_rounds = 3;
            config.compare_pushpin_defaults = false;
            config.top5_sizes = vec![100, 1000];
            config.top5_reads = 50;
            config.batch = 500;
            config.burst_adds = 300;
            config.burst_concurrency = 8;
            config.feed_rounds = 20;
        }
        config
    }

    /// Parses `args` (without the program name).
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let Some(first) = args.first() else {
            bail!("no scenario given\n\n{}", usage());
        };
        if first == "-h" || first == "--help" || first == "help" {
            bail!("{}", usage());
        }
        let scenario = Scenario::parse(first)
            .with_context(|| format!("unknown scenario {first:?}\n\n{}", usage()))?;
        let mut config = Self::defaults(scenario);
        let mut rest = args[1..].iter();
        while let Some(flag) = rest.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag.as_str(), None),
            };
            let value = match inline {
                Some(v) => v,
                None if name == "--no-pushpin-defaults" => String::new(),
                None => rest
                    .next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))?,
            };
            let v = value.as_str();
            match name {
                "--json" => config.json = PathBuf::from(v),
                "--duration" => config.duration = seconds(name, v)?,
                "--warmup" => config.warmup = seconds(name, v)?,
                "--concurrency" => config.concurrency = list(name, v)?,
                "--players" => config.players = number(name, v)?,
                "--subscribers" => config.subscribers = list(name, v)?,
                "--e2e-samples" => config.e2e_samples = number(name, v)?,
                "--e2e-min-rounds" => config.e2e_min_rounds = number(name, v)?,
                "--no-pushpin-defaults" => config.compare_pushpin_defaults = false,
                "--top5-sizes" => config.top5_sizes = list(name, v)?,
                "--top5-reads" => config.top5_reads = number(name, v)?,
                "--batch" => config.batch = number(name, v)?,
                "--burst" => config.burst_adds = number(name, v)?,
                "--burst-concurrency" => config.burst_concurrency = number(name, v)?,
                "--publish-interval-ms" => config.publish_interval_ms = number(name, v)?,
                "--feed-rounds" => config.feed_rounds = number(name, v)?,
                _ => bail!("unknown option {name}\n\n{}", usage()),
            }
        }
        Ok(config)
    }
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> anyhow::Result<T> {
    let n = v
        .replace('_', "")
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}: not a number: {v:?}"))?;
    Ok(n)
}

fn list(name: &str, v: &str) -> anyhow::Result<Vec<usize>> {
    let items = v
        .split(',')
        .map(|s| number::<usize>(name, s.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !items.is_empty() && items.iter().all(|&n| n > 0),
        "{name}: give positive numbers separated by commas"
    );
    Ok(items)
}

fn seconds(name: &str, v: &str) -> anyhow::Result<Duration> {
    let s: f64 = v
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}: not a number of seconds: {v:?}"))?;
    anyhow::ensure!(s.is_finite() && s >= 0.0, "{name}: must be ≥ 0");
    Ok(Duration::from_secs_f64(s))
}

pub fn usage() -> String {
    "Usage: bench <scenario> [options]

Scenarios:
  score-add   score-add throughput and latency, origin and through Pushpin,
              against the database's own update through the driver
  read        board JSON reads, origin and through Pushpin
  e2e         score-add response to arrival at 1/100/1000 subscribers,
              against Pushpin's own fan-out of a raw publish
  top5        top-5 read latency on boards of 1k, 100k and 1M players
  burst       10,000 score-adds on one board: publishes and the last event
  memory      RSS of the origin and the worker, idle and under load
  devserver   the database alone: inserts, updates, top-5 reads, changefeed
  all         every scenario above
  smoke       every scenario with tiny sizes, for CI (no targets enforced)

Options (defaults in brackets):
  --json PATH                 results [target/bench/<scenario>.json]
  --duration SECS             measured time per point [3]
  --warmup SECS               unmeasured time before it [0.5]
  --concurrency LIST          [1,16,64]
  --players N                 players on the score-add board [100]
  --subscribers LIST          [1,100,1000]
  --e2e-samples N             arrivals per subscriber count, at least [200]
  --e2e-min-rounds N          [20]
  --no-pushpin-defaults       skip the message_rate=2500 comparison
  --top5-sizes LIST           [1000,100000,1000000]
  --top5-reads N              reads per size [2000]
  --batch N                   documents per bulk insert [2000]
  --burst N                   score-adds in the burst [10000]
  --burst-concurrency N       [64]
  --publish-interval-ms N     the worker's PUBLISH_INTERVAL_MS [50]
  --feed-rounds N             changefeed deliveries timed [500]

RETHINKDB_URL=rethinkdb://host:28015 runs against a real RethinkDB."
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn defaults_follow_the_scenario() {
        let c = Config::parse(&args("e2e")).unwrap();
        assert_eq!(c.scenario, Scenario::E2e);
        assert_eq!(c.json, PathBuf::from("target/bench/e2e.json"));
        assert_eq!(c.subscribers, vec![1, 100, 1000]);
        let s = Config::parse(&args("smoke")).unwrap();
        assert!(s.duration < Duration::from_secs(1));
        assert!(s.top5_sizes.iter().all(|&n| n <= 1000));
    }

    #[test]
    fn flags_take_values_inline_or_after() {
        let c = Config::parse(&args(
            "score-add --concurrency 2,8 --duration=0.25 --json /tmp/x.json --burst 1_000 --no-pushpin-defaults",
        ))
        .unwrap();
        assert_eq!(c.concurrency, vec![2, 8]);
        assert_eq!(c.duration, Duration::from_millis(250));
        assert_eq!(c.json, PathBuf::from("/tmp/x.json"));
        assert_eq!(c.burst_adds, 1000);
        assert!(!c.compare_pushpin_defaults);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s| Config::parse(&args(s)).unwrap_err().to_string();
        assert!(err("nope").contains("unknown scenario"));
        assert!(err("read --bogus 1").contains("unknown option --bogus"));
        assert!(err("read --concurrency 0").contains("positive"));
        assert!(err("read --duration").contains("needs a value"));
        assert!(err("").contains("no scenario"));
    }
}
