//! `dblistener`: the worker process (the Procfile's `worker`).

use std::process::ExitCode;

use clap::Parser;
use dblistener::{LeaseKeeper, RankKeeper, Settings, Worker};
use store::{PoolOptions, Store};

/// The leaderboard's worker: follows the database's changefeeds for the
/// shards whose leases it holds, publishes each changed board to the GRIP
/// proxy, and keeps the boards' rank digests. Configuration comes from the
/// environment and `.env` (see docs/configuration.md); it runs until
/// SIGINT or SIGTERM, then hands its leases back.
#[derive(Debug, Parser)]
#[command(name = "dblistener", version)]
struct Cli {}

fn main() -> ExitCode {
    // `--help` and `--version` answer and exit; anything else unknown is
    // refused rather than taken for a start.
    let Cli {} = Cli::parse();
    if let Err(e) = service::config::load_dotenv() {
        eprintln!("dblistener: {e}");
        return ExitCode::from(2);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dblistener: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dblistener: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dblistener: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    log::info!("starting with {settings:?}");
    let store = Store::new(
        settings.database_url.clone(),
        PoolOptions {
            schema: settings.table_layout,
            ..PoolOptions::default()
        },
    );
    let publisher = grip::Publisher::new(settings.grip_urls.clone())?;
    let metrics = dblistener::Metrics::new();
    if let Some(port) = settings.status_port {
        let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
        log::info!(
            "status on http://{}/healthz and /metrics",
            listener.local_addr()?
        );
        dblistener::status::spawn(listener, metrics.clone())?;
    }
    let worker_id = settings
        .worker_id
        .clone()
        .unwrap_or_else(dblistener::leases::default_worker_id);
    log::info!("worker id {worker_id}");
    let publish_log = settings.publish_log.clone();
    let (keeper, leases) = LeaseKeeper::new(
        store.clone(),
        worker_id.clone(),
        settings.worker_shards,
        settings.lease_ttl,
        metrics.clone(),
    );
    let (ranks, rank_events) = RankKeeper::new(
        store.clone(),
        settings.worker_shards,
        leases.clone(),
        metrics.clone(),
    );
    let publisher = dblistener::publog::LoggedPublisher::open(
        publisher,
        publish_log.as_deref(),
        worker_id,
        settings.grip_prefix.clone(),
        settings.worker_shards,
        leases.clone(),
    )?;
    let worker = Worker::new(
        store,
        publisher,
        settings.grip_prefix.clone(),
        settings.publish_interval,
        settings.worker_shards,
        leases,
        metrics,
    );
    let worker = if settings.rank_digests {
        worker.with_ranks(rank_events)
    } else {
        log::info!("RANK_DIGESTS=false: keeping no rank digests");
        drop(rank_events);
        worker
    };
    // The stop signal stops the publish loop first; only then does the
    // keeper hand the leases back, so nothing is published after.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_rx_publish = stop_rx.clone();
    let mut stop_rx_ranks = stop_rx.clone();
    tokio::join!(
        ranks.run_until_stopped(async move {
            let _ = stop_rx_ranks.wait_for(|stop| *stop).await;
        }),
        async move {
            worker
                .run_until_stopped(async move {
                    let _ = stop_rx_publish.wait_for(|stop| *stop).await;
                })
                .await;
            let _ = done_tx.send(());
        },
        keeper.run_until_stopped(async move {
            let _ = done_rx.await;
        }),
        async move {
            service::shutdown_signal().await;
            log::info!("stopping: handing the leases back");
            let _ = stop_tx.send(true);
        },
    );
    log::info!("stopped");
    Ok(())
}
