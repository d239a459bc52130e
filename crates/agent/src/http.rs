//! `/status` (JSON), `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::routing::{get, post};
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
                } else if let Some(why) = s.fenced.filter(|_| s.role == "primary") {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("fenced: {why}\n"))
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
    let failover = {
        let shared = shared.clone();
        move |uri: Uri| async move {
            let q = query(&uri);
            let Some(to) = q.iter().find(|(k, _)| k == "to").map(|(_, v)| v.clone()) else {
                return reply(Err(refusal(400, "missing ?to=REGION")));
            };
            let timeout = match q.iter().find(|(k, _)| k == "timeout_ms") {
                None => Duration::from_secs(5),
                Some((_, v)) => match v.parse() {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => return reply(Err(refusal(400, "timeout_ms must be an integer"))),
                },
            };
            reply(crate::switchover::failover(&shared, &to, timeout).await)
        }
    };
    let promote = {
        let shared = shared.clone();
        move |uri: Uri| async move {
            let forced = query(&uri).iter().any(|(k, v)| k == "force" && v == "1");
            if !forced {
                return reply(Err(refusal(
                    400,
                    "an emergency promotion may lose writes the old primary acknowledged; \
                     add ?force=1 (georep promote REGION --force)",
                )));
            }
            reply(crate::switchover::promote(&shared).await)
        }
    };
    let app = axum::Router::new()
        .route("/failover", post(failover))
        .route("/promote", post(promote))
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

fn refusal(status: u16, message: &str) -> crate::switchover::Refusal {
    crate::switchover::Refusal {
        status,
        message: message.to_owned(),
    }
}

/// A change of primary's answer: the change as JSON, or `{"error": …}` with the refusal's status.
fn reply(
    result: Result<crate::status::PrimaryChange, crate::switchover::Refusal>,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let json = [(CONTENT_TYPE, "application/json")];
    match result {
        Ok(change) => (
            StatusCode::OK,
            json,
            serde_json::to_string_pretty(&change).expect("serialises"),
        ),
        Err(r) => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json,
            serde_json::json!({ "error": r.message }).to_string(),
        ),
    }
}

/// `a=1&b=2` as pairs (no percent-decoding: region names are plain).
fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}
