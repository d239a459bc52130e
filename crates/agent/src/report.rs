//! The last step of a control round: what our Redis looks like, as `/status` and the metrics
//! report it (role, offsets, lag, resyncs, why a link is down).

use resp::Info;

use crate::commands::Redis;
use crate::shared::Shared;
use crate::status::{Link, RegionStatus, Role, SyncKind};
use topology::RegionId;

/// What a replica's report remembers between rounds, to tell how the last resync went.
#[derive(Debug, Default)]
pub(crate) struct ReplicaMemory {
    link_was_up: bool,
    followed: Option<RegionId>,
    primary_syncs: Option<(u64, u64)>,
    /// The primary's `run_id` when `primary_syncs` was read: a restarted primary counts from 0.
    primary_run_id: Option<String>,
    /// Our own `master_replid` last round: it changes only when we resync.
    replid: Option<String>,
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
    primary: RegionId,
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
    primary: RegionId,
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

    // What we did, from our own replication IDs: a resync that changed our ID tells its kind
    // by itself, whatever the primary's counters say (a restarted primary resets them).
    let by_replid = link_up
        .then(|| resync_by_replid(memory.replid.as_deref(), info))
        .flatten();
    if by_replid.is_some() {
        memory.last_sync = by_replid;
    }
    memory.replid = info.get("master_replid").map(str::to_owned);

    // The primary's offset and resync counters, read through our tunnel to its region.
    let mut conn_ok = true;
    if let Some(conn) = primary_conn {
        match conn.info(&["server", "replication", "stats"]).await {
            Ok(p) => primary_counters(shared, memory, &p, link_up, by_replid.is_some(), status),
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
    decided: bool,
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
    let run_id = p.get("run_id").map(str::to_owned);
    if memory.primary_run_id.is_some() && memory.primary_run_id != run_id {
        // The primary restarted: its counters start again from zero.
        memory.primary_syncs = Some((0, 0));
    }
    memory.primary_run_id = run_id;
    // Our ID unchanged across a reconnection: the primary's counters tell which it was (a full
    // resync from a primary that kept its ID, e.g. our offset fell out of its backlog).
    if link_up && !memory.link_was_up && !decided {
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

/// The resync our replication ID shows since the last round, if it changed (Redis 7 and Valkey
/// 8 alike). A full sync adopts the primary's ID and clears the second one
/// (`master_replid2` all zeros); a partial resync that continues under a new ID (`+CONTINUE`
/// after a failover) keeps the old ID as `master_replid2`. `None`: our ID did not change (no
/// resync, or one the primary's counters must tell), or there is no earlier ID to compare with.
fn resync_by_replid(before: Option<&str>, info: &Info) -> Option<SyncKind> {
    let before = before?;
    let now = info.get("master_replid")?;
    if now == before {
        return None;
    }
    Some(if info.get("master_replid2") == Some(before) {
        SyncKind::Partial
    } else {
        SyncKind::Full
    })
}

/// Why a replica's link is down, as precisely as we know.
fn link_error(shared: &Shared, info: &Info, primary: RegionId) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn info(replid: &str, replid2: &str) -> Info {
        Info::parse(&format!(
            "# Replication\r\nrole:slave\r\nmaster_replid:{replid}\r\nmaster_replid2:{replid2}\r\n"
        ))
    }

    #[test]
    fn a_new_replication_id_tells_the_resync_kind() {
        // A full sync from a restarted primary: its new ID, the second one cleared.
        assert_eq!(
            resync_by_replid(Some(A), &info(B, ZERO)),
            Some(SyncKind::Full)
        );
        // A partial resync under a new ID keeps ours as the second one.
        assert_eq!(
            resync_by_replid(Some(A), &info(B, A)),
            Some(SyncKind::Partial)
        );
        // Same ID: the primary's counters decide; no earlier ID: nothing to compare.
        assert_eq!(resync_by_replid(Some(A), &info(A, ZERO)), None);
        assert_eq!(resync_by_replid(None, &info(B, ZERO)), None);
    }
}
