//! Prometheus metrics for one tunnel, and a small HTTP endpoint that serves them.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Which way bytes flow, seen from this tunnel endpoint.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    /// Plaintext read locally, sealed and sent to the peer.
    Outbound,
    /// Packets received from the peer, opened and written locally.
    Inbound,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

type Labels = Vec<(&'static str, String)>;

const ACTIVE_HELP: &str = "Connections open now";
const ACCEPTED_HELP: &str = "Connections accepted";
const WAITS_HELP: &str = "Times the -n connection limit was reached and accepting paused";
const DROPS_HELP: &str =
    "Unauthenticated connections closed, oldest first, to keep within --handshake-limit or -n";

/// The most recent failure of a tunnel endpoint, for status pages ("link down: bad_mac").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable reason, as in the metric labels.
    pub reason: &'static str,
    /// Human-readable detail, with the peer address.
    pub message: String,
    /// When it happened.
    pub at: std::time::SystemTime,
}

/// The metric families, shared by every tunnel of a process (each adds its `link` label).
///
/// The four label-less series exist twice: plain, for a standalone `georep tunnel` (so they print
/// as `name value`, not `name{} value`), and as families for an agent's tunnels, which carry a
/// `link` label. Only one of the two is registered.
#[derive(Debug, Default)]
struct Families {
    active: Gauge,
    accepted: Counter,
    limit_waits: Counter,
    limit_drops: Counter,
    connections_active: Family<Labels, Gauge>,
    connections: Family<Labels, Counter>,
    connection_limit_waits: Family<Labels, Counter>,
    handshake_limit_drops: Family<Labels, Counter>,
    handshakes: Family<Labels, Counter>,
    handshake_failures: Family<Labels, Counter>,
    stream_errors: Family<Labels, Counter>,
    plaintext_bytes: Family<Labels, Counter>,
    wire_bytes: Family<Labels, Counter>,
    packets: Family<Labels, Counter>,
}

/// Counters for one tunnel endpoint. Cheap to clone; all clones update the same values.
#[derive(Debug, Clone, Default)]
pub struct TunnelMetrics {
    families: Arc<Families>,
    /// Set for the tunnels of an agent, which runs several: `link="eu-central-1"`.
    link: Option<Arc<str>>,
    last_failure: Arc<std::sync::Mutex<Option<Failure>>>,
    last_handshake: Arc<std::sync::Mutex<Option<std::time::SystemTime>>>,
}

impl TunnelMetrics {
    /// Creates the metrics of a standalone tunnel and registers them under `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let f = &m.families;
        registry.register("connections_active", ACTIVE_HELP, f.active.clone());
        registry.register("connections", ACCEPTED_HELP, f.accepted.clone());
        registry.register("connection_limit_waits", WAITS_HELP, f.limit_waits.clone());
        registry.register("handshake_limit_drops", DROPS_HELP, f.limit_drops.clone());
        m.register_labelled(registry);
        m
    }

    /// Creates metrics for several tunnels of one process, each obtained with
    /// [`TunnelMetrics::for_link`] and told apart by its `link` label.
    pub fn register_per_link(registry: &mut Registry) -> Self {
        let m = Self::default();
        let f = &m.families;
        registry.register(
            "connections_active",
            ACTIVE_HELP,
            f.connections_active.clone(),
        );
        registry.register("connections", ACCEPTED_HELP, f.connections.clone());
        registry.register(
            "connection_limit_waits",
            WAITS_HELP,
            f.connection_limit_waits.clone(),
        );
        registry.register(
            "handshake_limit_drops",
            DROPS_HELP,
            f.handshake_limit_drops.clone(),
        );
        m.register_labelled(registry);
        m
    }

    fn register_labelled(&self, r: &mut Registry) {
        let f = &self.families;
        r.register(
            "handshakes",
            "Completed handshakes by key index",
            f.handshakes.clone(),
        );
        r.register(
            "handshake_failures",
            "Failed handshakes by reason",
            f.handshake_failures.clone(),
        );
        r.register(
            "stream_errors",
            "Established connections dropped for a bad packet or I/O error, by reason",
            f.stream_errors.clone(),
        );
        r.register(
            "plaintext_bytes",
            "Plaintext bytes carried, by direction",
            f.plaintext_bytes.clone(),
        );
        r.register(
            "wire_bytes",
            "Encrypted bytes on the wire (packets only), by direction",
            f.wire_bytes.clone(),
        );
        r.register(
            "packets",
            "Packets sealed or opened, by direction",
            f.packets.clone(),
        );
    }

    /// Metrics for another tunnel of the same process, told apart by a `link` label.
    pub fn for_link(&self, link: &str) -> Self {
        Self {
            families: Arc::clone(&self.families),
            link: Some(link.into()),
            last_failure: Arc::default(),
            last_handshake: Arc::default(),
        }
    }

    fn labels(&self, extra: Option<(&'static str, String)>) -> Labels {
        let mut l = Labels::new();
        if let Some(link) = &self.link {
            l.push(("link", link.to_string()));
        }
        l.extend(extra);
        l
    }

    /// The most recent handshake or stream failure, if any.
    pub fn last_failure(&self) -> Option<Failure> {
        self.last_failure.lock().expect("not poisoned").clone()
    }

    /// When the most recent handshake completed, if any.
    pub fn last_handshake(&self) -> Option<std::time::SystemTime> {
        *self.last_handshake.lock().expect("not poisoned")
    }

    /// Connections open now.
    pub fn active(&self) -> i64 {
        match self.link {
            None => self.families.active.get(),
            Some(_) => self
                .families
                .connections_active
                .get_or_create(&self.labels(None))
                .get(),
        }
    }

    pub(crate) fn failed(&self, reason: &'static str, message: String) {
        let at = std::time::SystemTime::now();
        *self.last_failure.lock().expect("not poisoned") = Some(Failure {
            reason,
            message,
            at,
        });
    }

    pub(crate) fn connection_opened(&self) {
        let f = &self.families;
        if self.link.is_none() {
            f.accepted.inc();
            f.active.inc();
        } else {
            let l = self.labels(None);
            f.connections.get_or_create(&l).inc();
            f.connections_active.get_or_create(&l).inc();
        }
    }

    pub(crate) fn connection_closed(&self) {
        match self.link {
            None => drop(self.families.active.dec()),
            Some(_) => drop(
                self.families
                    .connections_active
                    .get_or_create(&self.labels(None))
                    .dec(),
            ),
        }
    }

    pub(crate) fn limit_reached(&self) {
        match self.link {
            None => drop(self.families.limit_waits.inc()),
            Some(_) => drop(
                self.families
                    .connection_limit_waits
                    .get_or_create(&self.labels(None))
                    .inc(),
            ),
        }
    }

    pub(crate) fn handshake_limit_drop(&self) {
        match self.link {
            None => drop(self.families.limit_drops.inc()),
            Some(_) => drop(
                self.families
                    .handshake_limit_drops
                    .get_or_create(&self.labels(None))
                    .inc(),
            ),
        }
    }

    pub(crate) fn handshake_ok(&self, key_index: usize) {
        *self.last_handshake.lock().expect("not poisoned") = Some(std::time::SystemTime::now());
        let l = self.labels(Some(("key_index", key_index.to_string())));
        self.families.handshakes.get_or_create(&l).inc();
    }

    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        let l = self.labels(Some(("reason", reason.to_string())));
        self.families.handshake_failures.get_or_create(&l).inc();
    }

    pub(crate) fn stream_error(&self, reason: &'static str) {
        let l = self.labels(Some(("reason", reason.to_string())));
        self.families.stream_errors.get_or_create(&l).inc();
    }

    pub(crate) fn carried(&self, direction: Direction, plaintext: usize, packets: usize) {
        let l = self.labels(Some(("direction", direction.label().to_string())));
        let f = &self.families;
        f.plaintext_bytes.get_or_create(&l).inc_by(plaintext as u64);
        f.packets.get_or_create(&l).inc_by(packets as u64);
        f.wire_bytes
            .get_or_create(&l)
            .inc_by((packets * spiped_proto::PACKET_LEN) as u64);
    }
}

/// Renders a registry in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// Serves `GET /metrics` and `GET /healthz` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;

    const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = render(&registry);
                async move { ([(CONTENT_TYPE, OPENMETRICS)], body) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// Binds the metrics endpoint; a separate step so configuration errors surface before serving.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
