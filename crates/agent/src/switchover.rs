//! Changing the primary: the planned switchover (run by the current primary's agent) and the
//! emergency promotion (run by the promoted region's agent).
//!
//! Planned, with no acknowledged write lost and never two writable primaries:
//!
//! 1. `CLIENT PAUSE <timeout + margin> WRITE` on our Redis (the primary);
//! 2. wait until the target's `slave_repl_offset` equals our `master_repl_offset` (read through
//!    our tunnel client to the target); on timeout, `CLIENT UNPAUSE` and abort: nothing changed;
//! 3. record (epoch + 1, target) in our state file, so that from here on our own control loop —
//!    or a restarted agent — follows the target and, if the target is not promoted yet, promotes
//!    it (the switchover is completed rather than undone);
//! 4. `REPLICAOF target` on our Redis: it is read-only before the target becomes writable (the
//!    writes waiting in the pause fail with `READONLY`, unacknowledged);
//! 5. `REPLICAOF NO ONE` and the new epoch on the target (through the tunnel): writable there;
//! 6. `CLIENT UNPAUSE`. Other regions' agents see the higher epoch and re-point; PSYNC2 keeps
//!    every resync partial (the target's new replication ID keeps the old one as `replid2`).

use std::time::{Duration, Instant};

use resp::{Conn, Info};

use crate::cluster_view::Known;
use crate::control::{now_ms, promote_remote, read_meta, Shared, META};
use crate::status::PrimaryChange;

/// Why a change of primary was refused or failed: an HTTP status and a sentence.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// The pause outlives the longest switchover by this much; if the agent dies in between, its
/// restarted successor (or Redis, when the pause expires) ends it.
const PAUSE_MARGIN: Duration = Duration::from_secs(10);

const TIMEOUT: Duration = Duration::from_secs(3);

/// One change at a time; a second concurrent request is refused.
struct InProgress<'a>(&'a Shared);

impl<'a> InProgress<'a> {
    fn claim(shared: &'a Shared, what: String) -> Result<Self, Refusal> {
        let mut slot = shared.change_in_progress.lock().expect("not poisoned");
        if let Some(other) = slot.as_ref() {
            return Err(refuse(
                409,
                format!("another change of primary is in progress ({other}); try again when it has finished"),
            ));
        }
        *slot = Some(what);
        Ok(Self(shared))
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        *self.0.change_in_progress.lock().expect("not poisoned") = None;
    }
}

/// A connection to our Redis and its `INFO replication`, or a 503 refusal.
async fn local_replication(shared: &Shared) -> Result<(Conn, Info), Refusal> {
    let c = &shared.config;
    let mut local = Conn::connect(c.redis, Some(&c.passwords.admin_login()), TIMEOUT)
        .await
        .map_err(|e| refuse(503, format!("cannot reach our Redis: {e}")))?;
    let info = local
        .info(&["replication"])
        .await
        .map_err(|e| refuse(503, format!("our Redis: {e}")))?;
    Ok((local, info))
}

/// The planned switchover to region `to`.
pub(crate) async fn failover(
    shared: &Shared,
    to: &str,
    timeout: Duration,
) -> Result<PrimaryChange, Refusal> {
    let c = &shared.config;
    let target = c
        .topology
        .region(to)
        .ok_or_else(|| refuse(400, format!("no region {to:?} in the topology")))?
        .index;
    let started = Instant::now();
    let _claim = InProgress::claim(shared, format!("failover to {to}"))?;
    let _round = shared.round_lock.lock().await;
    let known = shared.known();
    let me = c.region_name();
    if known.primary != c.region {
        return Err(refuse(
            409,
            format!(
                "{me} is not the primary: the primary is {} (epoch {}); send the request to its agent",
                c.topology.regions[known.primary].name, known.epoch
            ),
        ));
    }
    if target == c.region {
        return Err(refuse(409, format!("{me} is already the primary")));
    }
    let (mut local, info) = local_replication(shared).await?;
    let fenced = shared.fenced.read().expect("not poisoned").is_some();
    if info.get("role") != Some("master") || fenced {
        return Err(refuse(
            409,
            format!("{me}'s Redis is not a writable primary (fenced or starting); nothing changed"),
        ));
    }
    // Reaching the target counts against the timeout: an unresponsive target aborts in time.
    let budget = timeout
        .saturating_sub(started.elapsed())
        .clamp(Duration::from_millis(100), TIMEOUT);
    let mut remote = Conn::connect(
        c.peer_addr(target),
        Some(&c.passwords.admin_login()),
        budget,
    )
    .await
    .map_err(|e| {
        refuse(
            503,
            format!("cannot reach {to}'s Redis through the tunnel: {e}"),
        )
    })?;
    let tinfo = remote
        .info(&["replication"])
        .await
        .map_err(|e| refuse(503, format!("{to}'s Redis: {e}")))?;
    if tinfo.get("role") != Some("slave") || tinfo.get("master_link_status") != Some("up") {
        return Err(refuse(
            409,
            format!("{to} is not a replica with its link up; nothing changed"),
        ));
    }

    // Every epoch any region holds, read before the pause (it costs round trips).
    let highest = known.epoch.max(highest_seen(shared).await);

    // 1. Pause writes.
    let pause_ms = (timeout + PAUSE_MARGIN).as_millis().to_string();
    local
        .cmd(&["CLIENT", "PAUSE", pause_ms.as_str(), "WRITE"])
        .await
        .map_err(|e| refuse(503, format!("CLIENT PAUSE failed: {e}; nothing changed")))?;
    let paused = Instant::now();
    let unpause = |mut conn: Conn| async move {
        let _ = conn.cmd(&["CLIENT", "UNPAUSE"]).await;
    };

    // 2. Wait for the target to hold every byte.
    let offset = match local.info(&["replication"]).await {
        Ok(i) => i.int("master_repl_offset").unwrap_or(-1),
        Err(e) => {
            unpause(local).await;
            return Err(refuse(
                503,
                format!("our Redis: {e}; aborted, nothing changed"),
            ));
        }
    };
    loop {
        let left = timeout
            .saturating_sub(paused.elapsed())
            .max(Duration::from_millis(1));
        let caught_up = match remote
            .cmd_with_timeout(&["INFO", "replication"], left)
            .await
        {
            Ok(v) => Info::parse(&v.text().unwrap_or_default())
                .int("slave_repl_offset")
                .is_some_and(|o| o >= offset),
            Err(_) => false,
        };
        if caught_up {
            break;
        }
        if paused.elapsed() >= timeout {
            unpause(local).await;
            return Err(refuse(
                504,
                format!(
                    "{to} did not catch up within {timeout:?}; aborted, the primary is unchanged \
                     ({me}) and no write was lost (writes were paused for {} ms)",
                    paused.elapsed().as_millis()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    // 3. Record the new epoch: from here on the change is completed, never undone.
    let next = Known {
        epoch: highest + 1,
        primary: target,
    };
    if let Err(e) = shared.record(next) {
        unpause(local).await;
        return Err(refuse(
            500,
            format!("cannot write the state file: {e}; aborted, the primary is unchanged"),
        ));
    }
    // 4. Read-only here before the target becomes writable.
    let via = c.peer_addr(target);
    let demoted = local
        .cmd(&["REPLICAOF", &via.ip().to_string(), &via.port().to_string()])
        .await;
    // 5. Promote the target and write the epoch into it.
    let promoted = promote_remote(&mut remote, c, next).await;
    let pause = paused.elapsed();
    // 6. Resume: waiting writes now fail with READONLY and go to the new primary.
    unpause(local).await;
    if let Err(e) = demoted.and(promoted) {
        return Err(refuse(
            500,
            format!(
                "epoch {} → {to} is recorded but the switchover did not complete ({e}); the \
                 agents complete it when {to} is reachable (watch `georep status`)",
                next.epoch
            ),
        ));
    }
    let change = PrimaryChange {
        kind: "planned".into(),
        from: me.to_owned(),
        to: to.to_owned(),
        epoch: next.epoch,
        at_ms: now_ms(),
        duration_ms: started.elapsed().as_millis() as u64,
        write_pause_ms: Some(pause.as_millis() as u64),
        offset_gap: Some(0),
    };
    finish(shared, &change);
    tracing::info!(
        to,
        epoch = next.epoch,
        pause_ms = pause.as_millis() as u64,
        "planned switchover done"
    );
    Ok(change)
}

/// The emergency promotion of our own region.
pub(crate) async fn promote(shared: &Shared) -> Result<PrimaryChange, Refusal> {
    let c = &shared.config;
    let me = c.region_name().to_owned();
    let _claim = InProgress::claim(shared, format!("promotion of {me}"))?;
    let _round = shared.round_lock.lock().await;
    let started = Instant::now();
    let known = shared.known();
    let (mut local, info) = local_replication(shared).await?;
    let fenced = shared.fenced.read().expect("not poisoned").is_some();
    if known.primary == c.region && info.get("role") == Some("master") && !fenced {
        return Err(refuse(
            409,
            format!("{me} is already the primary (epoch {})", known.epoch),
        ));
    }
    if known.primary != c.region {
        if let Some(primary) = serving_primary(shared, known.primary).await {
            return Err(refuse(
                409,
                format!(
                    "the primary {primary} is reachable from {me} and serving writes; an emergency \
                     promotion would lose its unreplicated writes: use `georep failover --to {me}` \
                     (no loss) instead"
                ),
            ));
        }
    }
    let offset_gap = shared
        .last_offsets
        .lock()
        .expect("not poisoned")
        .and_then(|(primary, _)| {
            let ours = u64::try_from(info.int("slave_repl_offset")?).ok()?;
            Some(primary.saturating_sub(ours))
        });
    let next = Known {
        epoch: known.epoch.max(highest_seen(shared).await) + 1,
        primary: c.region,
    };
    shared.record(next).map_err(|e| {
        refuse(
            500,
            format!("cannot write the state file: {e}; nothing changed"),
        )
    })?;
    *shared.fenced.write().expect("not poisoned") = None;
    let epoch = next.epoch.to_string();
    local
        .cmd(&["REPLICAOF", "NO", "ONE"])
        .await
        .map_err(|e| refuse(500, format!("REPLICAOF NO ONE failed: {e}")))?;
    local
        .cmd(&["CONFIG", "SET", "min-replicas-to-write", "0"])
        .await
        .map_err(|e| refuse(500, format!("lifting the fence failed: {e}")))?;
    local
        .cmd(&[
            "HSET",
            META,
            "epoch",
            epoch.as_str(),
            "primary",
            me.as_str(),
        ])
        .await
        .map_err(|e| refuse(500, format!("writing the epoch failed: {e}")))?;
    let change = PrimaryChange {
        kind: "emergency".into(),
        from: c.topology.regions[known.primary].name.clone(),
        to: me.clone(),
        epoch: next.epoch,
        at_ms: now_ms(),
        duration_ms: started.elapsed().as_millis() as u64,
        write_pause_ms: None,
        offset_gap,
    };
    finish(shared, &change);
    tracing::warn!(
        epoch = next.epoch,
        ?offset_gap,
        "emergency promotion: this region is the primary"
    );
    Ok(change)
}

/// Region `i`'s name if its Redis answers through our tunnel as an unfenced primary.
async fn serving_primary(shared: &Shared, i: usize) -> Option<String> {
    let c = &shared.config;
    let mut conn = Conn::connect(
        c.peer_addr(i),
        Some(&c.passwords.admin_login()),
        Duration::from_secs(1),
    )
    .await
    .ok()?;
    let info = conn.info(&["replication"]).await.ok()?;
    let fence = conn
        .cmd(&["CONFIG", "GET", "min-replicas-to-write"])
        .await
        .ok()?;
    let unfenced = matches!(&fence, resp::Value::Array(Some(v)) if v.get(1).and_then(resp::Value::text).as_deref() == Some("0"));
    (info.get("role") == Some("master") && unfenced).then(|| c.topology.regions[i].name.clone())
}

/// The highest epoch held by any reachable region (so a new epoch is above all of them).
async fn highest_seen(shared: &Shared) -> u64 {
    let c = &shared.config;
    let mut highest = 0;
    for i in 0..c.topology.regions.len() {
        let addr = if i == c.region {
            c.redis
        } else {
            c.peer_addr(i)
        };
        let Ok(mut conn) = Conn::connect(
            addr,
            Some(&c.passwords.admin_login()),
            Duration::from_secs(1),
        )
        .await
        else {
            continue;
        };
        if let Ok(Some(k)) = read_meta(&mut conn, c).await {
            highest = highest.max(k.epoch);
        }
    }
    highest
}

fn finish(shared: &Shared, change: &PrimaryChange) {
    let m = &shared.metrics;
    m.failovers
        .get_or_create(&vec![("kind".to_string(), change.kind.clone())])
        .inc();
    m.last_change_duration_ms.set(change.duration_ms as i64);
    if let Some(p) = change.write_pause_ms {
        m.last_write_pause_ms.set(p as i64);
    }
    *shared.last_change.write().expect("not poisoned") = Some(change.clone());
}
