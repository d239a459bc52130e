//! Prometheus metrics of the primary endpoint.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Why a client connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No primary was known for the whole hold time.
    NoPrimary,
    /// A primary was known but could not be connected to within the hold time.
    Unreachable,
    /// The connection limit was reached.
    MaxClients,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoPrimary => "no_primary",
            Self::Unreachable => "unreachable",
            Self::MaxClients => "max_clients",
        }
    }
}

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the application to the primary.
    ToPrimary,
    /// From the primary back to the application.
    ToClient,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Self::ToPrimary => "to_primary",
            Self::ToClient => "to_client",
        }
    }
}

/// Counters of one endpoint. Cheap to clone; clones update the same values.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    active: Gauge,
    accepted: Counter,
    forwarded: Counter,
    refused: Family<Labels, Counter>,
    route_closes: Counter,
    bytes: Family<Labels, Counter>,
    /// The two series of `bytes`, looked up once: the data path adds to them at every read, and
    /// a family lookup (a lock, a hash, a label vector) per read costs more than the add.
    bytes_to_primary: Counter,
    bytes_to_client: Counter,
}

impl Default for EndpointMetrics {
    fn default() -> Self {
        let bytes = Family::<Labels, Counter>::default();
        let series = |d: Direction| bytes.get_or_create(&vec![("direction", d.label())]).clone();
        Self {
            bytes_to_primary: series(Direction::ToPrimary),
            bytes_to_client: series(Direction::ToClient),
            bytes,
            active: Gauge::default(),
            accepted: Counter::default(),
            forwarded: Counter::default(),
            refused: Family::default(),
            route_closes: Counter::default(),
        }
    }
}

impl EndpointMetrics {
    /// Creates the metrics and registers them under `registry` (callers usually pass an
    /// `endpoint` sub-registry, giving names like `endpoint_connections_active`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "connections_active",
            "Client connections open now (held or forwarded)",
            m.active.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            m.accepted.clone(),
        );
        registry.register(
            "connections_forwarded",
            "Client connections connected through to a primary",
            m.forwarded.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections refused with an error reply, by reason",
            m.refused.clone(),
        );
        registry.register(
            "connections_closed_route_change",
            "Forwarded connections closed because the primary or epoch changed",
            m.route_closes.clone(),
        );
        registry.register("bytes", "Bytes forwarded, by direction", m.bytes.clone());
        m
    }

    /// Connections open now.
    pub fn active(&self) -> i64 {
        self.active.get()
    }

    /// Connections forwarded to a primary so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.get()
    }

    /// Connections refused for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused
            .get_or_create(&vec![("reason", reason.label())])
            .get()
    }

    /// Connections closed on a route change.
    pub fn route_closes(&self) -> u64 {
        self.route_closes.get()
    }

    /// Bytes forwarded in `direction`.
    pub fn bytes(&self, direction: Direction) -> u64 {
        self.series(direction).get()
    }

    fn series(&self, direction: Direction) -> &Counter {
        match direction {
            Direction::ToPrimary => &self.bytes_to_primary,
            Direction::ToClient => &self.bytes_to_client,
        }
    }

    pub(crate) fn opened(&self) {
        self.accepted.inc();
        self.active.inc();
    }

    pub(crate) fn ended(&self) {
        self.active.dec();
    }

    pub(crate) fn forward(&self) {
        self.forwarded.inc();
    }

    pub(crate) fn refuse(&self, reason: Refusal) {
        self.refused
            .get_or_create(&vec![("reason", reason.label())])
            .inc();
    }

    pub(crate) fn route_close(&self) {
        self.route_closes.inc();
    }

    pub(crate) fn carried(&self, direction: Direction, n: usize) {
        self.series(direction).inc_by(n as u64);
    }
}
