//! The load generator's two HTTP clients side by side: the hand-written
//! one (`http`) and the same over hyper's connection API (`hyper_http`), on
//! the same stack
//! in the same run, alternating, so that the machine's other load falls on
//! both alike. For each: requests a second, latency, and the CPU time this
//! process (the client) spends per request.

use std::sync::Arc;

use serde_json::json;

use super::{check, PathResult};
use crate::cli::Config;
use crate::harness::{score_add_requests, Bench, HttpClient};
use crate::http::Request;
use crate::hyper_http;
use crate::load::{self, Client, LoadResult};
use crate::machine::cpu_time;
use crate::report::{Report, Table};
use crate::stats::{fmt_rate, fmt_us};

const BOARD: &str = "hc";
const ROUNDS: usize = 2;

/// A load client on a hyper connection.
struct HyperClient {
    conn: hyper_http::Connection,
    requests: Arc<Vec<hyper_http::Request>>,
    offset: usize,
    expect: u16,
}

impl Client for HyperClient {
    async fn call(&mut self, seq: u64) -> anyhow::Result<()> {
        let request = &self.requests[(self.offset + seq as usize) % self.requests.len()];
        let response = self.conn.send(request).await?;
        anyhow::ensure!(
            response.status == self.expect,
            "status {}: {}",
            response.status,
            response.text()
        );
        Ok(())
    }
}

/// Runs `clients` and returns the result with this process's CPU time per
/// operation, in µs.
async fn measured<C: Client>(clients: Vec<C>, config: &Config) -> (LoadResult, f64) {
    let pid = std::process::id();
    let before = cpu_time(pid).unwrap_or_default();
    let r = load::run(clients, config.timed()).await;
    let used = cpu_time(pid).unwrap_or_default().saturating_sub(before);
    let per_op = used.as_secs_f64() * 1e6 / r.ops.max(1) as f64;
    (r, per_op)
}

pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let players = bench.board(BOARD, config.players).await?;
    let mut table = Table::new(
        "HTTP clients: hand-written (raw) and hyper, alternating, same stack",
        &[
            "path",
            "concurrency",
            "round",
            "client",
            "throughput",
            "mean",
            "p99",
            "client CPU/req",
            "errors",
        ],
    );
    let mut summary = Table::new(
        "HTTP clients: hyper / raw, over both rounds",
        &[
            "path",
            "concurrency",
            "throughput ratio",
            "mean latency ratio",
            "client CPU/req ratio",
        ],
    );
    let mut results = Vec::new();
    for &c in &config.concurrency {
        for (name, port, kind) in [
            ("origin /healthz", bench.origin_port(), "healthz"),
            ("pushpin → origin /healthz", bench.pushpin_port(), "healthz"),
            ("origin score-add", bench.origin_port(), "score-add"),
            (
                "pushpin → origin score-add",
                bench.pushpin_port(),
                "score-add",
            ),
        ] {
            let (raw_requests, hyper_requests) = if kind == "healthz" {
                (
                    Arc::new(vec![Request::get_json(port, "/healthz")]),
                    Arc::new(vec![hyper_http::Request::get_json(port, "/healthz")]),
                )
            } else {
                let hyper = players
                    .iter()
                    .map(|p| {
                        hyper_http::Request::post_json(
                            port,
                            &format!("/boards/{BOARD}/players/{p}/score-add/"),
                            r#"{"value":1}"#,
                        )
                    })
                    .collect();
                (score_add_requests(port, BOARD, &players), Arc::new(hyper))
            };
            // Sums over the rounds: ops, seconds, latency × ops, CPU.
            let mut sums = [[0.0f64; 4]; 2];
            for round in 0..ROUNDS {
                // Each round swaps which client goes first.
                let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for which in order {
                    let (label, (r, cpu)) = if which == 0 {
                        let clients =
                            HttpClient::many(c, port, Arc::clone(&raw_requests), 200).await?;
                        ("raw", measured(clients, config).await)
                    } else {
                        let mut clients = Vec::with_capacity(c);
                        for i in 0..c {
                            clients.push(HyperClient {
                                conn: hyper_http::Connection::connect(port).await?,
                                requests: Arc::clone(&hyper_requests),
                                offset: i,
                                expect: 200,
                            });
                        }
                        ("hyper", measured(clients, config).await)
                    };
                    check(config, &format!("{name} with the {label} client"), &r)?;
                    let s = &mut sums[which];
                    s[0] += r.ops as f64;
                    s[1] += r.seconds;
                    s[2] += r.latency.mean_us * r.ops as f64;
                    s[3] += cpu * r.ops as f64;
                    table.row(vec![
                        name.to_owned(),
                        c.to_string(),
                        (round + 1).to_string(),
                        label.to_owned(),
                        fmt_rate(r.throughput),
                        fmt_us(r.latency.mean_us),
                        fmt_us(r.latency.p99_us),
                        fmt_us(cpu),
                        r.errors.to_string(),
                    ]);
                    results.push(json!({
                        "client": label,
                        "round": round + 1,
                        "client_cpu_us_per_request": cpu,
                        "result": PathResult { path: name.to_owned(), result: r },
                    }));
                }
            }
            let [raw, hyper] = sums;
            let rate = |s: [f64; 4]| s[0] / s[1];
            let per_op = |s: [f64; 4], i: usize| s[i] / s[0];
            summary.row(vec![
                name.to_owned(),
                c.to_string(),
                format!("{:.2}", rate(hyper) / rate(raw)),
                format!("{:.2}", per_op(hyper, 2) / per_op(raw, 2)),
                format!("{:.2}", per_op(hyper, 3) / per_op(raw, 3)),
            ]);
        }
    }
    report.table(table);
    report.table(summary);
    report.section("http_client", &results);
    Ok(())
}
