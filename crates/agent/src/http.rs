//! `/status` (JSON), `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use crate::change::ChangeError;
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::status::{Link, PrimaryChange, Role};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let status = {
        let shared = shared.clone();
        move || {
            let body = json(&*shared.status.borrow());
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        }
    };
    let ready = {
        let shared = shared.clone();
        move || {
            let s = shared.status.borrow().clone();
            async move {
                // Ready when Redis is reachable and, on a replica, replicating.
                if !s.redis_up {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "redis unreachable\n".to_string(),
                    )
                } else if let Some(why) = s.fenced.filter(|_| s.role == Role::Primary) {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("fenced: {why}\n"))
                } else if s.role == Role::Replica && s.link != Link::Up {
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
                return reply(Err(bad_request("missing ?to=REGION")));
            };
            let timeout = match q.iter().find(|(k, _)| k == "timeout_ms") {
                None => Duration::from_secs(5),
                Some((_, v)) => match v.parse() {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => return reply(Err(bad_request("timeout_ms must be an integer"))),
                },
            };
            reply(crate::switchover::failover(shared, to, timeout).await)
        }
    };
    let promote = {
        let shared = shared.clone();
        move |uri: Uri| async move {
            let forced = query(&uri).iter().any(|(k, v)| k == "force" && v == "1");
            if !forced {
                return reply(Err(bad_request(
                    "an emergency promotion may lose writes the old primary acknowledged; \
                     add ?force=1 (georep promote REGION --force)",
                )));
            }
            reply(crate::switchover::promote(shared).await)
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
            shutdown.wait().await;
        })
        .await
}

fn bad_request(message: &str) -> ChangeError {
    ChangeError::BadRequest(message.to_owned())
}

/// The HTTP status of a refused or failed change of primary: the only place the change logic
/// meets HTTP.
fn status_of(e: &ChangeError) -> StatusCode {
    match e {
        ChangeError::BadRequest(_) | ChangeError::UnknownRegion(_) => StatusCode::BAD_REQUEST,
        ChangeError::Busy(_)
        | ChangeError::SwitchoverInProgress(_)
        | ChangeError::NotPrimary { .. }
        | ChangeError::AlreadyPrimary { .. }
        | ChangeError::NotWritable(_)
        | ChangeError::TargetNotReady(_)
        | ChangeError::PrimaryServing { .. } => StatusCode::CONFLICT,
        ChangeError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ChangeError::CatchUpTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Pretty JSON of a reply; these types always serialise.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A change of primary's answer: the change as JSON, or `{"error": …}` with the error's status.
fn reply(
    result: Result<PrimaryChange, ChangeError>,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let headers = [(CONTENT_TYPE, "application/json")];
    match result {
        Ok(change) => (StatusCode::OK, headers, json(&change)),
        Err(e) => (
            status_of(&e),
            headers,
            serde_json::json!({ "error": e.to_string() }).to_string(),
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
