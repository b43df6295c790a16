//! The worker's health and metrics over HTTP, on `STATUS_PORT`:
//!
//! - `GET /healthz`: 200 while the changefeeds are open and ready, else 503;
//!   503 too while workers with another `WORKER_SHARDS` keep this one out.
//! - `GET /metrics`: Prometheus text format.
//!
//! It is served by actix-web, the origin's HTTP stack, on a thread of its
//! own, so it shares nothing with the publish loop but the metrics. That
//! stack's accept loop pauses when accepting fails (as it does when the
//! process runs out of file descriptors) instead of spinning, and it limits
//! slow and idle clients as the origin does.

use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer};
use serde_json::json;

use crate::metrics::Metrics;

/// The status routes; they read the [`Metrics`] registered as app data.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["/healthz", "/healthz/"]).route(web::get().to(healthz)))
        .service(web::resource(["/metrics", "/metrics/"]).route(web::get().to(metrics)))
        .default_service(web::to(|| async {
            HttpResponse::NotFound().json(json!({ "error": "not_found" }))
        }));
}

async fn healthz(metrics: Data<Metrics>) -> HttpResponse {
    let epochs: serde_json::Map<String, serde_json::Value> = metrics
        .owned()
        .into_iter()
        .map(|(shard, epoch)| (shard.to_string(), json!(epoch)))
        .collect();
    let leases = json!({
        "shards": epochs.keys().filter_map(|k| k.parse::<u16>().ok()).collect::<Vec<_>>(),
        "epochs": epochs,
        "takeovers": metrics.takeovers.get(),
        "takes": metrics.lease_takes.get(),
        "losses": metrics.lease_losses.get(),
        "releases": metrics.lease_releases.get(),
    });
    if let Some(conflict) = metrics.layout_conflict() {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "misconfigured",
            "error": conflict.message(),
            "layout": { "worker_shards": conflict.mine, "running": conflict.theirs, "members": conflict.members },
            "leases": leases,
        }));
    }
    if metrics.feed_ready.get() == 1 {
        HttpResponse::Ok().json(json!({ "status": "ok", "feeds": "ready", "leases": leases }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "feeds": "not ready", "leases": leases }))
    }
}

async fn metrics(metrics: Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        ))
        .body(metrics.render())
}

/// Serves the status routes on `listener` from a thread of its own, until
/// the process exits.
pub fn spawn(listener: TcpListener, metrics: Metrics) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            let served = actix_web::rt::System::new().block_on(async move {
                let metrics = Data::new(metrics);
                HttpServer::new(move || App::new().app_data(metrics.clone()).configure(configure))
                    .workers(1)
                    .client_request_timeout(Duration::from_secs(5))
                    .keep_alive(Duration::from_secs(5))
                    // The process's stop signal is the publish loop's.
                    .disable_signals()
                    .listen(listener)?
                    .run()
                    .await
            });
            if let Err(e) = served {
                log::error!("status server stopped: {e}");
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as actix;

    #[actix_web::test]
    async fn health_follows_the_feeds_and_metrics_are_prometheus_text() {
        let metrics = Metrics::new();
        let app = actix::init_service(
            App::new()
                .app_data(Data::new(metrics.clone()))
                .configure(configure),
        )
        .await;
        let get = |path: &'static str| actix::TestRequest::get().uri(path).to_request();

        let resp = actix::call_service(&app, get("/healthz")).await;
        assert_eq!(resp.status(), 503);
        metrics.feed_ready.set(1);
        for path in ["/healthz", "/healthz/"] {
            let resp = actix::call_service(&app, get(path)).await;
            assert_eq!(resp.status(), 200, "{path}");
            let body: serde_json::Value = actix::read_body_json(resp).await;
            assert_eq!(body["feeds"], "ready");
        }
        metrics.set_owned([(3, 7), (4, 1)].into_iter().collect());
        metrics.takeovers.inc();
        let resp = actix::call_service(&app, get("/healthz")).await;
        let body: serde_json::Value = actix::read_body_json(resp).await;
        assert_eq!(body["leases"]["shards"], serde_json::json!([3, 4]));
        assert_eq!(body["leases"]["epochs"]["3"], 7);
        assert_eq!(body["leases"]["takeovers"], 1);

        metrics.changes.inc();
        let resp = actix::call_service(&app, get("/metrics")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/plain; version=0.0.4"
        );
        let text = String::from_utf8(actix::read_body(resp).await.to_vec()).unwrap();
        assert!(
            text.contains("dblistener_changes_consumed_total 1"),
            "{text}"
        );
        assert!(text.contains("dblistener_shards_owned 2"), "{text}");
        assert!(
            text.contains("dblistener_lease_epoch{shard=\"3\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("dblistener_lease_takeovers_total 1"),
            "{text}"
        );

        metrics.set_layout_conflict(Some(crate::metrics::LayoutConflict {
            mine: 8,
            theirs: 16,
            members: vec!["a".into()],
        }));
        let resp = actix::call_service(&app, get("/healthz")).await;
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = actix::read_body_json(resp).await;
        assert_eq!(body["status"], "misconfigured");
        assert_eq!(body["layout"]["running"], 16);
        let resp = actix::call_service(&app, get("/metrics")).await;
        let text = String::from_utf8(actix::read_body(resp).await.to_vec()).unwrap();
        assert!(text.contains("dblistener_layout_refused 1"), "{text}");
        metrics.set_layout_conflict(None);
        let resp = actix::call_service(&app, get("/healthz")).await;
        assert_eq!(resp.status(), 200);

        let resp = actix::call_service(&app, get("/elsewhere")).await;
        assert_eq!(resp.status(), 404);
    }

    #[test]
    fn it_serves_on_its_own_thread() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let metrics = Metrics::new();
        metrics.feed_ready.set(1);
        spawn(listener, metrics).unwrap();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}
