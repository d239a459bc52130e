//! Prometheus metrics for one tunnel, and a small HTTP endpoint that serves them.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
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
    fn label(self) -> DirectionLabel {
        DirectionLabel {
            direction: match self {
                Self::Outbound => "outbound",
                Self::Inbound => "inbound",
            },
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabel {
    key_index: u32,
}

/// Counters for one tunnel endpoint. Cheap to clone; all clones update the same values.
#[derive(Debug, Clone, Default)]
pub struct TunnelMetrics {
    connections_active: Gauge,
    connections: Counter,
    connection_limit_waits: Counter,
    handshakes: Family<KeyLabel, Counter>,
    handshake_failures: Family<ReasonLabel, Counter>,
    stream_errors: Family<ReasonLabel, Counter>,
    plaintext_bytes: Family<DirectionLabel, Counter>,
    wire_bytes: Family<DirectionLabel, Counter>,
    packets: Family<DirectionLabel, Counter>,
}

impl TunnelMetrics {
    /// Creates the metrics and registers them under `registry` (prefix it as needed).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry;
        r.register("connections_active", "Connections open now", m.connections_active.clone());
        r.register("connections", "Connections accepted", m.connections.clone());
        r.register(
            "connection_limit_waits",
            "Times the -n connection limit was reached and accepting paused",
            m.connection_limit_waits.clone(),
        );
        r.register("handshakes", "Completed handshakes by key index", m.handshakes.clone());
        r.register(
            "handshake_failures",
            "Failed handshakes by reason",
            m.handshake_failures.clone(),
        );
        r.register(
            "stream_errors",
            "Established connections dropped for a bad packet or I/O error, by reason",
            m.stream_errors.clone(),
        );
        r.register(
            "plaintext_bytes",
            "Plaintext bytes carried, by direction",
            m.plaintext_bytes.clone(),
        );
        r.register(
            "wire_bytes",
            "Encrypted bytes on the wire (packets only), by direction",
            m.wire_bytes.clone(),
        );
        r.register("packets", "Packets sealed or opened, by direction", m.packets.clone());
        m
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
        self.connections_active.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_active.dec();
    }

    pub(crate) fn limit_reached(&self) {
        self.connection_limit_waits.inc();
    }

    pub(crate) fn handshake_ok(&self, key_index: usize) {
        let key_index = u32::try_from(key_index).unwrap_or(u32::MAX);
        self.handshakes.get_or_create(&KeyLabel { key_index }).inc();
    }

    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn stream_error(&self, reason: &'static str) {
        self.stream_errors.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn carried(&self, direction: Direction, plaintext: usize, packets: usize) {
        let label = direction.label();
        self.plaintext_bytes.get_or_create(&label).inc_by(plaintext as u64);
        self.packets.get_or_create(&label).inc_by(packets as u64);
        let wire = packets * spiped_proto::PACKET_LEN;
        self.wire_bytes.get_or_create(&label).inc_by(wire as u64);
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
