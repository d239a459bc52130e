//! The control loop: observe Redis, correct it, publish status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use resp::{Conn, Info, Value};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::credentials::{Passwords, REPLICATION_USER};
use crate::metrics::AgentMetrics;
use crate::plan::{self, Action, Desired, LagTracker, Observed, Role};
use crate::status::RegionStatus;

/// How long any single Redis command may take before the round is abandoned.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// What the control loop shares with the HTTP server and the heartbeat tasks.
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) status: RwLock<RegionStatus>,
    pub(crate) metrics: AgentMetrics,
    pub(crate) lag: Mutex<LagTracker>,
    /// Our tunnel client to the primary's region, for its failure reason.
    pub(crate) primary_link: Option<tunnel::TunnelMetrics>,
}

impl Shared {
    pub(crate) fn desired_role(&self) -> Role {
        let c = &self.config;
        if c.topology.primary == c.region {
            Role::Primary
        } else {
            let addr = c.peer_addr(c.topology.primary);
            Role::Replica {
                host: addr.ip().to_string(),
                port: addr.port(),
            }
        }
    }

    /// The configuration georep keeps on every Redis, role-dependent where persistence differs.
    fn desired(&self) -> Desired {
        let c = &self.config;
        let redis = &c.topology.redis;
        let role = self.desired_role();
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
    primary: Option<Conn>,
    link_was_up: bool,
    primary_syncs: Option<(u64, u64)>,
    last_sync: Option<String>,
}

impl Round {
    async fn run(&mut self, shared: &Shared) -> RegionStatus {
        let c = &shared.config;
        let mut status = RegionStatus {
            name: c.region_name().to_owned(),
            role: "unknown".into(),
            redis_addr: c.redis.to_string(),
            primary: c.topology.regions[c.topology.primary].name.clone(),
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
        status
    }

    async fn reconcile(
        &mut self,
        shared: &Shared,
        status: &mut RegionStatus,
    ) -> Result<(), resp::Error> {
        let c = &shared.config;
        let conn = match &mut self.local {
            Some(conn) => conn,
            None => {
                let login = c.passwords.admin_login();
                let conn = Conn::connect(c.redis, Some(&login), COMMAND_TIMEOUT).await?;
                tracing::info!(redis = %c.redis, "connected to Redis");
                self.local.insert(conn)
            }
        };
        status.redis_up = true;

        let desired = shared.desired();
        let names: Vec<&str> = desired.config.iter().map(|(n, _)| *n).collect();
        let observed = Observed {
            role: observed_role(&conn.info(&["replication"]).await?),
            config: config_get(conn, &names).await?,
        };
        let actions = plan::plan(&desired, &observed);
        shared.metrics.reconcile_actions.set(actions.len() as i64);
        for action in &actions {
            apply(conn, action).await?;
        }
        ensure_acl(conn, &c.passwords).await?;

        let info = conn.info(&["replication", "stats", "keyspace"]).await?;
        let is_primary = info.get("role") == Some("master");
        status.role = if is_primary { "primary" } else { "replica" }.into();
        status.keys = info.keys();
        status.ops_per_sec = info.int("instantaneous_ops_per_sec").unwrap_or(0).max(0) as u64;
        if is_primary {
            // The epoch and primary's name live in the data, so every replica holds them too.
            conn.cmd(&["HSETNX", "georep:meta", "epoch", "1"]).await?;
            conn.cmd(&["HSET", "georep:meta", "primary", c.region_name()])
                .await?;
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
            self.replica_view(shared, &info, status).await;
        }
        let epoch = self
            .local
            .as_mut()
            .expect("connected")
            .cmd(&["HGET", "georep:meta", "epoch"])
            .await?;
        status.epoch = epoch.text().and_then(|e| e.parse().ok());
        Ok(())
    }

    /// Link state, lag and the last resync, as a replica sees them.
    async fn replica_view(&mut self, shared: &Shared, info: &Info, status: &mut RegionStatus) {
        let c = &shared.config;
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
        match self.primary_info(c).await {
            Ok(p) => {
                let (full, partial) = (
                    uint(&p, "sync_full").unwrap_or(0),
                    uint(&p, "sync_partial_ok").unwrap_or(0),
                );
                if let (Some(po), Some(ro)) = (uint(&p, "master_repl_offset"), status.repl_offset) {
                    status.lag_bytes = Some(po.saturating_sub(ro));
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
            Err(e) => {
                self.primary = None;
                tracing::debug!(error = %e, "primary not reachable through the tunnel");
            }
        }
        self.link_was_up = link_up;
        status.last_sync = self.last_sync.clone();
        if !link_up {
            status.link_error = Some(
                match shared.primary_link.as_ref().and_then(|m| m.last_failure()) {
                    Some(f) => format!("tunnel: {} ({})", f.reason, f.message),
                    None => match info.int("master_link_down_since_seconds") {
                        Some(s) if s >= 0 => format!("replication link down for {s}s"),
                        _ => "replication link not established yet".into(),
                    },
                },
            );
        }
    }

    async fn primary_info(&mut self, c: &AgentConfig) -> Result<Info, resp::Error> {
        let conn = match &mut self.primary {
            Some(conn) => conn,
            None => {
                let login = c.passwords.admin_login();
                let addr = c.peer_addr(c.topology.primary);
                self.primary
                    .insert(Conn::connect(addr, Some(&login), COMMAND_TIMEOUT).await?)
            }
        };
        conn.info(&["replication", "stats"]).await
    }
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
async fn ensure_acl(conn: &mut Conn, passwords: &Passwords) -> Result<(), resp::Error> {
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
        let _ = passwords;
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
