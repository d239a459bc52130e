//! Prometheus metrics of the Sentinel-compatible port.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Counters for one Sentinel port. Cheap to clone; clones update the same values.
#[derive(Debug, Clone, Default)]
pub struct SentinelMetrics {
    active: Gauge,
    accepted: Counter,
    refused: Family<Labels, Counter>,
    closed: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    switch_master: Counter,
}

impl SentinelMetrics {
    /// Creates the metrics and registers them under `registry` (callers usually pass a
    /// `sentinel` sub-registry, giving names like `sentinel_connections_active`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "connections_active",
            "Sentinel connections open now",
            m.active.clone(),
        );
        registry.register(
            "connections",
            "Sentinel connections accepted",
            m.accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Sentinel connections refused at accept, by reason",
            m.refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Sentinel connections closed by the server, by reason",
            m.closed.clone(),
        );
        registry.register(
            "commands_rejected",
            "Sentinel commands refused: auth_failed, noauth, unknown_command",
            m.rejected.clone(),
        );
        registry.register(
            "switch_master_messages",
            "+switch-master messages delivered to subscribed connections",
            m.switch_master.clone(),
        );
        m
    }

    /// Connections open now.
    pub fn active(&self) -> i64 {
        self.active.get()
    }

    /// Commands rejected for `reason` (`auth_failed`, `noauth`, `unknown_command`).
    pub fn rejected(&self, reason: &'static str) -> u64 {
        self.rejected.get_or_create(&vec![("reason", reason)]).get()
    }

    /// Connections closed by the server for `reason`.
    pub fn closed(&self, reason: &'static str) -> u64 {
        self.closed.get_or_create(&vec![("reason", reason)]).get()
    }

    /// Connections refused at accept for `reason` (`max_clients`).
    pub fn refused(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&vec![("reason", reason)]).get()
    }

    /// `+switch-master` messages delivered.
    pub fn switch_master_messages(&self) -> u64 {
        self.switch_master.get()
    }

    pub(crate) fn opened(&self) {
        self.accepted.inc();
        self.active.inc();
    }

    pub(crate) fn ended(&self) {
        self.active.dec();
    }

    pub(crate) fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    pub(crate) fn close(&self, reason: &'static str) {
        self.closed.get_or_create(&vec![("reason", reason)]).inc();
    }

    pub(crate) fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&vec![("reason", reason)]).inc();
    }

    pub(crate) fn switch_master_sent(&self) {
        self.switch_master.inc();
    }
}
