//! The control loop: observe Redis, correct it, publish status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use resp::{Conn, Info, Value};
use tokio::sync::watch;

use crate::cluster_view::{self, Decision, Known, Memory, Observation, Peer};
use crate::config::AgentConfig;
use crate::credentials::REPLICATION_USER;
use crate::metrics::AgentMetrics;
use crate::plan::{self, Action, Desired, LagTracker, Observed, Role};
use crate::status::{PrimaryChange, RegionStatus};

/// How long any single Redis command may take before the round is abandoned.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// What the control loop shares with the HTTP server and the heartbeat tasks.
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) status: RwLock<RegionStatus>,
    pub(crate) metrics: AgentMetrics,
    pub(crate) lag: Mutex<LagTracker>,
    /// The highest (epoch, primary) known, as the last control round (or a change) set it.
    pub(crate) known: RwLock<Known>,
    /// Set while our Redis is held read-only for want of a confirmation (see [`cluster_view`]).
    pub(crate) fenced: RwLock<Option<String>>,
    /// Held by each control round and by a change of primary for its whole duration, so the
    /// loop never acts on a half-done change.
    pub(crate) round_lock: tokio::sync::Mutex<()>,
    /// The change of primary in progress, if any (`failover to X`): one at a time.
    pub(crate) change_in_progress: Mutex<Option<String>>,
    /// The last change of primary this agent carried out.
    pub(crate) last_change: RwLock<Option<PrimaryChange>>,
    /// The primary's `master_repl_offset` and ours, as last seen together by the control loop.
    pub(crate) last_offsets: Mutex<Option<(u64, u64)>>,
    /// Our tunnel clients' metrics, by region index, for a link's failure reason.
    pub(crate) links: HashMap<usize, tunnel::TunnelMetrics>,
}

impl Shared {
    pub(crate) fn known(&self) -> Known {
        *self.known.read().expect("not poisoned")
    }

    /// Sets the known epoch and records it in the state file.
    pub(crate) fn record(&self, known: Known) -> std::io::Result<()> {
        let c = &self.config;
        *self.known.write().expect("not poisoned") = known;
        crate::state::save(
            &c.state_dir,
            &crate::state::State {
                epoch: known.epoch,
                primary: c.topology.regions[known.primary].name.clone(),
            },
        )
    }

    pub(crate) fn desired_role(&self) -> Role {
        let c = &self.config;
        let known = self.known();
        if known.primary == c.region {
            Role::Primary
        } else {
            let addr = c.peer_addr(known.primary);
            Role::Replica {
                host: addr.ip().to_string(),
                port: addr.port(),
            }
        }
    }

    /// The known epoch from the state file (at start).
    pub(crate) fn persisted(config: &AgentConfig) -> Option<Known> {
        let s = crate::state::load(&config.state_dir)?;
        let primary = config.topology.region(&s.primary)?.index;
        Some(Known {
            epoch: s.epoch,
            primary,
        })
    }

    /// The configuration georep keeps on every Redis, role-dependent where persistence differs.
    fn desired(&self, role: Role, fenced: bool) -> Desired {
        let c = &self.config;
        let redis = &c.topology.redis;
        let mut config = vec![
            ("repl-backlog-size", redis.repl_backlog_bytes().to_string()),
            ("repl-timeout", "60".to_string()),
            ("repl-diskless-sync", "yes".to_string()),
            ("repl-diskless-sync-delay", "1".to_string()),
            // A WAN full sync of a large dataset must not be cut off by the output buffer limit
            // (the classic full-sync loop); 1 GiB hard, 512 MiB for 2 minutes soft.
            (
                "client-output-buffer-limit",
                "replica 1073741824 536870912 120".to_string(),
            ),
            ("replica-announce-ip", "127.0.0.1".to_string()),
            (
                "replica-announce-port",
                (c.announce_port_base + c.region as u16).to_string(),
            ),
            ("masteruser", REPLICATION_USER.to_string()),
            ("masterauth", c.passwords.replication.expose().to_string()),
            // The fence: a primary not confirmed yet accepts writes only with a replica attached
            // (a region whose agent agrees it is the primary).
            (
                "min-replicas-to-write",
                if fenced { "1" } else { "0" }.to_string(),
            ),
        ];
        match role {
            // The primary is the durable copy: every write in the AOF, fsynced each second.
            Role::Primary => config.extend([
                ("appendonly", "yes".to_string()),
                ("appendfsync", "everysec".to_string()),
                ("save", String::new()),
            ]),
            // Replicas persist RDB snapshots, which (unlike the AOF) carry the replication ID and
            // offset: a restarted replica resumes with a partial resync. Snapshots are taken
            // often enough that the backlog still holds what came after the last one.
            Role::Replica { .. } => config.extend([
                ("appendonly", "no".to_string()),
                (
                    "save",
                    format!("{} 1", (redis.outage_budget.as_secs() / 2).max(10)),
                ),
            ]),
        }
        Desired { role, config }
    }
}

/// Runs until `shutdown`, one round per `reconcile_every`.
pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut round = Round::default();
    let mut tick = tokio::time::interval(shared.config.reconcile_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let status = round.run(&shared).await;
        publish(&shared, status);
    }
}

/// Connections and memory kept from one round to the next.
#[derive(Default)]
struct Round {
    local: Option<Conn>,
    /// Admin connections to other regions' Redis, through our tunnel clients.
    peers: HashMap<usize, Conn>,
    memory: Memory,
    /// A planned switchover pauses writes for longer than it should ever take; a restarted
    /// agent lifts a pause its predecessor left behind once the role is settled.
    unpaused: bool,
    link_was_up: bool,
    followed: Option<usize>,
    primary_syncs: Option<(u64, u64)>,
    last_sync: Option<String>,
}

impl Round {
    async fn run(&mut self, shared: &Shared) -> RegionStatus {
        let c = &shared.config;
        let _round = shared.round_lock.lock().await;
        let mut status = RegionStatus {
            name: c.region_name().to_owned(),
            role: "unknown".into(),
            redis_addr: c.redis.to_string(),
            primary: c.topology.regions[shared.known().primary].name.clone(),
            epoch: Some(shared.known().epoch),
            link: "-".into(),
            ..RegionStatus::default()
        };
        match self.reconcile(shared, &mut status).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "control round failed");
                self.local = None;
                status.error = Some(e.to_string());
            }
        }
        status.fenced = shared.fenced.read().expect("not poisoned").clone();
        status.last_change = shared.last_change.read().expect("not poisoned").clone();
        status
    }

    /// Reads every other region's `georep:meta` through our tunnel clients.
    async fn observe_peers(&mut self, c: &AgentConfig) -> Vec<(usize, Peer)> {
        let mut out = Vec::new();
        for i in 0..c.topology.regions.len() {
            if i == c.region {
                continue;
            }
            let meta = match self.peers.get_mut(&i) {
                Some(conn) => read_meta(conn, c).await,
                None => match Conn::connect(
                    c.peer_addr(i),
                    Some(&c.passwords.admin_login()),
                    PEER_TIMEOUT,
                )
                .await
                {
                    Ok(conn) => read_meta(self.peers.entry(i).or_insert(conn), c).await,
                    Err(e) => Err(e),
                },
            };
            match meta {
                Ok(meta) => out.push((i, Peer::Reached { meta })),
                Err(e) => {
                    tracing::debug!(region = %c.topology.regions[i].name, error = %e, "peer unreachable");
                    self.peers.remove(&i);
                    out.push((i, Peer::Unreachable));
                }
            }
        }
        out
    }

    async fn reconcile(
        &mut self,
        shared: &Shared,
        status: &mut RegionStatus,
    ) -> Result<(), resp::Error> {
        let c = &shared.config;
        if self.local.is_none() {
            let login = c.passwords.admin_login();
            let conn = Conn::connect(c.redis, Some(&login), COMMAND_TIMEOUT).await?;
            tracing::info!(redis = %c.redis, "connected to Redis");
            self.local = Some(conn);
        }
        status.redis_up = true;

        // Who should be primary: every epoch we can see, highest wins.
        let conn = self.local.as_mut().expect("connected");
        let observed_role = observed_role(&conn.info(&["replication"]).await?);
        let fence_on = config_get(conn, &["min-replicas-to-write"])
            .await?
            .get("min-replicas-to-write")
            .is_some_and(|v| v != "0");
        let local_meta = read_meta(conn, c).await?;
        let peers = self.observe_peers(c).await;
        let observation = Observation {
            me: c.region,
            bootstrap_primary: c.topology.primary,
            persisted: Shared::persisted(c),
            local_meta,
            local_is_primary: observed_role == Some(Role::Primary) && !fence_on,
            peers,
            now_ms: now_ms(),
        };
        let outcome = cluster_view::decide(&observation, &mut self.memory);
        if outcome.persist || shared.known() != outcome.known {
            if outcome.known != shared.known() {
                tracing::info!(
                    epoch = outcome.known.epoch,
                    primary = %c.topology.regions[outcome.known.primary].name,
                    "learned the cluster epoch"
                );
            }
            if let Err(e) = shared.record(outcome.known) {
                tracing::warn!(error = %e, dir = %c.state_dir.display(), "cannot write the state file");
            }
        }
        *shared.fenced.write().expect("not poisoned") = match &outcome.decision {
            Decision::Fenced(why) => Some(why.clone()),
            _ => None,
        };
        let role = match &outcome.decision {
            Decision::Hold => observed_role
                .clone()
                .unwrap_or_else(|| shared.desired_role()),
            _ => shared.desired_role(),
        };
        status.primary = c.topology.regions[outcome.known.primary].name.clone();
        status.epoch = Some(outcome.known.epoch);

        let conn = self.local.as_mut().expect("connected");
        let fenced = matches!(outcome.decision, Decision::Fenced(_))
            || (outcome.decision == Decision::Hold && fence_on);
        let desired = shared.desired(role, fenced);
        let names: Vec<&str> = desired.config.iter().map(|(n, _)| *n).collect();
        let observed = Observed {
            role: observed_role,
            config: config_get(conn, &names).await?,
        };
        let actions = plan::plan(&desired, &observed);
        shared.metrics.reconcile_actions.set(actions.len() as i64);
        for action in &actions {
            apply(conn, action).await?;
        }
        // After our own role is settled (an old primary is read-only first).
        if let Some(target) = outcome.complete_on {
            tracing::warn!(
                region = %c.topology.regions[target].name,
                epoch = outcome.known.epoch,
                "completing an interrupted switchover: promoting the recorded primary"
            );
            if let Some(conn) = self.peers.get_mut(&target) {
                if let Err(e) = promote_remote(conn, c, outcome.known).await {
                    tracing::warn!(error = %e, "cannot complete the switchover yet");
                    self.peers.remove(&target);
                }
            }
        }
        let conn = self.local.as_mut().expect("connected");
        ensure_acl(conn).await?;
        if !self.unpaused {
            conn.cmd(&["CLIENT", "UNPAUSE"]).await?;
            self.unpaused = true;
        }

        let info = conn.info(&["replication", "stats", "keyspace"]).await?;
        let is_primary = info.get("role") == Some("master");
        status.role = if is_primary { "primary" } else { "replica" }.into();
        status.keys = info.keys();
        status.ops_per_sec = info.int("instantaneous_ops_per_sec").unwrap_or(0).max(0) as u64;
        if is_primary {
            if outcome.decision == Decision::Primary && local_meta != Some(outcome.known) {
                // The epoch and primary's name live in the data, so every replica holds them.
                let epoch = outcome.known.epoch.to_string();
                conn.cmd(&[
                    "HSET",
                    META,
                    "epoch",
                    epoch.as_str(),
                    "primary",
                    c.region_name(),
                ])
                .await?;
            }
            status.repl_offset = uint(&info, "master_repl_offset");
            status.lag_bytes = Some(0);
            status.lag_ms = Some(0);
            status.sync_full = uint(&info, "sync_full");
            status.sync_partial_ok = uint(&info, "sync_partial_ok");
            shared
                .metrics
                .sync_full
                .set(status.sync_full.unwrap_or(0) as i64);
            shared
                .metrics
                .sync_partial_ok
                .set(status.sync_partial_ok.unwrap_or(0) as i64);
            shared
                .metrics
                .sync_partial_err
                .set(info.int("sync_partial_err").unwrap_or(0));
        } else {
            self.replica_view(shared, outcome.known.primary, &info, status)
                .await;
        }
        Ok(())
    }

    /// Link state, lag and the last resync, as a replica sees them.
    async fn replica_view(
        &mut self,
        shared: &Shared,
        primary: usize,
        info: &Info,
        status: &mut RegionStatus,
    ) {
        let c = &shared.config;
        if self.followed != Some(primary) {
            // A new primary: its counters are not comparable with the previous one's.
            self.followed = Some(primary);
            self.primary_syncs = None;
            self.link_was_up = false;
            self.last_sync = None;
        }
        let link_up = info.get("master_link_status") == Some("up");
        status.link = if link_up { "up" } else { "down" }.into();
        status.repl_offset = uint(info, "slave_repl_offset");
        let now = now_ms();
        let interval = c.heartbeat_every.as_millis() as u64;
        status.lag_ms = shared
            .lag
            .lock()
            .expect("not poisoned")
            .lag_ms(now, interval);

        // The primary's offset and resync counters, read through our tunnel to its region.
        let reply = match (primary == c.region, self.peers.get_mut(&primary)) {
            (false, Some(conn)) => Some(conn.info(&["replication", "stats"]).await),
            _ => None,
        };
        match reply {
            Some(Ok(p)) => {
                let (full, partial) = (
                    uint(&p, "sync_full").unwrap_or(0),
                    uint(&p, "sync_partial_ok").unwrap_or(0),
                );
                if let (Some(po), Some(ro)) = (uint(&p, "master_repl_offset"), status.repl_offset) {
                    status.lag_bytes = Some(po.saturating_sub(ro));
                    *shared.last_offsets.lock().expect("not poisoned") = Some((po, ro));
                }
                if link_up && !self.link_was_up {
                    if let Some((f0, p0)) = self.primary_syncs {
                        if full > f0 {
                            self.last_sync = Some("full".into());
                        } else if partial > p0 {
                            self.last_sync = Some("partial".into());
                        }
                    }
                }
                if link_up || self.primary_syncs.is_none() {
                    self.primary_syncs = Some((full, partial));
                }
            }
            Some(Err(e)) => {
                self.peers.remove(&primary);
                tracing::debug!(error = %e, "primary not reachable through the tunnel");
            }
            None => {}
        }
        self.link_was_up = link_up;
        status.last_sync = self.last_sync.clone();
        if !link_up {
            let fenced = shared.fenced.read().expect("not poisoned").clone();
            status.link_error = Some(match fenced {
                Some(why) => format!("fenced: {why}"),
                None => match shared.links.get(&primary).and_then(|m| m.last_failure()) {
                    Some(f) => format!("tunnel: {} ({})", f.reason, f.message),
                    None => match info.int("master_link_down_since_seconds") {
                        Some(s) if s >= 0 => format!("replication link down for {s}s"),
                        _ => "replication link not established yet".into(),
                    },
                },
            });
        }
    }
}

/// The hash holding the epoch and the primary's name, in every Redis.
pub(crate) const META: &str = "georep:meta";

/// How long reading another region's Redis may take before it counts as unreachable.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis's `georep:meta`, if it holds one naming a region of the topology.
pub(crate) async fn read_meta(
    conn: &mut Conn,
    c: &AgentConfig,
) -> Result<Option<Known>, resp::Error> {
    let reply = conn.cmd(&["HMGET", META, "epoch", "primary"]).await?;
    let Value::Array(Some(fields)) = reply else {
        return Ok(None);
    };
    let epoch = fields
        .first()
        .and_then(Value::text)
        .and_then(|e| e.parse().ok());
    let primary = fields
        .get(1)
        .and_then(Value::text)
        .and_then(|p| c.topology.region(&p).map(|r| r.index));
    Ok(match (epoch, primary) {
        (Some(epoch), Some(primary)) => Some(Known { epoch, primary }),
        _ => None,
    })
}

/// Makes another region's Redis the primary at `known` (through our tunnel client to it).
pub(crate) async fn promote_remote(
    conn: &mut Conn,
    c: &AgentConfig,
    known: Known,
) -> Result<(), resp::Error> {
    conn.cmd(&["REPLICAOF", "NO", "ONE"]).await?;
    let epoch = known.epoch.to_string();
    let name = c.topology.regions[known.primary].name.as_str();
    conn.cmd(&["HSET", META, "epoch", epoch.as_str(), "primary", name])
        .await?;
    Ok(())
}

fn publish(shared: &Shared, status: RegionStatus) {
    let m = &shared.metrics;
    m.redis_up.set(i64::from(status.redis_up));
    m.is_primary.set(i64::from(status.role == "primary"));
    m.epoch.set(status.epoch.unwrap_or(0) as i64);
    m.link_up
        .set(i64::from(status.role == "primary" || status.link == "up"));
    m.lag_bytes.set(status.lag_bytes.unwrap_or(0) as i64);
    m.lag_ms.set(status.lag_ms.unwrap_or(0) as i64);
    m.keys.set(status.keys as i64);
    *shared.status.write().expect("not poisoned") = status;
}

fn observed_role(info: &Info) -> Option<Role> {
    match info.get("role")? {
        "master" => Some(Role::Primary),
        "slave" => Some(Role::Replica {
            host: info.get("master_host")?.to_owned(),
            port: info.get("master_port")?.parse().ok()?,
        }),
        _ => None,
    }
}

async fn config_get(
    conn: &mut Conn,
    names: &[&str],
) -> Result<HashMap<String, String>, resp::Error> {
    let mut args = vec!["CONFIG", "GET"];
    args.extend_from_slice(names);
    let mut out = HashMap::new();
    if let Value::Array(Some(items)) = conn.cmd(&args).await? {
        for pair in items.chunks(2) {
            if let [k, v] = pair {
                if let (Some(k), Some(v)) = (k.text(), v.text()) {
                    out.insert(k, v);
                }
            }
        }
    }
    Ok(out)
}

async fn apply(conn: &mut Conn, action: &Action) -> Result<(), resp::Error> {
    match action {
        Action::ConfigSet(name, value) => {
            // Never log values: masterauth is a password.
            tracing::info!(parameter = name, "CONFIG SET");
            conn.cmd(&["CONFIG", "SET", name, value.as_str()]).await?;
        }
        Action::Promote => {
            tracing::info!("REPLICAOF NO ONE: becoming primary");
            conn.cmd(&["REPLICAOF", "NO", "ONE"]).await?;
        }
        Action::Follow { host, port } => {
            tracing::info!(%host, port, "REPLICAOF: following the primary through the tunnel");
            conn.cmd(&["REPLICAOF", host.as_str(), &port.to_string()])
                .await?;
        }
    }
    Ok(())
}

/// Re-applies the ACL file if someone changed the users at runtime (or the default user is on).
async fn ensure_acl(conn: &mut Conn) -> Result<(), resp::Error> {
    let default = conn.cmd(&["ACL", "GETUSER", "default"]).await?;
    let default_off = match &default {
        Value::Array(Some(fields)) => fields
            .chunks(2)
            .find(|kv| kv.first().and_then(Value::text).as_deref() == Some("flags"))
            .and_then(|kv| kv.get(1))
            .is_some_and(|flags| matches!(flags, Value::Array(Some(f)) if f.iter().any(|x| x.text().as_deref() == Some("off")))),
        _ => false,
    };
    let users = conn.cmd(&["ACL", "USERS"]).await?;
    let names: Vec<String> = match users {
        Value::Array(Some(u)) => u.iter().filter_map(Value::text).collect(),
        _ => Vec::new(),
    };
    let expected = [
        crate::credentials::ADMIN_USER,
        REPLICATION_USER,
        crate::credentials::APP_USER,
    ];
    if !default_off || !expected.iter().all(|u| names.iter().any(|n| n == u)) {
        tracing::warn!("ACL users differ from the ACL file; reloading it");
        conn.cmd(&["ACL", "LOAD"]).await?;
    }
    Ok(())
}

fn uint(info: &Info, field: &str) -> Option<u64> {
    info.int(field).and_then(|v| u64::try_from(v).ok())
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
