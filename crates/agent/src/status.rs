//! What the agent knows, as served on `/status` and aggregated by `georep status`.

use serde::{Deserialize, Serialize};

/// One region's view, from its own agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// `primary`, `replica`, or `unknown` while Redis is unreachable.
    pub role: String,
    /// Where our Redis listens.
    pub redis_addr: String,
    /// Whether the agent can reach its Redis.
    pub redis_up: bool,
    /// The region that should be primary.
    pub primary: String,
    /// Cluster epoch as stored in Redis (`georep:meta`), if known.
    pub epoch: Option<u64>,
    /// For a replica: `up` or `down` (Redis's `master_link_status`); for the primary: `-`.
    pub link: String,
    /// Why the link is down, when we know (tunnel failures, Redis errors).
    pub link_error: Option<String>,
    /// Replication lag in bytes (primary offset − our offset); 0 on the primary.
    pub lag_bytes: Option<u64>,
    /// Heartbeat lag in milliseconds; 0 on the primary.
    pub lag_ms: Option<u64>,
    /// Keys in all databases.
    pub keys: u64,
    /// Redis's `instantaneous_ops_per_sec`.
    pub ops_per_sec: u64,
    /// `full` or `partial`: how the last (re)synchronisation with the primary went, when seen.
    pub last_sync: Option<String>,
    /// On the primary: full resyncs served (Redis `sync_full`).
    pub sync_full: Option<u64>,
    /// On the primary: partial resyncs accepted (Redis `sync_partial_ok`).
    pub sync_partial_ok: Option<u64>,
    /// Redis's replication offset.
    pub repl_offset: Option<u64>,
    /// Last control-loop error, if the last round failed.
    pub error: Option<String>,
    /// Why this region's Redis is held read-only although the epoch names it primary.
    #[serde(default)]
    pub fenced: Option<String>,
    /// The last change of primary this agent carried out (planned or emergency).
    #[serde(default)]
    pub last_change: Option<PrimaryChange>,
}

/// One change of primary, as the agent that carried it out reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PrimaryChange {
    /// `planned` (`georep failover`) or `emergency` (`georep promote --force`).
    pub kind: String,
    /// The previous primary, as this agent knew it.
    pub from: String,
    /// The new primary.
    pub to: String,
    /// The new epoch.
    pub epoch: u64,
    /// When it completed, Unix milliseconds.
    pub at_ms: u64,
    /// How long the whole change took, milliseconds.
    pub duration_ms: u64,
    /// Planned: how long application writes were paused, milliseconds.
    pub write_pause_ms: Option<u64>,
    /// Emergency: replication bytes the promoted region had not received from the old primary,
    /// as far as its agent last saw (a lower bound; `None` when unknown).
    pub offset_gap: Option<u64>,
}
