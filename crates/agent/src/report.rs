//! The last step of a control round: what our Redis looks like, as `/status` and the metrics
//! report it (role, offsets, lag, resyncs, why a link is down).

use resp::Info;

use crate::commands::Redis;
use crate::shared::Shared;
use crate::status::{Link, RegionStatus, Role, SyncKind};

/// What a replica's report remembers between rounds, to tell how the last resync went.
#[derive(Debug, Default)]
pub(crate) struct ReplicaMemory {
    link_was_up: bool,
    followed: Option<usize>,
    primary_syncs: Option<(u64, u64)>,
    last_sync: Option<SyncKind>,
}

/// Fills `status` from our Redis's `INFO replication stats keyspace` and, on a replica, the
/// primary's counters read through `primary_conn`. False when that connection failed (the caller
/// drops it).
pub(crate) async fn fill(
    shared: &Shared,
    memory: &mut ReplicaMemory,
    info: &Info,
    primary_conn: Option<&mut Redis>,
    primary: usize,
    status: &mut RegionStatus,
) -> bool {
    let is_primary = info.get("role") == Some("master");
    status.role = if is_primary {
        Role::Primary
    } else {
        Role::Replica
    };
    status.keys = info.keys();
    status.ops_per_sec = info.int("instantaneous_ops_per_sec").unwrap_or(0).max(0) as u64;
    if is_primary {
        primary_view(shared, info, status);
        true
    } else {
        replica_view(shared, memory, info, primary_conn, primary, status).await
    }
}

fn primary_view(shared: &Shared, info: &Info, status: &mut RegionStatus) {
    status.repl_offset = uint(info, "master_repl_offset");
    status.lag_bytes = Some(0);
    status.lag_ms = Some(0);
    status.sync_full = uint(info, "sync_full");
    status.sync_partial_ok = uint(info, "sync_partial_ok");
    let m = &shared.metrics;
    m.sync_full.set(status.sync_full.unwrap_or(0) as i64);
    m.sync_partial_ok
        .set(status.sync_partial_ok.unwrap_or(0) as i64);
    m.sync_partial_err
        .set(info.int("sync_partial_err").unwrap_or(0));
}

/// Link state, lag and the last resync, as a replica sees them.
async fn replica_view(
    shared: &Shared,
    memory: &mut ReplicaMemory,
    info: &Info,
    primary_conn: Option<&mut Redis>,
    primary: usize,
    status: &mut RegionStatus,
) -> bool {
    let c = &shared.config;
    if memory.followed != Some(primary) {
        // A new primary: its counters are not comparable with the previous one's.
        *memory = ReplicaMemory {
            followed: Some(primary),
            ..ReplicaMemory::default()
        };
    }
    let link_up = info.get("master_link_status") == Some("up");
    status.link = if link_up { Link::Up } else { Link::Down };
    status.repl_offset = uint(info, "slave_repl_offset");
    let interval = c.heartbeat_every.as_millis() as u64;
    status.lag_ms = shared
        .progress
        .borrow()
        .heartbeat
        .lag_ms(crate::now_ms(), interval);

    // The primary's offset and resync counters, read through our tunnel to its region.
    let mut conn_ok = true;
    if let Some(conn) = primary_conn {
        match conn.info(&["replication", "stats"]).await {
            Ok(p) => primary_counters(shared, memory, &p, link_up, status),
            Err(e) => {
                tracing::debug!(error = %e, "primary not reachable through the tunnel");
                conn_ok = false;
            }
        }
    }
    memory.link_was_up = link_up;
    status.last_sync = memory.last_sync;
    if !link_up {
        status.link_error = Some(link_error(shared, info, primary));
    }
    conn_ok
}

fn primary_counters(
    shared: &Shared,
    memory: &mut ReplicaMemory,
    p: &Info,
    link_up: bool,
    status: &mut RegionStatus,
) {
    let (full, partial) = (
        uint(p, "sync_full").unwrap_or(0),
        uint(p, "sync_partial_ok").unwrap_or(0),
    );
    if let (Some(po), Some(ro)) = (uint(p, "master_repl_offset"), status.repl_offset) {
        status.lag_bytes = Some(po.saturating_sub(ro));
        shared.progress.send_modify(|g| g.offsets = Some((po, ro)));
    }
    if link_up && !memory.link_was_up {
        if let Some((f0, p0)) = memory.primary_syncs {
            if full > f0 {
                memory.last_sync = Some(SyncKind::Full);
            } else if partial > p0 {
                memory.last_sync = Some(SyncKind::Partial);
            }
        }
    }
    if link_up || memory.primary_syncs.is_none() {
        memory.primary_syncs = Some((full, partial));
    }
}

/// Why a replica's link is down, as precisely as we know.
fn link_error(shared: &Shared, info: &Info, primary: usize) -> String {
    if let Some(why) = shared.fenced() {
        return format!("fenced: {why}");
    }
    match shared.links.get(&primary).and_then(|m| m.last_failure()) {
        Some(f) => format!("tunnel: {} ({})", f.reason, f.message),
        None => match info.int("master_link_down_since_seconds") {
            Some(s) if s >= 0 => format!("replication link down for {s}s"),
            _ => "replication link not established yet".into(),
        },
    }
}

/// Publishes a round's status to `/status` and the metrics.
pub(crate) fn publish(shared: &Shared, status: RegionStatus) {
    let m = &shared.metrics;
    m.redis_up.set(i64::from(status.redis_up));
    m.is_primary.set(i64::from(status.role == Role::Primary));
    m.epoch.set(status.epoch.unwrap_or(0) as i64);
    m.link_up.set(i64::from(
        status.role == Role::Primary || status.link == Link::Up,
    ));
    m.lag_bytes.set(status.lag_bytes.unwrap_or(0) as i64);
    m.lag_ms.set(status.lag_ms.unwrap_or(0) as i64);
    m.keys.set(status.keys as i64);
    shared.status.send_replace(status);
}

fn uint(info: &Info, field: &str) -> Option<u64> {
    info.int(field).and_then(|v| u64::try_from(v).ok())
}
