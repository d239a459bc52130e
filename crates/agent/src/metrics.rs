//! The agent's Prometheus metrics (the tunnels register their own under `georep_tunnel_`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Gauges mirroring the latest [`crate::status::RegionStatus`].
#[derive(Debug, Clone)]
pub(crate) struct AgentMetrics {
    pub(crate) redis_up: Gauge,
    pub(crate) is_primary: Gauge,
    pub(crate) epoch: Gauge,
    pub(crate) link_up: Gauge,
    pub(crate) lag_bytes: Gauge,
    pub(crate) lag_ms: Gauge,
    pub(crate) heartbeat_lag: Histogram,
    pub(crate) sync_full: Gauge,
    pub(crate) sync_partial_ok: Gauge,
    pub(crate) sync_partial_err: Gauge,
    pub(crate) keys: Gauge,
    pub(crate) reconcile_actions: Gauge,
    pub(crate) failovers: Family<Vec<(String, String)>, Counter>,
    pub(crate) last_write_pause_ms: Gauge,
    pub(crate) last_change_duration_ms: Gauge,
    pub(crate) meta_repaired: Family<Vec<(String, String)>, Counter>,
    pub(crate) epoch_refused: Family<Vec<(String, String)>, Counter>,
}

impl AgentMetrics {
    /// Registers under `registry` (the caller gives the `georep` prefix), in the order
    /// `/metrics` lists them.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::new();
        m.register_role(registry);
        m.register_replication(registry);
        m.register_round(registry);
        m.register_changes(registry);
        m.register_integrity(registry);
        m
    }

    fn new() -> Self {
        let buckets = [
            5.0, 10.0, 20.0, 30.0, 40.0, 45.0, 50.0, 60.0, 80.0, 100.0, 150.0, 250.0, 500.0,
            1000.0, 5000.0,
        ];
        Self {
            redis_up: Gauge::default(),
            is_primary: Gauge::default(),
            epoch: Gauge::default(),
            link_up: Gauge::default(),
            lag_bytes: Gauge::default(),
            lag_ms: Gauge::default(),
            heartbeat_lag: Histogram::new(buckets),
            sync_full: Gauge::default(),
            sync_partial_ok: Gauge::default(),
            sync_partial_err: Gauge::default(),
            keys: Gauge::default(),
            reconcile_actions: Gauge::default(),
            failovers: Family::default(),
            last_write_pause_ms: Gauge::default(),
            last_change_duration_ms: Gauge::default(),
            meta_repaired: Family::default(),
            epoch_refused: Family::default(),
        }
    }

    /// Whether Redis is up, its role and epoch, the replication link.
    fn register_role(&self, r: &mut Registry) {
        r.register(
            "redis_up",
            "1 when the agent reaches its Redis",
            self.redis_up.clone(),
        );
        r.register(
            "is_primary",
            "1 when this region's Redis is the primary",
            self.is_primary.clone(),
        );
        r.register("epoch", "Cluster epoch stored in Redis", self.epoch.clone());
        r.register(
            "link_up",
            "1 when this replica's link to the primary is up (1 on the primary)",
            self.link_up.clone(),
        );
    }

    /// Lag and resyncs.
    fn register_replication(&self, r: &mut Registry) {
        r.register(
            "replication_lag_bytes",
            "Primary offset minus this replica's offset",
            self.lag_bytes.clone(),
        );
        r.register(
            "replication_lag_ms",
            "Heartbeat lag of this replica in milliseconds",
            self.lag_ms.clone(),
        );
        r.register(
            "heartbeat_lag_ms",
            "Heartbeat lag measured at each heartbeat's arrival, in milliseconds",
            self.heartbeat_lag.clone(),
        );
        r.register(
            "sync_full",
            "Full resyncs this primary served (Redis sync_full)",
            self.sync_full.clone(),
        );
        r.register(
            "sync_partial_ok",
            "Partial resyncs this primary accepted",
            self.sync_partial_ok.clone(),
        );
        r.register(
            "sync_partial_err",
            "Partial resyncs this primary refused",
            self.sync_partial_err.clone(),
        );
    }

    /// What the last control round found and corrected.
    fn register_round(&self, r: &mut Registry) {
        r.register("keys", "Keys in this region's Redis", self.keys.clone());
        r.register(
            "reconcile_actions",
            "Corrections the last control-loop round applied to Redis",
            self.reconcile_actions.clone(),
        );
    }

    /// Changes of primary this agent ran.
    fn register_changes(&self, r: &mut Registry) {
        r.register(
            "failovers",
            "Changes of primary this agent carried out, by kind (planned, emergency)",
            self.failovers.clone(),
        );
        r.register(
            "last_write_pause_ms",
            "Write pause of the last planned switchover this agent ran, in milliseconds",
            self.last_write_pause_ms.clone(),
        );
        r.register(
            "last_primary_change_duration_ms",
            "Duration of the last change of primary this agent ran, in milliseconds",
            self.last_change_duration_ms.clone(),
        );
    }

    /// Metadata repaired and epochs refused.
    fn register_integrity(&self, r: &mut Registry) {
        r.register(
            "meta_repaired",
            "Keys of georep:* holding what no agent writes (wrong type, garbage) that this agent \
             rewrote, by key",
            self.meta_repaired.clone(),
        );
        r.register(
            "epoch_refused",
            "Implausible epochs (u64::MAX, or more than 1,000,000 above the known one) ignored, \
             by the region whose georep:meta held them",
            self.epoch_refused.clone(),
        );
    }
}

impl AgentMetrics {
    /// Counts a repair of `key`.
    pub(crate) fn repaired(&self, key: &str) {
        self.meta_repaired
            .get_or_create(&vec![("key".to_owned(), key.to_owned())])
            .inc();
    }
}
