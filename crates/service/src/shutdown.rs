//! The stop signal every process honours.

/// Completes when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM
/// (what Heroku, Docker and the test harness send). Each binary passes it to
/// its `run_until_stopped`, which then finishes the work under way.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => log::info!("SIGINT received; stopping"),
                _ = term.recv() => log::info!("SIGTERM received; stopping"),
            },
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the process");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
