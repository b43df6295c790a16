//! End-to-end latency with the audience spread over two Pushpins (each
//! routing to two origins), at up to 10,000 subscribers: a score-add to the
//! origin, published by the worker to both Pushpins, against a raw publish
//! sent to both Pushpins' publish endpoints at once, on the same streams.
//! Subscriber `i` holds its stream through Pushpin `i mod 2`, each on a
//! connection of its own; see the e2e scenario for how rounds are timed.

use super::e2e::{fan_out, fan_out_header, fan_out_row};
use crate::cli::Config;
use crate::harness::Bench;
use crate::report::{Report, Table};

const BOARD: &str = "wide";

/// Runs end-to-end rounds with subscribers spread over two Pushpins.
pub async fn run(bench: &mut Bench, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let pushpins = bench.proxies().len();
    anyhow::ensure!(
        pushpins >= 2,
        "the stack has {pushpins} Pushpin(s), not two"
    );
    if bench.workers.is_empty() {
        bench.scale_workers(1).await?;
    }
    let results = fan_out(bench, config, BOARD, &config.wide_subscribers).await?;
    let mut table = Table::new(
        &format!(
            "End-to-end over {pushpins} Pushpins: score-add response → event, beside a raw publish to every Pushpin → event"
        ),
        &fan_out_header(&["pushpins"]),
    );
    for r in &results {
        let mut cells = vec![pushpins.to_string()];
        cells.extend(fan_out_row(r, r.e2e.p99_us / r.raw.p99_us));
        table.row(cells);
    }
    report.table(table);
    report.section(
        "two_pushpins",
        serde_json::json!({"pushpins": pushpins, "fan_out": results}),
    );
    Ok(())
}
