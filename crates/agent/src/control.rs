//! The control loop. One round = [`observe`] (our Redis) and [`Round::observe_peers`] (every
//! other region's `georep:meta`) → [`Round::decide`] (the pure [`cluster_view::decide`], recorded in the shared
//! view) → [`Round::act`] (the pure [`plan::plan`] carried out, an interrupted switchover
//! completed) → [`crate::report`] (the status and metrics served over HTTP).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster_view::{self, Decision, Known, Memory, Observation, Outcome, Peer};
use crate::commands::{Meta, Redis, META};
use crate::config::AgentConfig;
use crate::plan::{self, Action, Desired, Observed, Role};
use crate::report::{self, ReplicaMemory};
use crate::shared::{persisted, Shared};
use crate::shutdown::Shutdown;
use crate::status::RegionStatus;
use topology::RegionId;

/// How long any single Redis command may take before the round is abandoned.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// How long reading another region's Redis may take before it counts as unreachable.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// Between rounds, how often our Redis is glanced at for a change of primary under way.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Runs until `shutdown`, one round per `reconcile_every`, and one at once whenever our Redis
/// shows a change of primary under way ([`Round::change_under_way`]): a region learns the new
/// epoch, and its primary endpoint and Sentinel port move, within a fraction of a second of the
/// promotion instead of at its next round.
pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let mut round = Round::default();
    let mut due = Instant::now();
    loop {
        loop {
            let wake = (Instant::now() + WATCH_EVERY).min(due);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = shutdown.wait() => return,
            }
            if Instant::now() >= due || round.change_under_way(&shared).await {
                break;
            }
        }
        due = Instant::now() + shared.config.reconcile_every;
        let status = round.run(&shared).await;
        report::publish(&shared, status);
    }
}

/// Connections and memory kept from one round to the next.
#[derive(Default)]
struct Round {
    local: Option<Redis>,
    /// Admin connections to other regions' Redis, through our tunnel clients.
    peers: HashMap<RegionId, Redis>,
    memory: Memory,
    /// A planned switchover pauses writes for longer than it should ever take; a restarted
    /// agent lifts a pause its predecessor left behind once the role is settled.
    unpaused: bool,
    replica: ReplicaMemory,
    fallback: crate::relay_fallback::Memory,
}

/// What [`observe`] saw of our own Redis.
struct Seen {
    role: Option<Role>,
    fence_on: bool,
    meta: Option<Known>,
    /// Why our `georep:meta` holds what no agent writes: a primary rewrites it.
    meta_damaged: Option<&'static str>,
    /// Its replication offset (`slave_repl_offset` on a replica, `master_repl_offset` on a
    /// primary): what a relay must hold before what bypassed it comes back.
    offset: Option<u64>,
}

impl Round {
    async fn run(&mut self, shared: &Shared) -> RegionStatus {
        let c = &shared.config;
        let _round = shared.round.lock().await;
        let known = shared.known();
        let mut status = RegionStatus {
            name: c.region_name().to_owned(),
            redis_addr: c.redis.to_string(),
            primary_endpoint: c.primary_endpoint.map(|a| a.to_string()),
            sentinel_addr: c.sentinel.map(|a| a.to_string()),
            primary: c.topology.regions[known.primary].name.clone(),
            epoch: Some(known.epoch),
            ..RegionStatus::default()
        };
        if let Err(e) = self.reconcile(shared, &mut status).await {
            tracing::warn!(error = %e, "control round failed");
            self.local = None;
            status.error = Some(e.to_string());
        }
        status.fenced = shared.fenced();
        crate::relay_placement::report(shared, &mut status);
        status.last_change = shared.changes.borrow().last.clone();
        status
    }

    async fn reconcile(
        &mut self,
        shared: &Shared,
        status: &mut RegionStatus,
    ) -> Result<(), resp::Error> {
        let c = &shared.config;
        // Dropped on any error: the next round reconnects.
        let mut local = match self.local.take() {
            Some(r) => r,
            None => {
                let r = Redis::connect(c.redis, &c.passwords, COMMAND_TIMEOUT).await?;
                tracing::info!(redis = %c.redis, "connected to Redis");
                r
            }
        };
        status.redis_up = true;
        let mut seen = observe(&mut local, c).await?;
        let (mut peers, mut damaged, lease) = self.observe_peers(c, shared.known()).await;
        // An absurd epoch is damage too: the region's own agent rewrites it, no other does.
        for region in crate::epoch_guard::screen(shared, &mut seen.meta, &mut peers) {
            if region == c.region {
                seen.meta_damaged.get_or_insert("implausible epoch");
            }
            damaged.push(region);
        }
        let outcome = self.decide(shared, &seen, peers);
        status.primary = c.topology.regions[outcome.known.primary].name.clone();
        status.epoch = Some(outcome.known.epoch);
        // Before acting: our Redis's master this round depends on it.
        let facts = crate::relay_fallback::Facts {
            known: outcome.known,
            serving_primary: outcome.known.primary == c.region
                && outcome.decision == Decision::Primary,
            redis_offset: seen.offset,
            lease,
        };
        crate::relay_fallback::step(shared, &mut self.fallback, &facts);
        self.act(shared, &mut local, &seen, &outcome, &damaged)
            .await?;
        let info = local.info(&["replication", "stats", "keyspace"]).await?;
        let primary = outcome.known.primary;
        let peer = self.peers.get_mut(&primary).filter(|_| primary != c.region);
        if !report::fill(shared, &mut self.replica, &info, peer, primary, status).await {
            self.peers.remove(&primary);
        }
        self.local = Some(local);
        Ok(())
    }

    /// Whether our Redis shows a change of primary under way: a live switchover mark (written
    /// before the pause, it replicates to every region) or an epoch above the one we know
    /// (replicated from a new primary). Two commands on our own Redis; while the mark lives
    /// (the switchover's timeout and a margin) rounds follow each other back to back.
    async fn change_under_way(&mut self, shared: &Shared) -> bool {
        let Some(local) = self.local.as_mut() else {
            return false;
        };
        let known = shared.known();
        let seen = async {
            let mark = local.switchover_mark().await?;
            let meta = local.read_meta(&shared.config.topology).await?;
            Ok::<_, resp::Error>(mark.is_some() || meta.is_some_and(|m| m.epoch > known.epoch))
        };
        match seen.await {
            Ok(under_way) => under_way,
            Err(e) => {
                // The round at its time reconnects (and reports the error).
                tracing::debug!(error = %e, "cannot look for a change of primary");
                self.local = None;
                false
            }
        }
    }

    /// Reads every other region's `georep:meta` through our tunnel clients, all at once: the
    /// round costs one WAN round trip, not one per region, so a region learns a new epoch sooner.
    /// Also returns the regions whose metadata is damaged (counted as absent, left to their own
    /// agent to repair) and, with a relay, the relay-bypass lease of the region `known` names
    /// primary ([`crate::relay_fallback`]), read on the same connection.
    async fn observe_peers(
        &mut self,
        c: &AgentConfig,
        known: Known,
    ) -> (Vec<(RegionId, Peer)>, Vec<RegionId>, Option<PrimaryLease>) {
        let reads: Vec<_> = c
            .other_regions()
            .map(|i| {
                let held = self.peers.remove(&i);
                let wants_lease = c.relay.is_some() && i == known.primary;
                async move {
                    let read = async {
                        let mut r = match held {
                            Some(r) => r,
                            None => {
                                Redis::connect(c.peer_addr(i), &c.passwords, PEER_TIMEOUT).await?
                            }
                        };
                        let meta = r.read_meta_checked(&c.topology).await?;
                        // Not fatal: a lease not read this round leaves the last one standing.
                        let lease = match wants_lease {
                            true => r.relay_lease().await.ok(),
                            false => None,
                        };
                        Ok::<_, resp::Error>((r, meta, lease))
                    };
                    (i, read.await)
                }
            })
            .collect();
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        let mut primary_lease = None;
        for (i, read) in futures_util::future::join_all(reads).await {
            match read {
                Ok((r, meta, lease)) => {
                    self.peers.insert(i, r);
                    if let Some(lease) = lease {
                        primary_lease = Some((i, lease));
                    }
                    if let Meta::Damaged(why) = meta {
                        let region = &c.topology.regions[i].name;
                        tracing::debug!(%region, why, "damaged georep:meta there: ignored as absent");
                        damaged.push(i);
                    }
                    out.push((i, Peer::Reached { meta: meta.known() }));
                }
                Err(e) => {
                    tracing::debug!(region = %c.topology.regions[i].name, error = %e, "peer unreachable");
                    out.push((i, Peer::Unreachable));
                }
            }
        }
        (out, damaged, primary_lease)
    }

    /// Who should be primary (every epoch we can see, highest wins), recorded in the shared view
    /// and the state file.
    fn decide(&mut self, shared: &Shared, seen: &Seen, peers: Vec<(RegionId, Peer)>) -> Outcome {
        let c = &shared.config;
        let observation = Observation {
            me: c.region,
            bootstrap_primary: c.topology.primary,
            persisted: persisted(c),
            local_meta: seen.meta,
            local_is_primary: seen.role == Some(Role::Primary) && !seen.fence_on,
            peers,
            now_ms: crate::now_ms(),
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
        shared.set_fenced(match &outcome.decision {
            Decision::Fenced(why) => Some(why.clone()),
            _ => None,
        });
        outcome
    }

    /// Takes our Redis to the decided role and settings, completes an interrupted switchover,
    /// keeps the ACL and lifts a pause left by a dead predecessor. `damaged`: regions whose
    /// metadata is damaged, which no other agent writes over.
    async fn act(
        &mut self,
        shared: &Shared,
        local: &mut Redis,
        seen: &Seen,
        outcome: &Outcome,
        damaged: &[RegionId],
    ) -> Result<(), resp::Error> {
        let c = &shared.config;
        let role = match &outcome.decision {
            Decision::Hold => seen.role.clone().unwrap_or_else(|| shared.desired_role()),
            _ => shared.desired_role(),
        };
        let fenced = matches!(outcome.decision, Decision::Fenced(_))
            || (outcome.decision == Decision::Hold && seen.fence_on);
        let desired = desired(c, role, fenced);
        let names: Vec<&str> = desired.config.iter().map(|(n, _)| *n).collect();
        let observed = Observed {
            role: seen.role.clone(),
            config: local.config_get(&names).await?,
        };
        let actions = plan::plan(&desired, &observed);
        shared.metrics.reconcile_actions.set(actions.len() as i64);
        for action in &actions {
            apply(local, action).await?;
        }
        if outcome.decision == Decision::Primary && seen.meta != Some(outcome.known) {
            if let Some(why) = seen.meta_damaged {
                tracing::warn!(key = META, why, "repairing the cluster metadata");
                shared.metrics.repaired(META);
            }
            local.write_meta(outcome.known, &c.topology).await?;
        }
        // After our own role is settled (an old primary is read-only first).
        if let Some(target) = outcome.complete_on.filter(|t| !damaged.contains(t)) {
            self.complete_switchover(c, target, outcome.known).await;
        }
        local.ensure_acl().await?;
        if !self.unpaused {
            local.unpause().await?;
            self.unpaused = true;
        }
        self.keep_relay_lease(shared, local, outcome).await
    }

    /// In the primary region: while our relay is bypassed, the lease that tells the other
    /// regions' relays to follow our Redis, refreshed every round; deleted once the relay is
    /// back. Only an unfenced primary writes it.
    async fn keep_relay_lease(
        &mut self,
        shared: &Shared,
        local: &mut Redis,
        outcome: &Outcome,
    ) -> Result<(), resp::Error> {
        let c = &shared.config;
        let serving = outcome.known.primary == c.region && outcome.decision == Decision::Primary;
        let bypassed = shared.fallback.borrow().bypassed;
        if serving && bypassed {
            let value = crate::relay_fallback::lease_value(outcome.known, c.region_name());
            let ttl = crate::relay_fallback::lease_ttl(c.reconcile_every);
            local.set_relay_lease(&value, ttl).await?;
            self.fallback.lease_written = true;
        } else if self.fallback.lease_written {
            // Demoted meanwhile: a replica cannot delete it; it names our epoch and region, so
            // the others ignore it, and it expires.
            if serving {
                local.clear_relay_lease().await?;
            }
            self.fallback.lease_written = false;
        }
        Ok(())
    }

    async fn complete_switchover(&mut self, c: &AgentConfig, target: RegionId, known: Known) {
        tracing::warn!(
            region = %c.topology.regions[target].name,
            epoch = known.epoch,
            "completing an interrupted switchover: promoting the recorded primary"
        );
        if let Some(r) = self.peers.get_mut(&target) {
            if let Err(e) = r.promote_at(known, &c.topology).await {
                tracing::warn!(error = %e, "cannot complete the switchover yet");
                self.peers.remove(&target);
            }
        }
    }
}

/// The relay-bypass lease as read from a region's Redis: the region, and the value if any.
type PrimaryLease = (RegionId, Option<String>);

/// The settings georep keeps on our Redis, from the same table as redis.conf.
fn desired(c: &AgentConfig, role: Role, fenced: bool) -> Desired {
    let run = region_spec::redis_conf::RunTime {
        primary: role == Role::Primary,
        fenced,
        announce_port: c.announce_port_base + c.region.index() as u16,
        masterauth: c.passwords.replication.expose(),
    };
    Desired {
        role,
        config: region_spec::redis_conf::run_time(&c.topology, &run),
    }
}

/// Our Redis's role, fence and meta.
async fn observe(local: &mut Redis, c: &AgentConfig) -> Result<Seen, resp::Error> {
    let meta = local.read_meta_checked(&c.topology).await?;
    let replication = local.info(&["replication"]).await?;
    let offset = ["slave_repl_offset", "master_repl_offset"]
        .iter()
        .find_map(|f| replication.int(f))
        .and_then(|o| u64::try_from(o).ok());
    Ok(Seen {
        offset,
        role: observed_role(&replication),
        fence_on: local.fence_on().await?,
        meta: meta.known(),
        meta_damaged: match meta {
            Meta::Damaged(why) => Some(why),
            Meta::Absent | Meta::Valid(_) => None,
        },
    })
}

fn observed_role(info: &resp::Info) -> Option<Role> {
    match info.get("role")? {
        "master" => Some(Role::Primary),
        "slave" => Some(Role::Replica {
            host: info.get("master_host")?.to_owned(),
            port: info.get("master_port")?.parse().ok()?,
        }),
        _ => None,
    }
}

async fn apply(local: &mut Redis, action: &Action) -> Result<(), resp::Error> {
    match action {
        Action::ConfigSet(name, value) => {
            // Never log values: masterauth is a password.
            tracing::info!(parameter = name, "CONFIG SET");
            local.config_set(name, value).await
        }
        Action::Promote => {
            tracing::info!("REPLICAOF NO ONE: becoming primary");
            local.become_primary().await
        }
        Action::Follow { host, port } => {
            tracing::info!(%host, port, "REPLICAOF: following the primary through the tunnel");
            local.follow(host, *port).await
        }
    }
}
