//! The per-region agent: the sidecar next to each region's Redis.
//!
//! ```text
//!             ┌──────────────── agent (one per region) ────────────────┐
//!  other  ══► │ tunnel server ──────────────────────────► Redis (local) │
//!  regions    │ tunnel clients ◄── 127.0.0.1:(base+i) ◄── Redis replicaof│
//!             │ control loop: role, ACL, config  ·  heartbeat / lag    │
//!             │ HTTP (open): /metrics /healthz /readyz                 │
//!             │ control (token): /status POST /failover POST /promote  │
//!             └────────────────────────────────────────────────────────┘
//! ```
//!
//! The decisions are pure — who is primary ([`cluster_view`]), what to change in Redis ([`plan`]),
//! the steps of a change of primary ([`change`]) — and this crate's tasks observe Redis and carry
//! them out. The same [`run`] serves a Kubernetes pod and `georep up`: only the flags differ.
//!
//! ```text
//! lib.rs        run: binds, spawns the tasks below, waits for shutdown
//! control.rs    the control loop: observe → decide → act → report (report.rs)
//! switchover.rs the driver of the change machines (change.rs) for POST /failover, /promote
//! heartbeat.rs  the primary's stamps and the replicas' lag
//! http.rs       /status /metrics /healthz /readyz /failover /promote; ChangeError → HTTP status
//! commands.rs   every Redis command the agent sends
//! epoch_guard.rs absurd epochs in georep:meta ignored, logged and counted
//! shared.rs     what the tasks share: the config and watch channels (ClusterView, status, …)
//! client.rs     the other side: an HTTP client for the CLI (status, failover, promote)
//! relay_placement.rs / relay_fallback.rs  the region's relay; past it while it cannot store
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod apps;
mod audit;
pub mod change;
pub mod client;
pub mod cluster_view;
mod commands;
mod config;
mod control;
pub mod credentials;
mod epoch_guard;
pub mod exported;
mod heartbeat;
mod http;
mod metrics;
pub mod plan;
pub mod pod_conf;
mod relay_fallback;
pub mod relay_placement;
mod report;
pub mod secrets;
pub mod shared;
pub mod shutdown;
pub mod state;
pub mod status;
mod switchover;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use topology::RegionId;
use tunnel::{Address, Listener, Mode, TunnelConfig, TunnelMetrics};

pub use config::AgentConfig;
pub use credentials::{Passwords, Secret};
pub use relay_placement::{RelayPlacement, RelayStatus};
/// A `HOST:PORT` the Sentinel port gives applications (`--announce-redis`, `--announce-endpoint`).
pub use sentinel::Addr as AnnounceAddr;
pub use shutdown::{Shutdown, ShutdownTrigger};
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
pub async fn run(config: AgentConfig, shutdown: impl Into<Shutdown>) -> Result<(), AgentError> {
    let shutdown: Shutdown = shutdown.into();
    let listeners = Listeners::bind(&config).await?;
    let mut registry = Registry::with_prefix("georep");
    let agent_metrics = metrics::AgentMetrics::register(&mut registry);
    let tunnel_metrics =
        TunnelMetrics::register_per_link(registry.sub_registry_with_prefix("tunnel"));
    let relay = match &config.relay {
        Some(p) => Some(relay_placement::bind(&config, p, &mut registry).await?),
        None => None,
    };

    let mut tasks = tokio::task::JoinSet::new();
    let links = spawn_tunnels(
        &mut tasks,
        &config,
        listeners.tunnel,
        listeners.peers,
        &tunnel_metrics,
        &shutdown,
    );
    tracing::info!(
        region = config.region_name(),
        redis = %config.redis,
        tunnel = %config.tunnel_listen,
        http = %config.http,
        control = ?config.control,
        "agent ready"
    );
    let shared = Arc::new(shared::Shared::new(config, agent_metrics, links));
    if let Some((bound, handle)) = relay {
        let _ = shared.relay.set(handle);
        relay_placement::spawn(&mut tasks, bound, &shared, &tunnel_metrics, &shutdown);
    }
    tasks.spawn(control::run(shared.clone(), shutdown.clone()));
    tasks.spawn(heartbeat::write(shared.clone(), shutdown.clone()));
    tasks.spawn(heartbeat::read(shared.clone(), shutdown.clone()));
    spawn_app_ports(
        &mut tasks,
        &shared,
        &mut registry,
        listeners.primary_endpoint,
        listeners.sentinel,
        &shutdown,
    );
    if let Some(listener) = listeners.control {
        spawn_control_api(&mut tasks, &shared, &mut registry, listener, &shutdown);
    }
    spawn_metrics_http(&mut tasks, shared, registry, listeners.http, &shutdown);
    while tasks.join_next().await.is_some() {}
    tracing::info!("agent stopped");
    Ok(())
}

/// Every socket the agent listens on, bound before any task starts.
struct Listeners {
    http: tokio::net::TcpListener,
    control: Option<tokio::net::TcpListener>,
    tunnel: Listener,
    primary_endpoint: Option<tokio::net::TcpListener>,
    sentinel: Option<tokio::net::TcpListener>,
    /// Our tunnel client to each other region, with its name.
    peers: Vec<(RegionId, String, Listener)>,
}

impl Listeners {
    /// In this order (the first one taken is the one an error names).
    async fn bind(config: &AgentConfig) -> Result<Self, AgentError> {
        let http = bind_tcp("HTTP", config.http).await?;
        let control = bind_optional("control", config.control).await?;
        let tunnel = bind_tunnel("tunnel", &config.tunnel_listen).await?;
        let primary_endpoint = bind_optional("primary endpoint", config.primary_endpoint).await?;
        let sentinel = bind_optional("Sentinel", config.sentinel).await?;
        let mut peers = Vec::new();
        for region in config.other_regions() {
            let addr = Address::Ip(config.peer_addr(region));
            let l = bind_tunnel("peer", &addr).await?;
            peers.push((region, config.topology.regions[region].name.clone(), l));
        }
        Ok(Self {
            http,
            control,
            tunnel,
            primary_endpoint,
            sentinel,
            peers,
        })
    }
}

fn bind_error(what: &'static str, addr: String) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Bind { what, addr, source }
}

async fn bind_tcp(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, AgentError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error(what, addr.to_string()))
}

async fn bind_optional(
    what: &'static str,
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<tokio::net::TcpListener>, AgentError> {
    match addr {
        Some(addr) => bind_tcp(what, addr).await.map(Some),
        None => Ok(None),
    }
}

async fn bind_tunnel(what: &'static str, addr: &Address) -> Result<Listener, AgentError> {
    Listener::bind(addr)
        .await
        .map_err(bind_error(what, addr.to_string()))
}

/// The tunnel server in front of our Redis and one tunnel client per other region; returns the
/// clients' metrics by region (a link's failure reason in `/status`).
fn spawn_tunnels(
    tasks: &mut tokio::task::JoinSet<()>,
    config: &AgentConfig,
    server: Listener,
    clients: Vec<(RegionId, String, Listener)>,
    tunnel_metrics: &TunnelMetrics,
    shutdown: &Shutdown,
) -> std::collections::HashMap<RegionId, TunnelMetrics> {
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
    let mut links = std::collections::HashMap::new();
    for (region, name, listener) in clients {
        let mut out = TunnelConfig::new(
            Mode::Encrypt,
            config.peer_endpoints[region.index()].clone(),
            config.keys.clone(),
        );
        out.max_connections = None;
        out.shutdown_grace = Duration::from_secs(1);
        let metrics = tunnel_metrics.for_link(&name);
        links.insert(region, metrics.clone());
        tasks.spawn(keep_tunnel(out, listener, metrics, shutdown.clone()));
    }
    links
}

/// The control API behind the operator-token gate.
fn spawn_control_api(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: &Arc<shared::Shared>,
    registry: &mut Registry,
    listener: tokio::net::TcpListener,
    shutdown: &Shutdown,
) {
    let gate = httpd::auth::Gate::new(shared.config.operator_tokens.clone(), registry);
    let limits = httpd::Limits::control();
    registry.register(
        "control_connections_refused",
        "Control connections closed at once: connection limit reached",
        limits.refused.clone(),
    );
    let router = http::control_router(shared.clone(), &gate);
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = http::serve(listener, router, limits, stop).await {
            tracing::error!(error = %e, "control HTTP server failed");
        }
    });
}

/// The open listener: `/metrics`, `/healthz`, `/readyz`. Registered last, so it serves every
/// metric registered before.
fn spawn_metrics_http(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: Arc<shared::Shared>,
    mut registry: Registry,
    listener: tokio::net::TcpListener,
    shutdown: &Shutdown,
) {
    let limits = httpd::Limits::open();
    registry.register(
        "http_connections_refused",
        "Metrics connections closed at once: connection limit reached",
        limits.refused.clone(),
    );
    let router = http::metrics_router(shared, Arc::new(registry));
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = http::serve(listener, router, limits, stop).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
}

/// The primary endpoint and the Sentinel port, each on the listener bound for it (if any), fed
/// by one task that follows the cluster view ([`apps`]). Sentinel clients authenticate as the
/// `app` user, with its password from the credentials directory.
fn spawn_app_ports(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: &Arc<shared::Shared>,
    registry: &mut Registry,
    primary_endpoint: Option<tokio::net::TcpListener>,
    sentinel_port: Option<tokio::net::TcpListener>,
    shutdown: &Shutdown,
) {
    if primary_endpoint.is_none() && sentinel_port.is_none() {
        return;
    }
    let c = &shared.config;
    let view = shared.view();
    let (routes, route) = tokio::sync::watch::channel(apps::route(c, &view));
    let (views, sentinel_view) = tokio::sync::watch::channel(apps::sentinel_view(c, &view));
    if let Some(listener) = primary_endpoint {
        let metrics =
            endpoint::EndpointMetrics::register(registry.sub_registry_with_prefix("endpoint"));
        let stop = shutdown.receiver();
        let busy_poll = c.endpoint_busy_poll;
        tracing::info!(
            addr = ?listener.local_addr().ok(),
            redis_socket = ?c.redis_socket,
            ?busy_poll,
            "primary endpoint ready"
        );
        tasks.spawn(async move {
            let limits = endpoint::Limits {
                busy_poll,
                ..endpoint::Limits::default()
            };
            if let Err(e) = endpoint::serve(listener, route, limits, metrics, stop).await {
                tracing::error!(error = %e, "primary endpoint failed");
            }
        });
    }
    if let Some(listener) = sentinel_port {
        let metrics =
            sentinel::SentinelMetrics::register(registry.sub_registry_with_prefix("sentinel"));
        let auth = sentinel::Credentials {
            user: region_spec::credentials::APP_USER.to_owned(),
            password: c.passwords.app.expose().to_owned(),
        };
        let stop = shutdown.receiver();
        tracing::info!(addr = ?listener.local_addr().ok(), "Sentinel port ready");
        tasks.spawn(async move {
            let limits = sentinel::Limits::default();
            if let Err(e) =
                sentinel::serve(listener, sentinel_view, Some(auth), limits, metrics, stop).await
            {
                tracing::error!(error = %e, "Sentinel port failed");
            }
        });
    }
    tasks.spawn(apps::follow(
        c.clone(),
        shared.watch_view(),
        routes,
        views,
        shutdown.clone(),
    ));
}

/// Runs one tunnel. A target that does not resolve yet (a load balancer still being created) is
/// retried every 2 s instead of failing the agent.
pub(crate) async fn keep_tunnel(
    config: TunnelConfig,
    listener: Listener,
    metrics: TunnelMetrics,
    mut shutdown: Shutdown,
) {
    loop {
        match config.target.resolve().await {
            None | Some(Ok(_)) => break,
            Some(Err(e)) => {
                tracing::warn!(target = %config.target, error = %e, "cannot resolve tunnel target; retrying in 2s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
    if let Err(e) = tunnel::run(config, listener, metrics, shutdown.receiver()).await {
        tracing::error!(error = %e, "tunnel stopped");
    }
}

/// Wall-clock milliseconds since the Unix epoch (heartbeat stamps, change reports).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
