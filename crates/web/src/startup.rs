//! Building and running the origin.

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Condition, Logger, NormalizePath, TrailingSlash};
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use service::Backoff;
use store::{PoolOptions, Store, StoreError};

use crate::body::BodyConfig;
use crate::config::Cors as CorsSetting;
use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;
use crate::stream::StreamSettings;

/// The runtime of the store's connections (their readers and writers; the
/// queries run in the requests' tasks): one thread of its own, for the life
/// of the process. actix-web runs each worker on a
/// runtime of its own and stops idle ones first at shutdown; a shared
/// database connection whose tasks lived there would die under the
/// requests still finishing on other workers.
fn database_runtime() -> std::io::Result<tokio::runtime::Handle> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("database")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| runtime).handle().clone())
}

/// The origin's HTTP server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `HOST:PORT` and builds the server. With `PORT=0` the system
    /// picks a free port, which [`Application::port`] reports.
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();
        let store = Store::new(
            settings.database_url.clone(),
            PoolOptions {
                max_connections: settings.db_pool_size,
                query_timeout: settings.db_timeout,
                schema: settings.table_layout,
                runtime: Some(database_runtime()?),
                ..PoolOptions::default()
            },
        );
        let state = Data::new(AppState::new(
            store,
            StreamSettings {
                prefix: settings.grip_prefix.clone(),
                keep_alive: settings.keep_alive,
                recovery_timeout: settings.recovery_timeout,
                signature: settings.grip_sig.clone(),
            },
            Metrics::new(),
            settings.rank_reads,
            settings.rank_read_share,
        ));
        spawn_schema_setup(state.clone());
        let body = BodyConfig {
            timeout: settings.body_timeout,
            ..BodyConfig::default()
        };
        let write_auth = settings.write_auth.clone();
        let cors = settings.cors.clone();
        let access_log = settings.access_log;
        let mut server = HttpServer::new(move || {
            let metrics = state.metrics.clone();
            App::new()
                .app_data(state.clone())
                .app_data(write_auth.clone())
                .app_data(body.clone())
                // Outermost: sees every answer, errors and CORS included.
                .wrap_fn(move |req, srv| {
                    let started = std::time::Instant::now();
                    let method = req.method().clone();
                    let metrics = metrics.clone();
                    let call = actix_web::dev::Service::call(srv, req);
                    async move {
                        let res = call.await?;
                        let route = res
                            .request()
                            .match_pattern()
                            .unwrap_or_else(|| "unmatched".into());
                        if let Some(err) = res
                            .response()
                            .error()
                            .and_then(|e| e.as_error::<ApiError>())
                        {
                            if let Some(kind) = err.database_error_kind() {
                                metrics.database_error(kind);
                            }
                        }
                        metrics.observe(
                            &route,
                            method.as_str(),
                            res.status().as_u16(),
                            started.elapsed(),
                        );
                        Ok(res)
                    }
                })
                .wrap(cors_middleware(&cors))
                .wrap(NormalizePath::new(TrailingSlash::Always))
                .wrap(Condition::new(
                    access_log,
                    Logger::new("%a \"%r\" %s %b %Dms"),
                ))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        // Slow or idle clients must not pin workers: headers within 5 s,
        // idle keep-alive connections closed after 5 s (bodies are limited
        // by BODY_TIMEOUT_SECS as they are read). A graceful stop waits for
        // open connections, so the keep-alive also bounds how long a
        // SIGTERM takes when the proxy keeps idle connections open.
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(2))
        .keep_alive(Duration::from_secs(5))
        // The stop signal is the caller's: see `run_until_stopped`.
        .disable_signals()
        .shutdown_timeout(25);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self { port, server })
    }

    /// The port bound (the one picked by the system when `PORT=0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes, then stops accepting and lets the
    /// requests in flight finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = self.server;
        tokio::pin!(server);
        tokio::select! {
            stopped = &mut server => stopped,
            () = shutdown => {
                // The server future carries out the stop: poll both.
                let ((), stopped) = tokio::join!(handle.stop(true), server);
                stopped
            }
        }
    }
}

/// CORS for browser pages on other origins. Preflights are answered here;
/// `Location` is exposed so a page can follow a creation.
fn cors_middleware(setting: &CorsSetting) -> actix_cors::Cors {
    let base = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "DELETE"])
        .allowed_headers([
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::ACCEPT,
            actix_web::http::header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([actix_web::http::header::LOCATION])
        .max_age(3600);
    match setting {
        CorsSetting::None => base,
        CorsSetting::Any => base.allow_any_origin().send_wildcard(),
        CorsSetting::Origins(origins) => origins.iter().fold(base, |c, o| c.allowed_origin(o)),
    }
}

/// Creates the schema in the background, retrying with back-off, so the
/// origin starts (and answers 503) even while the database is down.
fn spawn_schema_setup(state: Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match state.store.ensure_schema().await {
                Ok(()) => {
                    state.mark_schema_ready();
                    log::info!("database schema ready at {}", state.store.url());
                    return;
                }
                Err(e) => {
                    let level = if matches!(e, StoreError::Unavailable(_)) {
                        log::Level::Warn
                    } else {
                        log::Level::Error
                    };
                    let delay = backoff.next_delay();
                    log::log!(
                        level,
                        "database schema not ready ({e}); retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    });
}
