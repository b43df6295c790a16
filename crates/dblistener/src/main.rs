//! `dblistener`: the worker process (the Procfile's `worker`).

use std::process::ExitCode;

use dblistener::{Settings, Worker};
use store::{PoolOptions, Store};

fn main() -> ExitCode {
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
    let worker = Worker::new(
        store,
        publisher,
        settings.grip_prefix.clone(),
        settings.publish_interval,
        metrics,
    );
    worker.run_until_stopped(service::shutdown_signal()).await;
    log::info!("stopped");
    Ok(())
}
