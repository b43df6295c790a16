//! Board JSON reads (`GET /boards/{id}/`, the top five and the board's
//! name in one query), straight to the origin and through Pushpin; and
//! `GET /healthz`, which touches no database, through both: the cost of the
//! HTTP path alone, and of Pushpin's proxy path alone.

use std::sync::Arc;

use super::{check, load_row, PathResult, LOAD_HEADER};
use crate::cli::Config;
use crate::harness::{Bench, HttpClient};
use crate::http::Request;
use crate::load;
use crate::report::{Report, Table};

const BOARD: &str = "rd";

/// Runs the read scenario: board JSON and `/healthz`, origin and Pushpin.
pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    bench.board(BOARD, config.players).await?;
    let path = format!("/boards/{BOARD}/");
    let mut table = Table::new(
        "Reads: the board as JSON (GET /boards/{id}/), and GET /healthz (no database)",
        &LOAD_HEADER,
    );
    let mut results = Vec::new();
    for &c in &config.concurrency {
        for (name, port, path) in [
            ("origin", bench.origin_port(), path.as_str()),
            ("pushpin → origin", bench.pushpin_port(), path.as_str()),
            ("origin /healthz", bench.origin_port(), "/healthz"),
            (
                "pushpin → origin /healthz",
                bench.pushpin_port(),
                "/healthz",
            ),
        ] {
            let requests = Arc::new(vec![Request::get_json(port, path)]);
            let clients = HttpClient::many(c, port, requests, 200).await?;
            let r = load::run(clients, config.timed()).await;
            check(config, &format!("board read via {name}"), &r)?;
            table.row(load_row(name, &r));
            results.push(PathResult {
                path: name.to_owned(),
                result: r,
            });
        }
    }
    report.table(table);
    report.section("read", &results);
    Ok(())
}
