//! What the agent knows, as served on `/status` and aggregated by `georep status`.

use serde::{Deserialize, Serialize};

/// One region's view, from its own agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// `primary`, `replica`, or `unknown` while Redis is unreachable.
    pub role: Role,
    /// Where our Redis listens.
    pub redis_addr: String,
    /// Where the agent's primary endpoint listens (writes from any region), if enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_endpoint: Option<String>,
    /// Where the agent's Sentinel-compatible port listens, if enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_addr: Option<String>,
    /// Whether the agent can reach its Redis.
    pub redis_up: bool,
    /// The region that should be primary.
    pub primary: String,
    /// Cluster epoch as stored in Redis (`georep:meta`), if known.
    pub epoch: Option<u64>,
    /// For a replica: `up` or `down` (Redis's `master_link_status`); for the primary: `-`.
    pub link: Link,
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
    pub last_sync: Option<SyncKind>,
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
    /// The region's replication relay, when it runs one (`[relay]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<crate::RelayStatus>,
    /// The audit ring: the last 20 attempted changes of primary sent to this agent, oldest
    /// first, kept in its state file across restarts.
    #[serde(default)]
    pub changes: Vec<ChangeAttempt>,
}

/// One attempted change of primary, as the audit log line and the state file record it. Only
/// authenticated requests get this far: a missing or wrong token is refused (401) before, and
/// counted by `georep_control_auth_failures_total`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangeAttempt {
    /// When the agent answered, Unix milliseconds.
    pub at_ms: u64,
    /// Who asked: the peer address of the control connection.
    pub peer: String,
    /// The fingerprint of the operator token presented (never the token).
    pub token: String,
    /// `failover` or `promote`.
    pub action: String,
    /// The region asked to become primary.
    pub target: String,
    /// `done` or `refused`.
    pub result: String,
    /// Why it was refused or failed.
    pub error: Option<String>,
    /// The epoch after the attempt: the new one when done, the known one otherwise.
    pub epoch: Option<u64>,
}

/// One change of primary, as the agent that carried it out reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PrimaryChange {
    /// `planned` (`georep failover`) or `emergency` (`georep promote --force`).
    pub kind: ChangeKind,
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

/// A region's role as its agent reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Its Redis is the primary (`role:master`).
    Primary,
    /// Its Redis replicates (`role:slave`).
    Replica,
    /// Its Redis could not be read.
    #[default]
    Unknown,
}

/// A replica's replication link (Redis's `master_link_status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Connected and in sync.
    Up,
    /// Not connected.
    Down,
    /// Not a replica.
    #[default]
    #[serde(rename = "-")]
    None,
}

/// How a replica's last (re)synchronisation with the primary went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncKind {
    /// The whole dataset was transferred.
    Full,
    /// Only the backlog (PSYNC continued).
    Partial,
}

/// The two ways the primary changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// `georep failover`: no acknowledged write lost.
    #[default]
    Planned,
    /// `georep promote --force`: the old primary's unreplicated writes are lost.
    Emergency,
}

macro_rules! display_as_json_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // The serialised name: tables and metric labels read like the JSON.
                let name = serde_json::to_value(self).ok();
                f.pad(name.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
            }
        }
    )*};
}
display_as_json_name!(Role, Link, SyncKind, ChangeKind);

#[cfg(test)]
mod tests {
    use super::*;

    /// `/status` and a failover reply as they were when these fields were strings: clients
    /// (`georep status --json`, dashboards, scripts) parse these names.
    #[test]
    fn json_names_are_pinned() {
        let change = PrimaryChange {
            kind: ChangeKind::Planned,
            from: "us-east-1".into(),
            to: "eu-central-1".into(),
            epoch: 3,
            at_ms: 1_700_000_000_000,
            duration_ms: 120,
            write_pause_ms: Some(80),
            offset_gap: Some(0),
        };
        let status = RegionStatus {
            name: "eu-central-1".into(),
            primary_endpoint: None,
            sentinel_addr: None,
            role: Role::Replica,
            redis_addr: "127.0.0.1:7000".into(),
            redis_up: true,
            primary: "us-east-1".into(),
            epoch: Some(2),
            link: Link::Up,
            link_error: None,
            lag_bytes: Some(0),
            lag_ms: Some(41),
            keys: 10,
            ops_per_sec: 5,
            last_sync: Some(SyncKind::Partial),
            sync_full: None,
            sync_partial_ok: None,
            repl_offset: Some(1234),
            error: None,
            fenced: None,
            last_change: Some(change.clone()),
            relay: None,
            changes: vec![ChangeAttempt {
                at_ms: 1_700_000_000_000,
                peer: "127.0.0.1:51000".into(),
                token: "3f2a9c0d1e4b5a6f".into(),
                action: "failover".into(),
                target: "eu-central-1".into(),
                result: "refused".into(),
                error: Some("region eu-central-1 is not ready".into()),
                epoch: Some(2),
            }],
        };
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(
            json,
            r#"{"name":"eu-central-1","role":"replica","redis_addr":"127.0.0.1:7000","redis_up":true,"primary":"us-east-1","epoch":2,"link":"up","link_error":null,"lag_bytes":0,"lag_ms":41,"keys":10,"ops_per_sec":5,"last_sync":"partial","sync_full":null,"sync_partial_ok":null,"repl_offset":1234,"error":null,"fenced":null,"last_change":{"kind":"planned","from":"us-east-1","to":"eu-central-1","epoch":3,"at_ms":1700000000000,"duration_ms":120,"write_pause_ms":80,"offset_gap":0},"changes":[{"at_ms":1700000000000,"peer":"127.0.0.1:51000","token":"3f2a9c0d1e4b5a6f","action":"failover","target":"eu-central-1","result":"refused","error":"region eu-central-1 is not ready","epoch":2}]}"#
        );
        let primary = RegionStatus {
            role: Role::Primary,
            link: Link::None,
            last_sync: Some(SyncKind::Full),
            ..status.clone()
        };
        let v = serde_json::to_value(&primary).unwrap();
        assert_eq!(
            (v["role"].as_str(), v["link"].as_str()),
            (Some("primary"), Some("-"))
        );
        assert_eq!(v["last_sync"], "full");
        let unknown = serde_json::to_value(RegionStatus::default()).unwrap();
        assert_eq!(unknown["role"], "unknown");
        assert_eq!(unknown["changes"], serde_json::json!([]));
        // A status from an agent older than the audit ring reads with no changes.
        let old = json.split(r#","changes""#).next().unwrap().to_owned() + "}";
        let old: RegionStatus = serde_json::from_str(&old).unwrap();
        assert!(old.changes.is_empty());
        let forced = PrimaryChange {
            kind: ChangeKind::Emergency,
            write_pause_ms: None,
            offset_gap: None,
            ..change
        };
        assert_eq!(
            serde_json::to_string(&forced).unwrap(),
            r#"{"kind":"emergency","from":"us-east-1","to":"eu-central-1","epoch":3,"at_ms":1700000000000,"duration_ms":120,"write_pause_ms":null,"offset_gap":null}"#
        );
        // And they read back.
        let back: RegionStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, status);
        assert_eq!(Role::Replica.to_string(), "replica");
        assert_eq!(Link::None.to_string(), "-");
    }
}
