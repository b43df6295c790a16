//! The command line: `bench <scenario> [OPTIONS]`, parsed by clap.
//!
//! Every option has a default sized so that `all` (and `scale`) takes a few
//! minutes on two cores; `smoke` replaces them with tiny ones. So options are kept as
//! "given or not" here and resolved against the scenario's defaults in
//! [`Config::from_cli`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Benchmarks the leaderboard's real stack on loopback: Pushpin, the
/// database, the origin and the worker.
///
/// Each scenario prints tables and writes every figure to JSON. Targets are
/// reported, never enforced: the exit status says only whether every
/// scenario ran and produced numbers.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    arg_required_else_help = true,
    subcommand_value_name = "SCENARIO",
    subcommand_help_heading = "Scenarios",
    after_help = "RETHINKDB_URL=rethinkdb://host:28015 runs against a real RethinkDB. \
                  The cluster scenario starts its own rethinkdb nodes from RETHINKDB_BIN \
                  or the rethinkdb on PATH."
)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
    /// Sizes and switches that override the scenario's defaults.
    #[command(flatten)]
    pub options: Options,
}

/// A scenario to run, or a shell's completions to print.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Score-add throughput and latency, origin and through Pushpin, against
    /// the database's own update through the driver and a bare increment
    /// with no board read
    ScoreAdd,
    /// Board JSON reads and /healthz, origin and through Pushpin
    Read,
    /// Score-add answer to arrival at 1/100/1000 subscribers, against
    /// Pushpin's own fan-out of a raw publish
    E2e,
    /// Top-5 read latency on boards of 1k, 100k and 1M players
    Top5,
    /// 10,000 score-adds on one board: publishes and the last event
    Burst,
    /// RSS of the origin and the worker, idle and under load
    Memory,
    /// The database alone: inserts, updates, top-5 reads, changefeed
    Devserver,
    /// Every scenario above
    All,
    /// One worker's ceiling: distinct boards published per second under
    /// score-adds on many boards at growing rates
    WorkerCeiling,
    /// Boards published per second by 1, 2 and 4 workers sharing the shards
    Workers,
    /// Score-adds and end-to-end latency on a 3-node RethinkDB cluster
    /// beside a single node (needs a real rethinkdb; skipped without one)
    Cluster,
    /// End-to-end latency at 1,000 and 10,000 subscribers spread over two
    /// Pushpins, against their raw fan-out
    TwoPushpins,
    /// The four scale-out scenarios above (not part of `all`)
    Scale,
    /// Every scenario, scale-out included, with tiny sizes, for CI (no
    /// targets enforced; any failed request fails the run)
    Smoke,
    /// A fault campaign: random faults on the whole stack under keyed writes,
    /// then a checker; exits non-zero on any anomaly (not part of `all`)
    Chaos {
        /// How long the campaign runs
        #[arg(long, default_value_t = 600, value_name = "N")]
        seconds: u64,
        /// The seed of the fault schedule [default: random, printed]
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// Clients sending keyed writes, each one write at a time
        #[arg(long, default_value_t = 32, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
        clients: u64,
    },
    /// Prints a completion script for SHELL to standard output
    Completions {
        /// The shell to print a completion script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How `bench chaos` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chaos {
    /// How long the load runs, in seconds.
    pub seconds: u64,
    /// The seed of the fault schedule.
    pub seed: u64,
    /// Clients sending keyed writes.
    pub clients: usize,
}

/// Sizes and switches; each overrides the scenario's default. They may
/// come before or after the scenario.
#[derive(Debug, Clone, Default, Args)]
pub struct Options {
    /// Where the results go [default: target/bench/SCENARIO.json]
    #[arg(long, global = true, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Measured time per throughput point [default: 3; smoke: 0.3]
    #[arg(long, global = true, value_name = "SECS", value_parser = seconds)]
    pub duration: Option<Duration>,
    /// Unmeasured time before it [default: 0.5; smoke: 0.1]
    #[arg(long, global = true, value_name = "SECS", value_parser = seconds)]
    pub warmup: Option<Duration>,
    /// Concurrency levels [default: 1,16,64; smoke: 1,4]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub concurrency: Option<List>,
    /// Players on the score-add board [default: 100; smoke: 10]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub players: Option<usize>,
    /// Subscriber counts [default: 1,100,1000; smoke: 1,5]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub subscribers: Option<List>,
    /// Fewest arrivals per subscriber count [default: 200; smoke: 10]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub e2e_samples: Option<usize>,
    /// Fewest rounds per subscriber count [default: 20; smoke: 3]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub e2e_min_rounds: Option<usize>,
    /// Skip the fan-out comparison with Pushpin's packaged message_rate=2500
    /// (always skipped in smoke)
    #[arg(long, global = true)]
    pub no_pushpin_defaults: bool,
    /// Board sizes [default: 1000,100000,1000000; smoke: 100,1000]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub top5_sizes: Option<List>,
    /// Reads per top-5 size [default: 2000; smoke: 50]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub top5_reads: Option<usize>,
    /// Documents per bulk insert [default: 2000; smoke: 500]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub batch: Option<usize>,
    /// Score-adds in the burst [default: 10000; smoke: 300]
    #[arg(long, global = true, value_name = "N", value_parser = number::<u64>)]
    pub burst: Option<u64>,
    /// Clients sending the burst [default: 64; smoke: 8]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub burst_concurrency: Option<usize>,
    /// The worker's PUBLISH_INTERVAL_MS [default: 50]
    #[arg(long, global = true, value_name = "MS", value_parser = number::<u64>)]
    pub publish_interval_ms: Option<u64>,
    /// Changefeed deliveries timed [default: 500; smoke: 20]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub feed_rounds: Option<usize>,
    /// Boards the worker scenarios spread score-adds over [default: 5000;
    /// smoke: 40]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub boards: Option<usize>,
    /// Score-adds per second offered at each load level of worker-ceiling
    /// [default: 1000,2000,4000,8000,16000; smoke: 400]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub rates: Option<List>,
    /// Score-adds per second offered to every worker count of workers:
    /// more than one worker publishes [default: 8000; smoke: 400]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub workers_rate: Option<usize>,
    /// Score-adds per query of the worker scenarios' writers, each on
    /// another board [default: 20; smoke: 5]
    #[arg(long, global = true, value_name = "N", value_parser = number::<usize>)]
    pub write_batch: Option<usize>,
    /// Worker counts, measured in this order (1,2,4,2,1 shows drift)
    /// [default: 1,2,4; smoke: 1,2]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub workers: Option<List>,
    /// WORKER_SHARDS of the worker scenarios' workers [default: 16, the
    /// worker's own default]
    #[arg(long, global = true, value_name = "N", value_parser = shard_count)]
    pub worker_shards: Option<u16>,
    /// RethinkDB nodes of each cluster run, replicas = nodes [default: 1,3;
    /// smoke: 3]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub cluster_nodes: Option<List>,
    /// Subscriber counts of the cluster's end-to-end runs [default: 1,100;
    /// smoke: 1]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub cluster_subscribers: Option<List>,
    /// Subscriber counts spread over two Pushpins [default: 1000,10000;
    /// smoke: 20]
    #[arg(long, global = true, value_name = "LIST", value_parser = list)]
    pub wide_subscribers: Option<List>,
}

/// Positive numbers given as `1,16,64`.
///
/// A type of its own so that clap takes the whole list as one value rather
/// than as a flag given several times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List(pub Vec<usize>);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `score-add`: score-add throughput and latency.
    ScoreAdd,
    /// `read`: board JSON reads and `/healthz`.
    Read,
    /// `e2e`: from a score-add's answer to its event's arrival.
    E2e,
    /// `top5`: top-5 read latency by board size.
    Top5,
    /// `burst`: a burst of score-adds on one board.
    Burst,
    /// `memory`: RSS of the origin and the worker.
    Memory,
    /// `devserver`: the database alone.
    DevServer,
    /// `all`: every single-stack scenario ([`Scenario::SINGLE`]).
    All,
    /// `worker-ceiling`: one worker's publish ceiling.
    WorkerCeiling,
    /// `workers`: publishes by several workers sharing the shards.
    Workers,
    /// `cluster`: a RethinkDB cluster beside a single node.
    Cluster,
    /// `two-pushpins`: subscribers spread over two Pushpins.
    TwoPushpins,
    /// `scale`: the scale-out scenarios ([`Scenario::SCALE`]).
    Scale,
    /// `smoke`: every scenario at tiny sizes.
    Smoke,
    /// `chaos`: the fault campaign.
    Chaos,
}

impl Scenario {
    /// What `all` runs.
    pub const SINGLE: [Scenario; 7] = [
        Scenario::DevServer,
        Scenario::ScoreAdd,
        Scenario::Read,
        Scenario::E2e,
        Scenario::Burst,
        Scenario::Memory,
        Scenario::Top5,
    ];

    /// What `scale` runs: separate from `all` because it takes minutes more,
    /// holds 10,000 connections and wants a real RethinkDB.
    pub const SCALE: [Scenario; 4] = [
        Scenario::WorkerCeiling,
        Scenario::Workers,
        Scenario::TwoPushpins,
        Scenario::Cluster,
    ];

    /// The scenario's name on the command line and in the JSON file.
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
            Scenario::WorkerCeiling => "worker-ceiling",
            Scenario::Workers => "workers",
            Scenario::Cluster => "cluster",
            Scenario::TwoPushpins => "two-pushpins",
            Scenario::Scale => "scale",
            Scenario::Smoke => "smoke",
            Scenario::Chaos => "chaos",
        }
    }
}

impl Command {
    /// The scenario this command runs; `None` for `completions`.
    pub fn scenario(&self) -> Option<Scenario> {
        Some(match self {
            Command::ScoreAdd => Scenario::ScoreAdd,
            Command::Read => Scenario::Read,
            Command::E2e => Scenario::E2e,
            Command::Top5 => Scenario::Top5,
            Command::Burst => Scenario::Burst,
            Command::Memory => Scenario::Memory,
            Command::Devserver => Scenario::DevServer,
            Command::All => Scenario::All,
            Command::WorkerCeiling => Scenario::WorkerCeiling,
            Command::Workers => Scenario::Workers,
            Command::Cluster => Scenario::Cluster,
            Command::TwoPushpins => Scenario::TwoPushpins,
            Command::Scale => Scenario::Scale,
            Command::Smoke => Scenario::Smoke,
            Command::Chaos { .. } => Scenario::Chaos,
            Command::Completions { .. } => return None,
        })
    }
}

/// Sizes and options of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to run.
    pub scenario: Scenario,
    /// Where the results go.
    pub json: PathBuf,
    /// Measured time of each throughput point.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Concurrent clients at each throughput point.
    pub concurrency: Vec<usize>,
    /// Players on the score-add board; operations cycle through them.
    pub players: usize,
    /// Subscriber counts of the end-to-end scenario.
    pub subscribers: Vec<usize>,
    /// Fewest arrivals to collect per subscriber count (rounds ×
    /// subscribers).
    pub e2e_samples: usize,
    /// Fewest rounds per subscriber count.
    pub e2e_min_rounds: usize,
    /// Also measure fan-out with Pushpin's default `message_rate`.
    pub compare_pushpin_defaults: bool,
    /// Board sizes of the top-5 scenario, in players.
    pub top5_sizes: Vec<usize>,
    /// Reads per top-5 size.
    pub top5_reads: usize,
    /// Documents per bulk insert.
    pub batch: usize,
    /// Score-adds in the burst.
    pub burst_adds: u64,
    /// Clients sending the burst.
    pub burst_concurrency: usize,
    /// The worker's PUBLISH_INTERVAL_MS.
    pub publish_interval_ms: u64,
    /// Changefeed deliveries timed by the devserver scenario.
    pub feed_rounds: usize,
    /// Boards of the worker scenarios.
    pub boards: usize,
    /// Score-adds per second offered at each load level of worker-ceiling.
    pub rates: Vec<usize>,
    /// Score-adds per second offered by the workers scenario.
    pub workers_rate: usize,
    /// Score-adds per writer query.
    pub write_batch: usize,
    /// Worker counts of the workers scenario, measured in this order.
    pub workers: Vec<usize>,
    /// WORKER_SHARDS of the worker scenarios' workers.
    pub worker_shards: u16,
    /// RethinkDB nodes of each cluster run (replicas = nodes).
    pub cluster_nodes: Vec<usize>,
    /// Subscriber counts of the cluster's end-to-end runs.
    pub cluster_subscribers: Vec<usize>,
    /// Subscriber counts spread over two Pushpins.
    pub wide_subscribers: Vec<usize>,
    /// The chaos campaign's seconds, seed and clients.
    pub chaos: Option<Chaos>,
}

impl Config {
    /// The defaults of `scenario`: sized for a few minutes on two cores, or
    /// tiny for `smoke`.
    pub fn defaults(scenario: Scenario) -> Self {
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
            boards: 5000,
            rates: vec![1000, 2000, 4000, 8000, 16_000],
            workers_rate: 8000,
            write_batch: 20,
            workers: vec![1, 2, 4],
            worker_shards: domain::shard::DEFAULT_SHARDS,
            cluster_nodes: vec![1, 3],
            cluster_subscribers: vec![1, 100],
            wide_subscribers: vec![1000, 10_000],
            chaos: None,
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
            config.boards = 40;
            config.rates = vec![400];
            config.workers_rate = 400;
            config.write_batch = 5;
            config.workers = vec![1, 2];
            config.cluster_nodes = vec![3];
            config.cluster_subscribers = vec![1];
            config.wide_subscribers = vec![20];
        }
        config
    }

    /// `scenario`'s defaults with `options` applied.
    pub fn from_cli(scenario: Scenario, options: Options) -> Self {
        let d = Self::defaults(scenario);
        Self {
            scenario,
            json: options.json.unwrap_or(d.json),
            duration: options.duration.unwrap_or(d.duration),
            warmup: options.warmup.unwrap_or(d.warmup),
            concurrency: options.concurrency.map_or(d.concurrency, |l| l.0),
            players: options.players.unwrap_or(d.players),
            subscribers: options.subscribers.map_or(d.subscribers, |l| l.0),
            e2e_samples: options.e2e_samples.unwrap_or(d.e2e_samples),
            e2e_min_rounds: options.e2e_min_rounds.unwrap_or(d.e2e_min_rounds),
            compare_pushpin_defaults: d.compare_pushpin_defaults && !options.no_pushpin_defaults,
            top5_sizes: options.top5_sizes.map_or(d.top5_sizes, |l| l.0),
            top5_reads: options.top5_reads.unwrap_or(d.top5_reads),
            batch: options.batch.unwrap_or(d.batch),
            burst_adds: options.burst.unwrap_or(d.burst_adds),
            burst_concurrency: options.burst_concurrency.unwrap_or(d.burst_concurrency),
            publish_interval_ms: options.publish_interval_ms.unwrap_or(d.publish_interval_ms),
            feed_rounds: options.feed_rounds.unwrap_or(d.feed_rounds),
            boards: options.boards.unwrap_or(d.boards),
            rates: options.rates.map_or(d.rates, |l| l.0),
            workers_rate: options.workers_rate.unwrap_or(d.workers_rate),
            write_batch: options.write_batch.unwrap_or(d.write_batch),
            workers: options.workers.map_or(d.workers, |l| l.0),
            worker_shards: options.worker_shards.unwrap_or(d.worker_shards),
            cluster_nodes: options.cluster_nodes.map_or(d.cluster_nodes, |l| l.0),
            cluster_subscribers: options
                .cluster_subscribers
                .map_or(d.cluster_subscribers, |l| l.0),
            wide_subscribers: options.wide_subscribers.map_or(d.wide_subscribers, |l| l.0),
            chaos: None,
        }
    }
}

/// A whole number; `_` may group digits (`1_000_000`).
fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.replace('_', "")
        .parse()
        .map_err(|_| format!("not a whole number: {v:?}"))
}

fn list(v: &str) -> Result<List, String> {
    let items = v
        .split(',')
        .map(|s| number::<usize>(s.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("give positive numbers separated by commas, not {v:?}"))?;
    if items.is_empty() || items.contains(&0) {
        return Err(format!(
            "give positive numbers separated by commas, not {v:?}"
        ));
    }
    Ok(List(items))
}

/// A `WORKER_SHARDS` value: 1 to the number of slots.
fn shard_count(v: &str) -> Result<u16, String> {
    number::<u16>(v)
        .ok()
        .filter(|&n| domain::Shards::new(n).is_some())
        .ok_or_else(|| {
            format!(
                "give a shard count from 1 to {}, not {v:?}",
                domain::shard::SLOTS
            )
        })
}

fn seconds(v: &str) -> Result<Duration, String> {
    let s: f64 = v
        .parse()
        .map_err(|_| format!("not a number of seconds: {v:?}"))?;
    if !(s.is_finite() && s >= 0.0) {
        return Err(format!("must be a number of seconds ≥ 0, not {v:?}"));
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(s: &str) -> Result<Config, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(s.split_whitespace()))?;
        let scenario = cli.command.scenario().expect("a scenario");
        Ok(Config::from_cli(scenario, cli.options))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_scenario_has_its_name() {
        for scenario in [Scenario::All, Scenario::Scale, Scenario::Smoke]
            .into_iter()
            .chain(Scenario::SINGLE)
            .chain(Scenario::SCALE)
        {
            assert_eq!(parse(scenario.name()).unwrap().scenario, scenario);
        }
    }

    #[test]
    fn defaults_follow_the_scenario() {
        let c = parse("e2e").unwrap();
        assert_eq!(c.scenario, Scenario::E2e);
        assert_eq!(c.json, PathBuf::from("target/bench/e2e.json"));
        assert_eq!(c.subscribers, vec![1, 100, 1000]);
        let s = parse("smoke").unwrap();
        assert!(s.duration < Duration::from_secs(1));
        assert!(s.top5_sizes.iter().all(|&n| n <= 1000));
        assert!(!s.compare_pushpin_defaults);
        assert!(s.wide_subscribers.iter().all(|&n| n <= 100));
        assert_eq!(parse("scale").unwrap().wide_subscribers, vec![1000, 10_000]);
    }

    #[test]
    fn flags_take_values_inline_or_after_and_go_before_or_after_the_scenario() {
        let c = parse(
            "score-add --concurrency 2,8 --duration=0.25 --json /tmp/x.json --burst 1_000 --no-pushpin-defaults",
        )
        .unwrap();
        assert_eq!(c.concurrency, vec![2, 8]);
        assert_eq!(c.duration, Duration::from_millis(250));
        assert_eq!(c.json, PathBuf::from("/tmp/x.json"));
        assert_eq!(c.burst_adds, 1000);
        assert!(!c.compare_pushpin_defaults);
        let c = parse("--players 7 smoke").unwrap();
        assert_eq!((c.scenario, c.players), (Scenario::Smoke, 7));
        // A flag overrides smoke's tiny default too.
        assert_eq!(parse("smoke --concurrency 3").unwrap().concurrency, vec![3]);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s| parse(s).unwrap_err();
        assert_eq!(err("nope").kind(), ErrorKind::InvalidSubcommand);
        assert_eq!(err("read --bogus 1").kind(), ErrorKind::UnknownArgument);
        let e = err("read --concurrency 0");
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("positive"), "{e}");
        assert_eq!(err("read --duration").kind(), ErrorKind::InvalidValue);
        let e = err("workers --worker-shards 0");
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("1 to 1024"), "{e}");
        assert_eq!(parse("workers --worker-shards 4").unwrap().worker_shards, 4);
        assert_eq!(
            err("").kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn chaos_takes_its_seconds_and_seed() {
        let cli =
            Cli::try_parse_from(["bench", "chaos", "--seconds", "60", "--seed", "7"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Chaos {
                seconds: 60,
                seed: Some(7),
                clients: 32,
            }
        );
        let few = Cli::try_parse_from(["bench", "chaos", "--clients", "8"]).unwrap();
        assert!(matches!(few.command, Command::Chaos { clients: 8, .. }));
        assert!(Cli::try_parse_from(["bench", "chaos", "--clients", "0"]).is_err());
        assert_eq!(cli.command.scenario(), Some(Scenario::Chaos));
    }

    #[test]
    fn help_is_not_an_error() {
        for s in ["--help", "help", "e2e --help", "help e2e"] {
            assert_eq!(parse(s).unwrap_err().kind(), ErrorKind::DisplayHelp, "{s}");
        }
    }

    #[test]
    fn completions_name_the_scenarios() {
        let cli = Cli::try_parse_from(["bench", "completions", "bash"]).unwrap();
        let Command::Completions { shell } = cli.command else {
            panic!("not completions");
        };
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "bench", &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("score-add") && script.contains("--top5-sizes"));
        assert!(script.contains("two-pushpins") && script.contains("--workers"));
    }
}
