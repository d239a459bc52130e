//! The agent's two HTTP surfaces.
//!
//! - metrics (`--http`): `GET /metrics`, `/healthz`, `/readyz`, open to scrapers and probes;
//! - control (`--control`): `/status` detail, `POST /failover`, `POST /promote`, behind an
//!   operator token ([`httpd::auth::Gate`]); in a pod bound to 127.0.0.1 only.

use std::sync::Arc;
use std::time::Duration;

use crate::change::ChangeError;
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::status::{Link, PrimaryChange, Role};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Extension;
use httpd::auth::{Gate, Operator};
use httpd::Peer;
use prometheus_client::registry::Registry;

/// The longest switchover timeout a request may ask for: with the steps after the catch-up,
/// a change stays well inside [`httpd::Limits::control`]'s exchange timeout.
const MAX_FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a handler waits for a change of primary before answering 504; the change itself
/// runs on to its end on its own task. Below the control listener's exchange timeout, so the
/// client always gets an answer.
const CHANGE_WAIT: Duration = Duration::from_secs(80);

/// The metrics listener: what Prometheus and the kubelet need, read-only, no detail an operator
/// token protects.
pub(crate) fn metrics_router(shared: Arc<Shared>, registry: Arc<Registry>) -> axum::Router {
    let ready = {
        move || {
            let s = shared.status.borrow().clone();
            async move {
                match unready(&s) {
                    Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                    None => (StatusCode::OK, "ready\n".to_string()),
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
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
}

/// Why this region is not ready, or `None`: Redis reachable, a primary unfenced, a replica
/// replicating, and the last control round carried out.
pub(crate) fn unready(s: &crate::status::RegionStatus) -> Option<String> {
    if !s.redis_up {
        Some("redis unreachable".to_owned())
    } else if let Some(why) = s.fenced.as_ref().filter(|_| s.role == Role::Primary) {
        Some(format!("fenced: {why}"))
    } else if s.role == Role::Replica && s.link != Link::Up {
        let why = s.link_error.clone().unwrap_or_default();
        Some(format!("replication link down: {why}"))
    } else {
        s.error
            .as_ref()
            .map(|e| format!("control loop failing: {e}"))
    }
}

/// The control listener: `/status` detail and the changes of primary, every request through
/// `gate` (bearer token, no cross-site request, no body).
pub(crate) fn control_router(shared: Arc<Shared>, gate: &Gate) -> axum::Router {
    gate.guard(
        axum::Router::new()
            .route("/failover", post(failover))
            .route("/promote", post(promote))
            .route("/status", get(status))
            .with_state(shared),
    )
}

/// The JSON header every control reply carries.
type JsonHeader = [(axum::http::HeaderName, &'static str); 1];

/// `GET /status`: the last round's status, with the audit ring as it is now (an attempt shows
/// at once).
async fn status(State(shared): State<Arc<Shared>>) -> (JsonHeader, String) {
    let mut status = shared.status.borrow().clone();
    status.changes = crate::audit::ring(&shared);
    ([(CONTENT_TYPE, "application/json")], json(&status))
}

/// `POST /failover?to=REGION[&timeout_ms=N]`: a planned switchover, audited.
async fn failover(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Extension(operator): Extension<Operator>,
    uri: Uri,
) -> (StatusCode, JsonHeader, String) {
    let q = query(&uri);
    let to = q.iter().find(|(k, _)| k == "to").map(|(_, v)| v.clone());
    let target = to.clone().unwrap_or_default();
    let result = match (to, failover_timeout(&q)) {
        (None, _) => Err(bad_request("missing ?to=REGION")),
        (_, Err(e)) => Err(e),
        (Some(to), Ok(timeout)) => {
            bounded(crate::switchover::failover(shared.clone(), to, timeout)).await
        }
    };
    crate::audit::record(&shared, peer, &operator, "failover", &target, &result);
    reply(result)
}

/// `timeout_ms` of a failover request: 5 s when absent, at most [`MAX_FAILOVER_TIMEOUT`].
fn failover_timeout(q: &[(String, String)]) -> Result<Duration, ChangeError> {
    let Some((_, v)) = q.iter().find(|(k, _)| k == "timeout_ms") else {
        return Ok(Duration::from_secs(5));
    };
    match v.parse() {
        Ok(ms) if Duration::from_millis(ms) <= MAX_FAILOVER_TIMEOUT => {
            Ok(Duration::from_millis(ms))
        }
        Ok(_) => Err(bad_request(&format!(
            "timeout_ms may be at most {}",
            MAX_FAILOVER_TIMEOUT.as_millis()
        ))),
        Err(_) => Err(bad_request("timeout_ms must be an integer")),
    }
}

/// `POST /promote?force=1`: an emergency promotion of this region, audited.
async fn promote(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Extension(operator): Extension<Operator>,
    uri: Uri,
) -> (StatusCode, JsonHeader, String) {
    let forced = query(&uri).iter().any(|(k, v)| k == "force" && v == "1");
    let result = if forced {
        bounded(crate::switchover::promote(shared.clone())).await
    } else {
        Err(bad_request(
            "an emergency promotion may lose writes the old primary acknowledged; \
             add ?force=1 (georep promote REGION --force)",
        ))
    };
    let me = shared.config.region_name().to_owned();
    crate::audit::record(&shared, peer, &operator, "promote", &me, &result);
    reply(result)
}

/// Serves `router` on `listener` within `limits` until shutdown.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: httpd::Limits,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    httpd::serve(
        listener,
        router,
        limits,
        async move { shutdown.wait().await },
    )
    .await
}

/// Waits for a change at most [`CHANGE_WAIT`] (the change continues on its own task).
async fn bounded(
    change: impl std::future::Future<Output = Result<PrimaryChange, ChangeError>>,
) -> Result<PrimaryChange, ChangeError> {
    tokio::time::timeout(CHANGE_WAIT, change)
        .await
        .unwrap_or_else(|_| {
            Err(ChangeError::Failed(format!(
                "no result within {CHANGE_WAIT:?}; the change goes on: see georep status"
            )))
        })
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
        | ChangeError::PrimaryServing { .. }
        | ChangeError::EpochExhausted(_) => StatusCode::CONFLICT,
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
fn reply(result: Result<PrimaryChange, ChangeError>) -> (StatusCode, JsonHeader, String) {
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
