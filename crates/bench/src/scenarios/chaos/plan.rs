//! The nemesis's schedule, derived from the seed alone, so that a seed
//! replays the same faults at the same moments on the same targets.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// A fault the nemesis can inject, with its target's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// `kill -9` of a database node, restarted on its data at the heal.
    DbKill(usize),
    /// SIGSTOP of a database node, SIGCONT at the heal.
    DbStop(usize),
    /// SIGSTOP of worker `w<i>`, SIGCONT at the heal.
    WorkerStop(usize),
    /// `kill -9` of worker `w<i>`, started again at the heal.
    WorkerKill(usize),
    /// SIGSTOP of an origin, SIGCONT at the heal.
    OriginStop(usize),
    /// `kill -9` of an origin, started again at the heal.
    OriginKill(usize),
    /// `kill -9` of a Pushpin, restarted at the heal.
    PushpinKill(usize),
    /// A partition: on a cluster, node `i` cut off from its peers (nothing
    /// passes, nothing is closed; clients still reach it); on the dev
    /// server, the stack cut off from the database the same way.
    DbPartition(usize),
    /// The links to database node `i` (on the dev server, the stack's link
    /// to it) slowed by this many milliseconds each way.
    DbSlow(usize, u64),
}

impl Fault {
    /// The fault's name in the report and the log, e.g. `db-kill`.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::DbKill(_) => "db-kill",
            Fault::DbStop(_) => "db-stop",
            Fault::WorkerStop(_) => "worker-stop",
            Fault::WorkerKill(_) => "worker-kill",
            Fault::OriginStop(_) => "origin-stop",
            Fault::OriginKill(_) => "origin-kill",
            Fault::PushpinKill(_) => "pushpin-kill",
            Fault::DbPartition(_) => "db-partition",
            Fault::DbSlow(..) => "db-slow",
        }
    }
}

/// One fault of the schedule, in milliseconds from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// When the fault is injected.
    pub at_ms: u64,
    /// How long it lasts before the heal, in milliseconds.
    pub hold_ms: u64,
    /// What is injected, and on which target.
    pub fault: Fault,
}

/// How many of each process the stack has.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Database nodes that may fail: 0 on the dev server, whose one node
    /// holds the only copy.
    pub db_nodes: usize,
    /// Database nodes whose links may be cut or slowed: every node of a
    /// cluster, or the dev server's one link to the stack.
    pub db_links: usize,
    /// Workers.
    pub workers: usize,
    /// Origins.
    pub origins: usize,
    /// Pushpins.
    pub pushpins: usize,
}

/// The delay a `db-slow` fault adds each way, in milliseconds.
const MIN_DELAY_MS: u64 = 20;
const MAX_DELAY_MS: u64 = 300;

/// Quiet time at the start, before the first fault.
const LEAD_MS: u64 = 3_000;
/// Quiet time at the end, after the last heal, for the convergence check.
const TAIL_MS: u64 = 6_000;

/// One fault at a time, each held 1–10 s, 1–3 s apart, all healed
/// `TAIL_MS` before `total_ms` ends.
pub fn schedule(seed: u64, total_ms: u64, sizes: Sizes) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds: Vec<fn(usize) -> Fault> = vec![
        Fault::WorkerStop,
        Fault::WorkerKill,
        Fault::OriginStop,
        Fault::OriginKill,
        Fault::PushpinKill,
    ];
    if sizes.db_nodes > 0 {
        kinds.extend([Fault::DbKill as fn(usize) -> Fault, Fault::DbStop]);
    }
    if sizes.db_links > 0 {
        kinds.extend([Fault::DbPartition as fn(usize) -> Fault, |i| {
            Fault::DbSlow(i, 0)
        }]);
    }
    let mut plan = Vec::new();
    let mut at = LEAD_MS;
    loop {
        let pick = kinds[rng.gen_range(0..kinds.len())];
        let targets = match pick(0) {
            Fault::DbKill(_) | Fault::DbStop(_) => sizes.db_nodes,
            Fault::DbPartition(_) | Fault::DbSlow(..) => sizes.db_links,
            Fault::WorkerStop(_) | Fault::WorkerKill(_) => sizes.workers,
            Fault::OriginStop(_) | Fault::OriginKill(_) => sizes.origins,
            Fault::PushpinKill(_) => sizes.pushpins,
        };
        let fault = match pick(rng.gen_range(0..targets.max(1))) {
            // A delay a distant replica or a congested link might add.
            Fault::DbSlow(i, _) => Fault::DbSlow(i, rng.gen_range(MIN_DELAY_MS..=MAX_DELAY_MS)),
            fault => fault,
        };
        let hold_ms = rng.gen_range(1_000..=10_000);
        if at + hold_ms + TAIL_MS > total_ms {
            break;
        }
        plan.push(Planned {
            at_ms: at,
            hold_ms,
            fault,
        });
        at += hold_ms + rng.gen_range(1_000..=3_000);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: Sizes = Sizes {
        db_nodes: 3,
        db_links: 3,
        workers: 3,
        origins: 2,
        pushpins: 2,
    };

    #[test]
    fn a_seed_replays_its_schedule_and_another_seed_does_not() {
        let a = schedule(7, 600_000, CLUSTER);
        assert_eq!(a, schedule(7, 600_000, CLUSTER));
        assert_ne!(a, schedule(8, 600_000, CLUSTER));
        assert!(a.len() > 40, "{}", a.len());
    }

    #[test]
    fn one_fault_at_a_time_all_healed_before_the_tail() {
        let plan = schedule(1, 60_000, CLUSTER);
        for pair in plan.windows(2) {
            assert!(pair[0].at_ms + pair[0].hold_ms < pair[1].at_ms);
        }
        for p in &plan {
            assert!((1_000..=10_000).contains(&p.hold_ms));
            assert!(p.at_ms + p.hold_ms + TAIL_MS <= 60_000);
        }
    }

    #[test]
    fn one_node_loses_only_its_link() {
        let dev = Sizes {
            db_nodes: 0,
            db_links: 1,
            ..CLUSTER
        };
        let plan = schedule(3, 600_000, dev);
        assert!(plan
            .iter()
            .all(|p| !matches!(p.fault, Fault::DbKill(_) | Fault::DbStop(_))));
        assert!(plan.iter().all(|p| match p.fault {
            Fault::DbPartition(i) | Fault::DbSlow(i, _) => i == 0,
            _ => true,
        }));
        assert!(plan
            .iter()
            .any(|p| matches!(p.fault, Fault::DbPartition(_))));
        let cluster = schedule(3, 600_000, CLUSTER);
        for kind in ["db-kill", "db-stop", "db-partition", "db-slow"] {
            assert!(cluster.iter().any(|p| p.fault.kind() == kind), "{kind}");
        }
        for p in &cluster {
            if let Fault::DbSlow(_, ms) = p.fault {
                assert!((MIN_DELAY_MS..=MAX_DELAY_MS).contains(&ms));
            }
        }
    }
}
