//! What the agent's tasks share: the configuration, and four `watch` channels, each written by
//! one kind of task and read (or subscribed to) by the others.
//!
//! Why channels and not locks: a `watch` never poisons (a task that panics while holding a std
//! lock would turn every later `lock()` into a panic), readers never block the writer for long,
//! and other tasks can `subscribe()` and wake on every change — the primary endpoint and the
//! Sentinel-compatible port planned next follow [`ClusterView`] that way.
//!
//! | channel | written by | read by |
//! | --- | --- | --- |
//! | `view` ([`ClusterView`]) | control round, change of primary | everyone: heartbeat, HTTP, future endpoints |
//! | `status` ([`RegionStatus`]) | control round (report) | HTTP `/status`, `/readyz` |
//! | `changes` ([`Changes`]) | change of primary | HTTP, control round (report) |
//! | `progress` ([`Progress`]) | heartbeat reader, control round | control round, forced promotion |
//! | `fallback` ([`Fallback`]) | control round | the relay's follower task, the next round |

use std::collections::HashMap;

use tokio::sync::watch;
use topology::RegionId;

use crate::cluster_view::Known;
use crate::config::AgentConfig;
use crate::metrics::AgentMetrics;
use crate::plan::{LagTracker, Role};
use crate::relay_fallback::Fallback;
use crate::status::{PrimaryChange, RegionStatus};

/// The control loop's view of the cluster: who is primary at which epoch, and whether our own
/// Redis is fenced. Subscribe with [`Shared::watch_view`] to learn of every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The highest (epoch, primary) known, as the last control round (or a change) set it.
    pub known: Known,
    /// Set while our Redis is held read-only for want of a confirmation (see
    /// [`crate::cluster_view`]): why.
    pub fenced: Option<String>,
    /// Set by the agent carrying out a change of primary from the moment it records the new
    /// epoch until the new primary serves: the old primary is being demoted, the new one not yet
    /// promoted, so the primary endpoint holds new clients and closes the old primary's.
    pub changing: bool,
}

/// Changes of primary carried out by this agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The change in progress, if any (`failover to X`): one at a time.
    pub in_progress: Option<String>,
    /// The last change that completed.
    pub last: Option<PrimaryChange>,
}

/// Replication progress measured between rounds.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Heartbeat lag.
    pub heartbeat: LagTracker,
    /// The primary's `master_repl_offset` and ours, as last seen together by the control loop.
    pub offsets: Option<(u64, u64)>,
}

/// Everything the agent's tasks share.
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) metrics: AgentMetrics,
    /// Our tunnel clients' metrics, by region, for a link's failure reason.
    pub(crate) links: HashMap<RegionId, tunnel::TunnelMetrics>,
    /// Held by each control round and by a change of primary for its whole duration, so the
    /// loop never acts on a half-done change.
    pub(crate) round: tokio::sync::Mutex<()>,
    view: watch::Sender<ClusterView>,
    pub(crate) status: watch::Sender<RegionStatus>,
    pub(crate) changes: watch::Sender<Changes>,
    pub(crate) progress: watch::Sender<Progress>,
    /// The region's relay, when the agent runs one (set once at start).
    pub(crate) relay: std::sync::OnceLock<crate::relay_placement::RelayHandle>,
    /// Which relay is bypassed because it cannot store ([`crate::relay_fallback`]).
    pub(crate) fallback: watch::Sender<Fallback>,
}

impl Shared {
    /// The state at start: the epoch from the state file (else the topology's primary at epoch
    /// 1), fenced until the first round has looked at the other regions.
    pub(crate) fn new(
        config: AgentConfig,
        metrics: AgentMetrics,
        links: HashMap<RegionId, tunnel::TunnelMetrics>,
    ) -> Self {
        let known = persisted(&config).unwrap_or(Known {
            epoch: 1,
            primary: config.topology.primary,
        });
        let view = ClusterView {
            known,
            fenced: Some("starting".into()),
            changing: false,
        };
        let status = RegionStatus {
            name: config.region_name().to_owned(),
            redis_addr: config.redis.to_string(),
            primary_endpoint: config.primary_endpoint.map(|a| a.to_string()),
            sentinel_addr: config.sentinel.map(|a| a.to_string()),
            primary: config.topology.regions[known.primary].name.clone(),
            ..RegionStatus::default()
        };
        Self {
            config,
            metrics,
            links,
            round: tokio::sync::Mutex::new(()),
            view: watch::Sender::new(view),
            status: watch::Sender::new(status),
            changes: watch::Sender::new(Changes::default()),
            progress: watch::Sender::new(Progress::default()),
            relay: std::sync::OnceLock::new(),
            fallback: watch::Sender::new(Fallback::default()),
        }
    }

    /// The current view.
    pub(crate) fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    /// A receiver that sees every later change of the view.
    pub(crate) fn watch_view(&self) -> watch::Receiver<ClusterView> {
        self.view.subscribe()
    }

    /// The highest (epoch, primary) known.
    pub(crate) fn known(&self) -> Known {
        self.view.borrow().known
    }

    /// Whether our Redis is held fenced.
    pub(crate) fn fenced(&self) -> Option<String> {
        self.view.borrow().fenced.clone()
    }

    /// Sets the fence reason (`None`: unfenced).
    pub(crate) fn set_fenced(&self, why: Option<String>) {
        self.view.send_if_modified(|v| {
            let changed = v.fenced != why;
            v.fenced = why;
            changed
        });
    }

    /// Marks a change of primary as under way (or over).
    pub(crate) fn set_changing(&self, changing: bool) {
        self.view.send_if_modified(|v| {
            let changed = v.changing != changing;
            v.changing = changing;
            changed
        });
    }

    /// Sets the known epoch and records it in the state file.
    pub(crate) fn record(&self, known: Known) -> std::io::Result<()> {
        let c = &self.config;
        self.view.send_if_modified(|v| {
            let changed = v.known != known;
            v.known = known;
            changed
        });
        // The audit ring in the same file is kept as it is.
        crate::state::update(&c.state_dir, |s| crate::state::State {
            epoch: known.epoch,
            primary: c.topology.regions[known.primary].name.clone(),
            changes: s.map(|s| s.changes).unwrap_or_default(),
        })?;
        if let Some(path) = &c.redis_conf {
            crate::pod_conf::write(path, &c.topology, c.region, known.primary)?;
        }
        Ok(())
    }

    /// The role our Redis should have, given the known primary: in a replica region, our relay,
    /// or our relay's upstream while our relay cannot store ([`crate::relay_fallback`]).
    pub(crate) fn desired_role(&self) -> Role {
        let c = &self.config;
        let known = self.known();
        if known.primary == c.region {
            Role::Primary
        } else {
            let addr = self.follow_addr(known.primary);
            Role::Replica {
                host: addr.ip().to_string(),
                port: addr.port(),
            }
        }
    }

    /// What our Redis replicates from while `primary` (another region) is the primary: our
    /// relay if we run one, past it while it cannot store, else our tunnel client to `primary`.
    pub(crate) fn follow_addr(&self, primary: RegionId) -> std::net::SocketAddr {
        let fallback = *self.fallback.borrow();
        let mut view = self.view();
        view.known.primary = primary;
        self.relay
            .get()
            .filter(|_| fallback.bypassed)
            .and_then(|h| h.route(&view, fallback))
            .unwrap_or_else(|| self.config.follow_addr(primary))
    }

    /// Claims the one change-of-primary slot, or says which change holds it.
    pub(crate) fn claim_change(&self, what: String) -> Result<ChangeClaim<'_>, String> {
        let mut holder = None;
        self.changes.send_if_modified(|c| match &c.in_progress {
            Some(other) => {
                holder = Some(other.clone());
                false
            }
            None => {
                c.in_progress = Some(what);
                true
            }
        });
        match holder {
            Some(other) => Err(other),
            None => Ok(ChangeClaim(self)),
        }
    }
}

/// The change-of-primary slot, released on drop (whatever the outcome).
pub(crate) struct ChangeClaim<'a>(&'a Shared);

impl Drop for ChangeClaim<'_> {
    fn drop(&mut self) {
        self.0.changes.send_modify(|c| c.in_progress = None);
    }
}

/// The known epoch from the state file.
pub(crate) fn persisted(config: &AgentConfig) -> Option<Known> {
    let s = crate::state::load(&config.state_dir)?;
    let primary = config.topology.region(&s.primary)?.index;
    Some(Known {
        epoch: s.epoch,
        primary,
    })
}
