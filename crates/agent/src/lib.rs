//! The per-region agent: the sidecar next to each region's Redis.
//!
//! ```text
//!             ┌──────────────── agent (one per region) ────────────────┐
//!  other  ══► │ tunnel server ──────────────────────────► Redis (local) │
//!  regions    │ tunnel clients ◄── 127.0.0.1:(base+i) ◄── Redis replicaof│
//!             │ control loop: role, ACL, config  ·  heartbeat / lag    │
//!             │ HTTP: /status /metrics /healthz /readyz                │
//!             │       POST /failover (planned)  POST /promote (forced) │
//!             └────────────────────────────────────────────────────────┘
//! ```
//!
//! The decisions are pure ([`plan`]); this crate's tasks observe Redis and carry them out. The same
//! [`run`] serves a Kubernetes pod and `georep up`: only the flags differ.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster_view;
mod config;
mod control;
pub mod credentials;
pub mod exported;
mod heartbeat;
mod http;
mod metrics;
pub mod plan;
pub mod redis_conf;
pub mod state;
pub mod status;
mod switchover;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tunnel::{Address, Listener, Mode, TunnelConfig, TunnelMetrics};

pub use config::AgentConfig;
pub use credentials::{Passwords, Secret};
pub use status::RegionStatus;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A listening socket could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` turns true. Binds every listener first, so configuration and
/// port errors surface before anything else starts.
pub async fn run(config: AgentConfig, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    let bind = |what, addr: String| move |source| AgentError::Bind { what, addr, source };
    let http = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(bind("HTTP", config.http.to_string()))?;
    let server = Listener::bind(&config.tunnel_listen)
        .await
        .map_err(bind("tunnel", config.tunnel_listen.to_string()))?;
    let mut clients = Vec::new();
    for (i, region) in config.topology.regions.iter().enumerate() {
        if i != config.region {
            let addr = Address::Ip(config.peer_addr(i));
            let l = Listener::bind(&addr)
                .await
                .map_err(bind("peer", addr.to_string()))?;
            clients.push((i, region.name.clone(), l));
        }
    }

    let mut registry = Registry::with_prefix("georep");
    let agent_metrics = metrics::AgentMetrics::register(&mut registry);
    let tunnel_metrics =
        TunnelMetrics::register_per_link(registry.sub_registry_with_prefix("tunnel"));
    let mut links = std::collections::HashMap::new();

    let mut tasks = tokio::task::JoinSet::new();
    // Inbound: other regions' agents (and their Redis replicas) reach our Redis.
    let mut inbound = TunnelConfig::new(
        Mode::Decrypt,
        Address::Ip(config.redis),
        config.keys.clone(),
    );
    inbound.max_connections = None;
    // When the agent stops, Redis's replication connections through it end anyway; a long drain
    // would only delay the pod's shutdown.
    inbound.shutdown_grace = Duration::from_secs(1);
    tasks.spawn(keep_tunnel(
        inbound,
        server,
        tunnel_metrics.for_link("inbound"),
        shutdown.clone(),
    ));
    // Outbound: one client per other region, on the port-map address.
    for (i, name, listener) in clients {
        let mut out = TunnelConfig::new(
            Mode::Encrypt,
            config.peer_endpoints[i].clone(),
            config.keys.clone(),
        );
        out.max_connections = None;
        out.shutdown_grace = Duration::from_secs(1);
        let metrics = tunnel_metrics.for_link(&name);
        links.insert(i, metrics.clone());
        tasks.spawn(keep_tunnel(out, listener, metrics, shutdown.clone()));
    }

    tracing::info!(
        region = config.region_name(),
        redis = %config.redis,
        tunnel = %config.tunnel_listen,
        http = %config.http,
        "agent ready"
    );
    let known = control::Shared::persisted(&config).unwrap_or(cluster_view::Known {
        epoch: 1,
        primary: config.topology.primary,
    });
    let shared = Arc::new(control::Shared {
        config,
        status: RwLock::new(RegionStatus::default()),
        metrics: agent_metrics,
        lag: Mutex::new(plan::LagTracker::default()),
        known: RwLock::new(known),
        // Until the first round has looked at the other regions, nothing is confirmed.
        fenced: RwLock::new(Some("starting".into())),
        round_lock: tokio::sync::Mutex::new(()),
        change_in_progress: Mutex::new(None),
        last_change: RwLock::new(None),
        last_offsets: Mutex::new(None),
        links,
    });
    tasks.spawn(control::run(shared.clone(), shutdown.clone()));
    tasks.spawn(heartbeat::write(shared.clone(), shutdown.clone()));
    tasks.spawn(heartbeat::read(shared.clone(), shutdown.clone()));
    let registry = Arc::new(registry);
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = http::serve(http, shared, registry, http_shutdown).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    while tasks.join_next().await.is_some() {}
    tracing::info!("agent stopped");
    Ok(())
}

/// Runs one tunnel. A target that does not resolve yet (a load balancer still being created) is
/// retried every 2 s instead of failing the agent.
async fn keep_tunnel(
    config: TunnelConfig,
    listener: Listener,
    metrics: TunnelMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match config.target.resolve().await {
            None | Some(Ok(_)) => break,
            Some(Err(e)) => {
                tracing::warn!(target = %config.target, error = %e, "cannot resolve tunnel target; retrying in 2s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }
    if let Err(e) = tunnel::run(config, listener, metrics, shutdown).await {
        tracing::error!(error = %e, "tunnel stopped");
    }
}
