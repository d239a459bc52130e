//! Prometheus metrics of a relay (prefix the registry with `georep_relay`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every series of one relay. Cheap to clone; clones share the values.
#[derive(Debug, Clone, Default)]
pub struct RelayMetrics {
    /// Last stream byte received from the upstream and stored.
    pub upstream_offset: Gauge,
    /// 1 while the upstream link is streaming.
    pub upstream_connected: Gauge,
    /// Full resyncs the relay itself took from its upstream (an RDB received).
    pub upstream_full_syncs: Counter,
    /// Per downstream (`downstream="ip:port"`): the offset it acknowledged last.
    pub downstream_acked_offset: Family<Labels, Gauge>,
    /// Per downstream: the last offset sent to it.
    pub downstream_sent_offset: Family<Labels, Gauge>,
    /// Downstream connections streaming now.
    pub downstreams: Gauge,
    /// Syncs served to downstreams: `kind="partial"` (+CONTINUE), `"full"` (+FULLRESYNC from the
    /// stored RDB), `"not_ready"` (nothing to serve yet).
    pub syncs_served: Family<Labels, Counter>,
    /// Bytes on disk: the RDB and the stream segments.
    pub disk_bytes: Gauge,
    /// The oldest stream offset held: PSYNC from before it needs a full sync.
    pub oldest_offset: Gauge,
    /// Age in seconds of the oldest segment: the outage the relay can still cover.
    pub oldest_age_seconds: Gauge,
    /// Offset of the stored RDB (what a downstream full sync gets); -1 while there is none.
    pub rdb_offset: Gauge,
    /// Segments or RDBs found corrupt (at start-up or while serving); never served.
    pub corrupt: Counter,
    /// Disk writes that failed (a full disk among them); nothing partial is kept.
    pub disk_errors: Counter,
    /// Downstream `AUTH` attempts refused.
    pub auth_failures: Counter,
    /// Uncompressed bytes that crossed a compressed link, by `direction="sent"|"received"`.
    pub compression_raw_bytes: Family<Labels, Counter>,
    /// The same bytes as they were on the wire (frame headers included); raw / wire is the
    /// compression ratio.
    pub compression_wire_bytes: Family<Labels, Counter>,
    /// Compressed frames from the upstream that could not be decoded or exceeded the bounds.
    pub compression_errors: Counter,
    /// Fresh RDBs taken from the local Redis, by `result="installed"|"held"|"refused"|"failed"`
    /// (each one a fork of that Redis, except `failed` before its reply).
    pub rdb_refreshes: Family<Labels, Counter>,
}

impl RelayMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "upstream_offset",
            "Last stream byte received from the upstream and stored",
            m.upstream_offset.clone(),
        );
        registry.register(
            "upstream_connected",
            "1 while the upstream link is streaming",
            m.upstream_connected.clone(),
        );
        registry.register(
            "upstream_full_syncs",
            "Full resyncs (RDB transfers) taken from the upstream",
            m.upstream_full_syncs.clone(),
        );
        registry.register(
            "downstream_acked_offset",
            "Offset each downstream acknowledged last",
            m.downstream_acked_offset.clone(),
        );
        registry.register(
            "downstream_sent_offset",
            "Last offset sent to each downstream",
            m.downstream_sent_offset.clone(),
        );
        registry.register(
            "downstreams",
            "Downstream connections streaming now",
            m.downstreams.clone(),
        );
        registry.register(
            "syncs_served",
            "Syncs served to downstreams, by kind (partial, full, not_ready)",
            m.syncs_served.clone(),
        );
        registry.register(
            "disk_bytes",
            "Bytes on disk: RDB and stream segments",
            m.disk_bytes.clone(),
        );
        registry.register(
            "oldest_offset",
            "Oldest stream offset held (the retention horizon)",
            m.oldest_offset.clone(),
        );
        registry.register(
            "oldest_age_seconds",
            "Age of the oldest segment held, in seconds",
            m.oldest_age_seconds.clone(),
        );
        registry.register(
            "rdb_offset",
            "Offset of the stored RDB a downstream full sync gets (-1: none)",
            m.rdb_offset.clone(),
        );
        registry.register(
            "corrupt",
            "Segments or RDBs found corrupt; never served",
            m.corrupt.clone(),
        );
        registry.register(
            "disk_errors",
            "Disk writes that failed (disk full among them)",
            m.disk_errors.clone(),
        );
        registry.register(
            "auth_failures",
            "Downstream AUTH attempts refused",
            m.auth_failures.clone(),
        );
        registry.register(
            "compression_raw_bytes",
            "Uncompressed bytes that crossed a compressed relay link, by direction",
            m.compression_raw_bytes.clone(),
        );
        registry.register(
            "compression_wire_bytes",
            "Bytes on the wire for them (raw / wire is the compression ratio), by direction",
            m.compression_wire_bytes.clone(),
        );
        registry.register(
            "compression_errors",
            "Compressed frames from the upstream that were refused (corrupt or beyond the bounds)",
            m.compression_errors.clone(),
        );
        registry.register(
            "rdb_refreshes",
            "Fresh RDBs taken from the local Redis before retention passes the stored one, by result",
            m.rdb_refreshes.clone(),
        );
        m
    }

    /// Uncompressed / wire bytes over every compressed link of this relay (both directions);
    /// `None` before any byte was compressed.
    pub fn compression_ratio(&self) -> Option<f64> {
        let (mut raw, mut wire) = (0, 0);
        for direction in ["sent", "received"] {
            raw += self.compression_raw(direction).get();
            wire += self.compression_wire(direction).get();
        }
        (wire > 0).then(|| raw as f64 / wire as f64)
    }

    pub(crate) fn compression_raw(&self, direction: &'static str) -> Counter {
        self.compression_raw_bytes
            .get_or_create(&vec![("direction", direction.to_owned())])
            .clone()
    }

    pub(crate) fn compression_wire(&self, direction: &'static str) -> Counter {
        self.compression_wire_bytes
            .get_or_create(&vec![("direction", direction.to_owned())])
            .clone()
    }

    pub(crate) fn refreshed(&self, result: &'static str) {
        self.rdb_refreshes
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    pub(crate) fn served(&self, kind: &'static str) {
        self.syncs_served
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }
}
