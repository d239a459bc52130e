//! `/status` (JSON), `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::control::Shared;

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let status = {
        let shared = shared.clone();
        move || {
            let body = serde_json::to_string_pretty(&*shared.status.read().expect("not poisoned"))
                .expect("status serialises");
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        }
    };
    let ready = {
        let shared = shared.clone();
        move || {
            let s = shared.status.read().expect("not poisoned").clone();
            async move {
                // Ready when Redis is reachable and, on a replica, replicating.
                if !s.redis_up {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "redis unreachable\n".to_string(),
                    )
                } else if s.role == "replica" && s.link != "up" {
                    let why = s.link_error.unwrap_or_default();
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("replication link down: {why}\n"),
                    )
                } else {
                    (StatusCode::OK, "ready\n".to_string())
                }
            }
        }
    };
    let metrics = move || {
        let body = tunnel::metrics::render(&registry);
        async move {
            (
                [(
                    CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                body,
            )
        }
    };
    let app = axum::Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
