//! The control API of a running `georep up` (loopback only): process ids, and cutting or healing
//! the emulated WAN between two regions (`georep link cut|heal A B`). Every request carries the
//! operator token of `up`'s secrets directory, like the agents' control APIs.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use httpd::auth::Gate;
use httpd::Limits;
use prometheus_client::registry::Registry;
use topology::Topology;

use crate::regions::{set_cut, Links, Pids, Procs};

#[derive(Clone)]
struct Ctx {
    topology: Arc<Topology>,
    links: Links,
    procs: Procs,
}

/// One emulated link, as `GET /links` reports it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkView {
    /// Region whose traffic it carries.
    pub from: String,
    /// Region it reaches.
    pub to: String,
    /// The stream it carries: `redis` (Redis replication through the tunnels) or `relay`
    /// (relay to relay, `[relay]`). Absent from older `georep up`s, which had only `redis`.
    #[serde(default = "redis_stream")]
    pub stream: String,
    /// Whether it is cut.
    pub cut: bool,
    /// Bytes delivered towards `to`.
    pub bytes_up: u64,
    /// Bytes delivered back towards `from`.
    pub bytes_down: u64,
}

fn redis_stream() -> String {
    "redis".to_owned()
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    topology: Arc<Topology>,
    links: Links,
    procs: Procs,
    token: agent::client::Token,
    mut stop: agent::Shutdown,
) {
    let ctx = Ctx {
        topology,
        links,
        procs,
    };
    // The failure counter has no scraper here; the refusals are in up's log.
    let gate = Gate::new(vec![token], &mut Registry::default());
    let app = gate.guard(
        axum::Router::new()
            .route("/processes", get(processes))
            .route("/links", get(list_links))
            .route("/links/{a}/{b}/{action}", post(change_link))
            .with_state(ctx),
    );
    let _ = httpd::serve(listener, app, Limits::control(), async move {
        stop.wait().await;
    })
    .await;
}

async fn processes(State(ctx): State<Ctx>) -> Json<Vec<Pids>> {
    Json(ctx.procs.pids(&ctx.topology).await)
}

async fn list_links(State(ctx): State<Ctx>) -> Json<Vec<LinkView>> {
    Json(
        ctx.links
            .iter()
            .map(|l| {
                let s = l.handle.stats();
                LinkView {
                    from: ctx.topology.regions[l.from].name.clone(),
                    to: ctx.topology.regions[l.to].name.clone(),
                    stream: l.stream.name().to_owned(),
                    cut: l.handle.is_cut(),
                    bytes_up: s.bytes_up,
                    bytes_down: s.bytes_down,
                }
            })
            .collect(),
    )
}

async fn change_link(
    State(ctx): State<Ctx>,
    Path((a, b, action)): Path<(String, String, String)>,
) -> (StatusCode, String) {
    let (Some(ra), Some(rb)) = (ctx.topology.region(&a), ctx.topology.region(&b)) else {
        let names: Vec<&str> = ctx
            .topology
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        return (
            StatusCode::NOT_FOUND,
            format!("unknown region; regions are {}\n", names.join(", ")),
        );
    };
    if ra.index == rb.index {
        return (
            StatusCode::BAD_REQUEST,
            "a link joins two different regions\n".into(),
        );
    }
    let cut = match action.as_str() {
        "cut" => true,
        "heal" => false,
        _ => return (StatusCode::NOT_FOUND, "action must be cut or heal\n".into()),
    };
    set_cut(&ctx.links, ra.index.index(), rb.index.index(), cut);
    tracing::info!(a = %a, b = %b, action = %action, "WAN link changed");
    (StatusCode::OK, format!("{action}: {a} <-> {b}\n"))
}
