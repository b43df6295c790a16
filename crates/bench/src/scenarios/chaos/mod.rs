//! A fault campaign: random faults on the whole stack under a keyed write
//! load, and a checker that proves from the record that nothing promised
//! was broken (see [`check`]).
//!
//! The stack: RethinkDB as three nodes with every table at `replicas=3`
//! when a real `rethinkdb` is available (else the dev server, one node, so
//! process faults only), two Pushpins, two origins, three workers with
//! `WORKER_SHARDS=16`. The nemesis injects one fault at a time from a
//! schedule derived from the seed ([`plan`]), holds it 1–10 s and heals it.

pub mod check;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use testkit::{rethinkdb_binary, RethinkCluster, Scope, Stack, StackOptions, Subscriber, TempDir};

use self::check::{
    Anomaly, Attempt, BoardModel, FinalBoard, Ms, Op, Operator, Outcome, PeriodState, SubEvent,
};
use self::plan::{Fault, Planned, Sizes};
use crate::cli::Chaos;
use crate::report::Report;

const PLAYERS: usize = 8;
const WORKERS: usize = 3;
/// Every few seconds, so that a ten-minute run crosses a hundred resets.
const RESET: &str = "*/6 * * * * *";
/// How long a subscriber may take to show the final board after the last
/// heal.
const CONVERGE: Duration = Duration::from_secs(5);

fn now_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn boards() -> Vec<BoardModel> {
    let b = |id: &str, operator, asc, resets| BoardModel {
        id: id.into(),
        operator,
        asc,
        resets,
    };
    vec![
        b("c-incr-desc-r", Operator::Incr, false, true),
        b("c-incr-asc-r", Operator::Incr, true, true),
        b("c-incr-desc", Operator::Incr, false, false),
        b("c-set-desc", Operator::Set, false, false),
        b("c-set-asc", Operator::Set, true, false),
        b("c-best-desc", Operator::Best, false, false),
        b("c-best-asc", Operator::Best, true, false),
    ]
}

/// `bench chaos --seconds N --seed S [--clients C]`.
pub async fn run(chaos: Chaos, report: &mut Report) -> anyhow::Result<()> {
    let Chaos {
        seconds,
        seed,
        clients: client_count,
    } = chaos;
    println!("chaos: seed {seed}, {seconds} s, {client_count} clients");
    let data = TempDir::new("chaos")?;
    // A cluster's nodes reach each other through links that the nemesis
    // can cut or slow; the dev server is the stack's own, reached through
    // its proxy (`Stack::db_proxy`), the link the nemesis breaks there.
    let mut cluster = match rethinkdb_binary() {
        Some(bin) => Some(RethinkCluster::start_linked(&bin, data.path(), 3).await?),
        None => None,
    };
    let base = cluster.as_ref().map(RethinkCluster::base_url);
    let server = if cluster.is_some() {
        "RethinkDB 2.4 cluster, 3 nodes, replicas=3"
    } else {
        "reql-dev-server, one node"
    };
    println!("chaos: on {server}");
    let replicas = if cluster.is_some() { "3" } else { "1" };
    let env = vec![("TABLE_REPLICAS".to_owned(), replicas.to_owned())];
    let mut stack = Stack::start_with(StackOptions {
        worker: false,
        pushpins: 2,
        extra_webs: 1,
        database: base,
        web_env: env.clone(),
        worker_env: [env, vec![("WORKER_SHARDS".to_owned(), "16".to_owned())]].concat(),
        ..StackOptions::default()
    })
    .await
    .context("start the stack")?;
    let logs = stack.dir().to_path_buf();
    for w in 0..WORKERS {
        start_worker(&mut stack, w, true).await?;
    }
    let origin = stack.origin_url("");
    let pushpins = vec![stack.pushpin.url(), stack.extra_pushpins[0].url()];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let models = boards();
    for b in &models {
        let mut body = json!({
            "id": b.id, "name": b.id, "top": 20,
            "order": if b.asc { "asc" } else { "desc" },
            "operator": match b.operator { Operator::Incr => "incr", Operator::Set => "set", Operator::Best => "best" },
        });
        if b.resets {
            body["reset"] = json!(RESET);
        }
        let resp = http
            .post(format!("{origin}/boards/"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == 201,
            "create {}: {}",
            b.id,
            resp.text().await?
        );
        for p in 0..PLAYERS {
            let resp = http
                .post(format!("{origin}/boards/{}/players/", b.id))
                .json(&json!({"id": format!("p{p}"), "name": format!("P{p}")}))
                .send()
                .await?;
            anyhow::ensure!(
                resp.status() == 201,
                "create player: {}",
                resp.text().await?
            );
        }
    }

    // Subscribers: one per board on each Pushpin.
    let stop = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    for b in &models {
        for (i, base) in pushpins.iter().enumerate() {
            let events = Arc::new(Mutex::new(Vec::<SubEvent>::new()));
            let task = tokio::spawn(subscribe(
                format!("{base}/boards/{}/", b.id),
                Arc::clone(&events),
                Arc::clone(&stop),
            ));
            subs.push((
                b.clone(),
                format!("{}@pushpin{}", b.id, i + 1),
                events,
                task,
            ));
        }
    }

    // Clients: each owns the (board, player) pairs of its index, one writer
    // per player, so that the model knows every write's order.
    let pairs: Vec<(BoardModel, String)> = models
        .iter()
        .flat_map(|b| (0..PLAYERS).map(move |p| (b.clone(), format!("p{p}"))))
        .collect();
    let mut clients = Vec::new();
    for c in 0..client_count {
        let mine: Vec<_> = pairs
            .iter()
            .skip(c)
            .step_by(client_count)
            .cloned()
            .collect();
        clients.push(tokio::spawn(client(
            c,
            mine,
            pushpins.clone(),
            Arc::clone(&stop),
        )));
    }
    let churn = tokio::spawn(churn(origin.clone(), Arc::clone(&stop)));

    // The nemesis.
    let sizes = Sizes {
        db_nodes: if cluster.is_some() { 3 } else { 0 },
        db_links: if cluster.is_some() { 3 } else { 1 },
        workers: WORKERS,
        origins: 2,
        pushpins: 2,
    };
    let schedule = plan::schedule(seed, seconds * 1000, sizes);
    let started = Instant::now();
    let mut windows: Vec<(Fault, Ms, Ms)> = Vec::new();
    for planned in &schedule {
        tokio::time::sleep_until((started + Duration::from_millis(planned.at_ms)).into()).await;
        let t0 = now_ms();
        inject(&mut stack, cluster.as_mut(), planned).await?;
        tokio::time::sleep(Duration::from_millis(planned.hold_ms)).await;
        heal(&mut stack, cluster.as_mut(), planned).await?;
        let t1 = now_ms();
        let delay = match planned.fault {
            Fault::DbSlow(_, ms) => format!(", +{ms} ms each way"),
            _ => String::new(),
        };
        println!(
            "  {:>6.1} s  {:<13} target {} held {:.1} s{delay}",
            planned.at_ms as f64 / 1e3,
            planned.fault.kind(),
            target(planned.fault),
            planned.hold_ms as f64 / 1e3
        );
        windows.push((planned.fault, t0, t1));
    }
    tokio::time::sleep_until((started + Duration::from_secs(seconds)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut ops: Vec<Op> = Vec::new();
    for c in clients {
        ops.extend(c.await?);
    }
    let churned = churn.await?;
    let last_heal = windows.last().map_or(0, |w| w.2);
    let quiet_since = ops
        .iter()
        .map(|o| o.completed)
        .max()
        .unwrap_or(0)
        .max(last_heal);

    // Check 4: every subscriber shows the final board within 5 s.
    let mut found: Vec<Anomaly> = Vec::new();
    let mut converge_ms = Vec::new();
    for (b, name, events, _) in &subs {
        let deadline = quiet_since + CONVERGE.as_millis() as u64;
        let mut done = None;
        loop {
            let board: Value = match http.get(format!("{origin}/boards/{}/", b.id)).send().await {
                Ok(r) if r.status() == 200 => r.json().await.unwrap_or_default(),
                _ => Value::Null,
            };
            let latest = events
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|e| e.event == "update")
                .map(|e| e.data.clone());
            if latest.as_ref().is_some_and(|l| same_board(l, &board)) {
                done = Some(now_ms().saturating_sub(quiet_since));
                break;
            }
            if now_ms() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match done {
            Some(ms) => converge_ms.push(ms),
            None => found.push(Anomaly {
                kind: "not-converged",
                detail: format!(
                    "{name} not showing the final board {} s after the last heal",
                    CONVERGE.as_secs()
                ),
            }),
        }
    }
    for (_, _, _, task) in &subs {
        task.abort();
    }

    // The database afterwards.
    let mut finals = BTreeMap::new();
    for b in &models {
        finals.insert(b.id.clone(), final_board(&http, &origin, b).await?);
    }
    found.extend(check::scores(&models, &ops, &finals));
    for (b, name, events, _) in &subs {
        found.extend(check::staleness(b, name, &events.lock().unwrap()));
    }
    let mut records = Vec::new();
    for w in 0..WORKERS {
        let text =
            std::fs::read_to_string(logs.join(format!("publish-w{w}.jsonl"))).unwrap_or_default();
        records.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<check::PublishRecord>(l).ok()),
        );
    }
    found.extend(check::tenures(&records));
    let origin_kills: Vec<(Ms, Ms)> = windows
        .iter()
        .filter(|(f, _, _)| matches!(f, Fault::OriginKill(_)))
        .map(|(_, t0, t1)| (*t0, *t1))
        .collect();
    found.extend(check::statuses(&ops, &origin_kills));
    let proxied_502s = check::proxied_502s(&ops, &origin_kills);
    found.extend(churn_anomalies(&http, &origin, &churned).await);
    for entry in walk_logs(&logs).into_iter().chain(walk_logs(data.path())) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        found.extend(check::panics(&entry.display().to_string(), &text));
    }

    // Figures.
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for (f, _, _) in &windows {
        *faults.entry(f.kind()).or_default() += 1;
    }
    let mut anomalies: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &found {
        *anomalies.entry(a.kind).or_default() += 1;
    }
    let held: Vec<&Attempt> = ops
        .iter()
        .flat_map(|o| &o.attempts)
        .filter(|a| windows.iter().any(|(_, t0, t1)| a.at >= *t0 && a.at < *t1))
        .collect();
    let quick = held
        .iter()
        .filter(|a| a.status == Some(200) && a.took_ms <= 1000)
        .count();
    let availability = if held.is_empty() {
        1.0
    } else {
        quick as f64 / held.len() as f64
    };
    let mut recovery: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (f, _, t1) in &windows {
        let first_ok = ops
            .iter()
            .flat_map(|o| &o.attempts)
            .filter(|a| a.at >= *t1 && a.status == Some(200))
            .map(|a| a.at + a.took_ms - t1)
            .min();
        if let Some(ms) = first_ok {
            recovery.entry(f.kind()).or_default().push(ms);
        }
    }
    println!("\nfaults by kind: {faults:?}");
    println!("anomalies by kind: {anomalies:?}");
    for a in found.iter().take(20) {
        println!("  {}: {}", a.kind, a.detail);
    }
    println!(
        "availability while a fault is held: {:.1}% of {} attempts answered 200 within 1 s",
        availability * 100.0,
        held.len()
    );
    for (kind, ms) in &recovery {
        let max = ms.iter().max().copied().unwrap_or(0);
        let mean = ms.iter().sum::<u64>() / ms.len().max(1) as u64;
        println!(
            "recovery after {kind}: mean {mean} ms, max {max} ms ({} faults)",
            ms.len()
        );
    }
    println!(
        "convergence after the last heal: max {} ms over {} subscribers",
        converge_ms.iter().max().copied().unwrap_or(0),
        converge_ms.len()
    );
    println!("publishes logged: {}", records.len());
    println!("Pushpin's 502 for a request in flight at a killed origin: {proxied_502s}");
    report.section(
        "chaos",
        json!({
            "seed": seed, "seconds": seconds, "clients": client_count, "server": server, "ops": ops.len(),
            "faults": faults, "anomalies": anomalies, "anomaly_list": found,
            "availability": availability, "recovery_ms": recovery, "schedule": schedule,
            "publishes": records.len(), "convergence_ms": converge_ms,
            "proxied_502s": proxied_502s,
        }),
    );
    let line = format!(
        "chaos: {} ops, {} faults, {} anomalies (seed {seed})",
        ops.len(),
        windows.len(),
        found.len()
    );
    if !found.is_empty() {
        // What it takes to find the cause: every process's log, the
        // publish logs, and what each subscriber received.
        let keep = std::path::PathBuf::from(format!("target/bench/chaos-{seed}"));
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::create_dir_all(&keep)?;
        let copied = std::process::Command::new("cp")
            .arg("-r")
            .arg(&logs)
            .arg(keep.join("stack"))
            .status();
        if !copied.is_ok_and(|s| s.success()) {
            println!("chaos: could not keep the logs in {}", keep.display());
        }
        let received: BTreeMap<&str, Vec<SubEvent>> = subs
            .iter()
            .map(|(_, name, events, _)| (name.as_str(), events.lock().unwrap().clone()))
            .collect();
        std::fs::write(
            keep.join("subscribers.json"),
            serde_json::to_vec_pretty(&received)?,
        )?;
        std::fs::write(keep.join("history.json"), serde_json::to_vec_pretty(&ops)?)?;
        std::fs::write(
            keep.join("finals.json"),
            serde_json::to_vec_pretty(&finals)?,
        )?;
        println!(
            "chaos: logs and what subscribers received kept in {}",
            keep.display()
        );
    }
    drop(stack);
    drop(cluster);
    println!("{line}");
    anyhow::ensure!(found.is_empty(), "{line}");
    Ok(())
}

fn target(f: Fault) -> usize {
    match f {
        Fault::DbKill(i)
        | Fault::DbStop(i)
        | Fault::DbPartition(i)
        | Fault::DbSlow(i, _)
        | Fault::WorkerStop(i)
        | Fault::WorkerKill(i)
        | Fault::OriginStop(i)
        | Fault::OriginKill(i)
        | Fault::PushpinKill(i) => i,
    }
}

/// Starts worker `w<w>`: at the campaign's start, once it follows its
/// shards; at a heal, without waiting, as a restart in production would be
/// (the database may still be recovering from an earlier fault; the
/// checker judges what the worker then does).
async fn start_worker(stack: &mut Stack, w: usize, wait: bool) -> anyhow::Result<()> {
    let log = stack.dir().join(format!("publish-w{w}.jsonl"));
    let log = log.display().to_string();
    let (id, env) = (format!("w{w}"), [("PUBLISH_LOG", log.as_str())]);
    if wait {
        stack.add_worker(&id, &env).await
    } else {
        stack.add_worker_unready(&id, &env).await
    }
}

async fn inject(
    stack: &mut Stack,
    cluster: Option<&mut RethinkCluster>,
    p: &Planned,
) -> anyhow::Result<()> {
    match p.fault {
        Fault::DbKill(i) => cluster.context("no cluster")?.kill(i),
        Fault::DbStop(i) => cluster.context("no cluster")?.nodes[i]
            .process
            .signal("STOP"),
        Fault::WorkerStop(i) => stack.named_worker(&format!("w{i}")).process.signal("STOP"),
        Fault::WorkerKill(i) => stack.named_worker(&format!("w{i}")).process.kill_hard(),
        Fault::OriginStop(i) => {
            if let Some(web) = stack.web_at(i) {
                web.signal("STOP");
            }
        }
        Fault::OriginKill(i) => stack.kill_web_at(i),
        Fault::PushpinKill(i) => stack.pushpin_at(i).kill_hard(),
        Fault::DbPartition(i) => match cluster {
            Some(cluster) => cluster.partition(i)?,
            None => stack.db_proxy.stall(Scope::Everyone),
        },
        Fault::DbSlow(i, ms) => {
            let delay = Duration::from_millis(ms);
            match cluster {
                Some(cluster) => cluster.slow_links(i, delay)?,
                None => stack.db_proxy.slow(Scope::Everyone, delay),
            }
        }
    }
    Ok(())
}

async fn heal(
    stack: &mut Stack,
    cluster: Option<&mut RethinkCluster>,
    p: &Planned,
) -> anyhow::Result<()> {
    match p.fault {
        Fault::DbKill(i) => cluster.context("no cluster")?.restart(i).await?,
        Fault::DbStop(i) => cluster.context("no cluster")?.nodes[i]
            .process
            .signal("CONT"),
        Fault::WorkerStop(i) => stack.named_worker(&format!("w{i}")).process.signal("CONT"),
        Fault::WorkerKill(i) => start_worker(stack, i, false).await?,
        Fault::OriginStop(i) => {
            if let Some(web) = stack.web_at(i) {
                web.signal("CONT");
            }
        }
        Fault::OriginKill(i) => stack.start_web_at_unready(i).await?,
        Fault::PushpinKill(i) => stack.restart_pushpin_at(i).await?,
        Fault::DbPartition(_) | Fault::DbSlow(..) => match cluster {
            Some(cluster) => cluster.heal_links(),
            None => stack.db_proxy.heal(),
        },
    }
    Ok(())
}

/// Whether a subscriber's board shows what the database shows.
fn same_board(event: &Value, board: &Value) -> bool {
    event["period"]["number"] == board["period"]["number"]
        && check::shown_scores(event) == check::shown_scores(board)
        && event["players"].as_array().map(Vec::len) == board["players"].as_array().map(Vec::len)
}

/// An `EventSource`: reads the stream, and after any break reconnects with
/// the last event id it saw. Like the live page, it gives up on a stream
/// that is not answered in time (a Pushpin just restarted can leave one
/// unanswered) and opens another.
async fn subscribe(url: String, events: Arc<Mutex<Vec<SubEvent>>>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut last_id: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut sub) = Subscriber::open(&client, &url, last_id.as_deref()).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        while let Ok(e) = sub.next(Duration::from_secs(30)).await {
            if !e.id.is_empty() {
                last_id = Some(e.id.clone());
            }
            let data = serde_json::from_str(&e.data).unwrap_or(Value::Null);
            events.lock().unwrap().push(SubEvent {
                at: now_ms(),
                event: e.event,
                data,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One client: a keyed write at a time on its players, each retried,
/// through either Pushpin in turn, until it is answered.
async fn client(
    c: usize,
    mine: Vec<(BoardModel, String)>,
    pushpins: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<Op> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut ops = Vec::new();
    let mut next: BTreeMap<usize, i64> = BTreeMap::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && !mine.is_empty() {
        let (board, player) = &mine[n % mine.len()];
        let i = n % mine.len();
        n += 1;
        // Positive adds; ever better submissions to `set` and `best`.
        let counter = next.entry(i).or_insert(0);
        *counter += 1;
        let (path, value) = match board.operator {
            Operator::Incr => ("score-add", 1 + (n as i64 % 9)),
            _ => (
                "score",
                if board.asc {
                    1_000_000 - *counter
                } else {
                    *counter
                },
            ),
        };
        let key = format!("c{c}-{n}");
        let url_for = |k: usize| {
            format!(
                "{}/boards/{}/players/{player}/{path}/",
                pushpins[k % pushpins.len()],
                board.id
            )
        };
        let invoked = now_ms();
        let mut attempts = Vec::new();
        let mut outcome = Outcome::Unknown;
        let give_up = Instant::now() + Duration::from_secs(60);
        for k in 0.. {
            let at = now_ms();
            let resp = http
                .post(url_for(c + k))
                .header("Idempotency-Key", &key)
                .json(&json!({"value": value}))
                .send()
                .await;
            let took_ms = now_ms() - at;
            let (status, retry_after) = match &resp {
                Ok(r) => (
                    Some(r.status().as_u16()),
                    r.headers().contains_key("retry-after"),
                ),
                Err(_) => (None, false),
            };
            attempts.push(Attempt {
                at,
                took_ms,
                status,
                retry_after,
            });
            match status {
                Some(200) => {
                    outcome = Outcome::Ok;
                    break;
                }
                Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                    outcome = Outcome::Failed(s);
                    break;
                }
                _ => {}
            }
            if Instant::now() > give_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ops.push(Op {
            board: board.id.clone(),
            player: player.clone(),
            value,
            key,
            invoked,
            completed: now_ms(),
            outcome,
            attempts,
        });
    }
    ops
}

/// Boards and players created and deleted during the run, straight at the
/// origin: what it deleted (board, optional player).
async fn churn(origin: String, stop: Arc<AtomicBool>) -> Vec<(String, Option<String>)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut deleted = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let board = format!("tmp-{n}");
        let ok = async {
            let r = http
                .post(format!("{origin}/boards/"))
                .json(&json!({"id": board, "name": board}))
                .send()
                .await
                .ok()?;
            (r.status() == 201).then_some(())?;
            let r = http
                .post(format!("{origin}/boards/{board}/players/"))
                .json(&json!({"id": "x", "name": "X"}))
                .send()
                .await
                .ok()?;
            (r.status() == 201).then_some(())?;
            let r = http
                .post(format!("{origin}/boards/{board}/players/x/score-add/"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())?;
            let r = http
                .delete(format!("{origin}/boards/{board}/players/x/"))
                .send()
                .await
                .ok()?;
            (r.status() == 204).then_some(())?;
            let r = http
                .delete(format!("{origin}/boards/{board}/"))
                .send()
                .await
                .ok()?;
            (r.status() == 204).then_some(())
        }
        .await;
        if ok.is_some() {
            deleted.push((board.clone(), Some("x".to_owned())));
            deleted.push((board, None));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    deleted
}

/// Whatever the churn deleted (and was told was deleted) must stay gone.
async fn churn_anomalies(
    http: &reqwest::Client,
    origin: &str,
    deleted: &[(String, Option<String>)],
) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for (board, player) in deleted {
        let path = match player {
            Some(p) => format!("/boards/{board}/players/{p}/"),
            None => format!("/boards/{board}/"),
        };
        if let Ok(r) = http.get(format!("{origin}{path}")).send().await {
            if r.status() != 404 {
                found.push(Anomaly {
                    kind: "deleted-came-back",
                    detail: format!("{path}: {}", r.status()),
                });
            }
        }
    }
    found
}

/// A board as the database holds it afterwards, every period included.
async fn final_board(
    http: &reqwest::Client,
    origin: &str,
    b: &BoardModel,
) -> anyhow::Result<FinalBoard> {
    let get = |path: String| async move {
        for _ in 0..50 {
            if let Ok(r) = http.get(format!("{origin}{path}")).send().await {
                if r.status() == 200 {
                    return r.json::<Value>().await.ok();
                }
                if r.status() == 404 {
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    };
    let board = get(format!("/boards/{}/", b.id))
        .await
        .context("read the board")?;
    let mut periods = Vec::new();
    let current = board["period"]["number"].as_u64();
    if let Some(current) = current {
        for n in 1..current {
            let p = get(format!("/boards/{}/periods/{n}/", b.id))
                .await
                .unwrap_or(Value::Null);
            periods.push(PeriodState {
                number: n,
                start: parse_time(&p["start"]).unwrap_or(0),
                end: parse_time(&p["end"]),
                scores: check::shown_scores(&json!({"players": p["top"]})),
            });
        }
    }
    periods.push(PeriodState {
        number: current.unwrap_or(0),
        start: parse_time(&board["period"]["start"]).unwrap_or(0),
        end: None,
        scores: check::shown_scores(&board),
    });
    Ok(FinalBoard { periods })
}

/// `YYYY-MM-DDTHH:MM:SS[.mmm]Z` as Unix milliseconds.
fn parse_time(v: &Value) -> Option<Ms> {
    let s = v.as_str()?;
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let ms = if s.as_bytes().get(19) == Some(&b'.') {
        num(20..23).unwrap_or(0)
    } else {
        0
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + hh) * 60 + mm) * 60 + ss) as u64 * 1000 + ms as u64)
}

/// Every `.log` file under `dir`.
fn walk_logs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk_logs(&path));
        } else if path.extension().is_some_and(|x| x == "log") {
            out.push(path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_unix_milliseconds() {
        assert_eq!(parse_time(&json!("1970-01-01T00:00:01.250Z")), Some(1250));
        assert_eq!(
            parse_time(&json!("2024-02-29T12:00:00Z")),
            Some(1_709_208_000_000)
        );
    }
}
