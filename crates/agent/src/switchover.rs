//! Carries out changes of primary: the IO driver of the [`crate::change`] machines. It makes no
//! decision: it executes each action against Redis (through [`crate::commands`]) or the state
//! file and hands back what it saw.
//!
//! Each change runs on a task of its own, so a client that hangs up mid-switchover cannot cancel
//! it between the pause and the unpause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::change::{
    Action, ChangeError, Completed, Forced, ForcedStart, LocalView, Observation, Planned,
    PlannedStart, RedisRole, SwitchoverMark, STEP_TIMEOUT,
};
use crate::commands::Redis;
use crate::shared::Shared;
use crate::status::{ChangeKind, PrimaryChange};
use topology::RegionId;

/// How long reading another region's Redis may take before it counts as unreachable.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// The planned switchover to region `to`.
pub(crate) async fn failover(
    shared: Arc<Shared>,
    to: String,
    timeout: Duration,
) -> Result<PrimaryChange, ChangeError> {
    detached(async move { planned(&shared, &to, timeout).await }).await
}

/// The emergency promotion of our own region.
pub(crate) async fn promote(shared: Arc<Shared>) -> Result<PrimaryChange, ChangeError> {
    detached(async move { forced(&shared).await }).await
}

/// Holds [`crate::shared::ClusterView::changing`] from the recording of the new epoch to the end
/// of the change, whatever its outcome.
struct Changing<'a>(&'a Shared);

impl Changing<'_> {
    fn start(shared: &Shared) -> Changing<'_> {
        shared.set_changing(true);
        Changing(shared)
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.set_changing(false);
    }
}

async fn detached<F>(change: F) -> Result<PrimaryChange, ChangeError>
where
    F: std::future::Future<Output = Result<PrimaryChange, ChangeError>> + Send + 'static,
{
    tokio::spawn(change).await.unwrap_or_else(|e| {
        Err(ChangeError::Failed(format!(
            "the change's task failed: {e}"
        )))
    })
}

async fn planned(
    shared: &Shared,
    to: &str,
    timeout: Duration,
) -> Result<PrimaryChange, ChangeError> {
    let c = &shared.config;
    let target = c
        .topology
        .region(to)
        .ok_or_else(|| ChangeError::UnknownRegion(to.to_owned()))?
        .index;
    let started = Instant::now();
    let _claim = shared
        .claim_change(format!("failover to {to}"))
        .map_err(ChangeError::Busy)?;
    let _round = shared.round.lock().await;
    let view = shared.view();
    let (mut machine, mut action) = Planned::new(PlannedStart {
        names: names(shared),
        me: c.region,
        to: target,
        known: view.known,
        fenced: view.fenced.is_some(),
        timeout,
    });
    let mut io = Io::new(shared);
    let mut changing = None;
    loop {
        if let Action::Finish(result) = action {
            drop(changing);
            return result.map(|done| finish(shared, &done, started));
        }
        if matches!(action, Action::Record(_)) && changing.is_none() {
            changing = Some(Changing::start(shared));
        }
        let seen = io.execute(&action).await;
        action = machine.handle(started.elapsed(), seen);
    }
}

async fn forced(shared: &Shared) -> Result<PrimaryChange, ChangeError> {
    let c = &shared.config;
    let _claim = shared
        .claim_change(format!("promotion of {}", c.region_name()))
        .map_err(ChangeError::Busy)?;
    let _round = shared.round.lock().await;
    let started = Instant::now();
    let view = shared.view();
    let (mut machine, mut action) = Forced::new(ForcedStart {
        names: names(shared),
        me: c.region,
        known: view.known,
        fenced: view.fenced.is_some(),
        last_primary_offset: shared.progress.borrow().offsets.map(|(p, _)| p),
    });
    let mut io = Io::new(shared);
    let mut changing = None;
    loop {
        if let Action::Finish(result) = action {
            drop(changing);
            return result.map(|done| finish(shared, &done, started));
        }
        if matches!(action, Action::Record(_)) && changing.is_none() {
            changing = Some(Changing::start(shared));
        }
        let seen = io.execute(&action).await;
        action = machine.handle(seen);
    }
}

fn names(shared: &Shared) -> Vec<String> {
    let regions = &shared.config.topology.regions;
    regions.iter().map(|r| r.name.clone()).collect()
}

/// The connections one change uses: our Redis and the target's (through our tunnel client).
struct Io<'a> {
    shared: &'a Shared,
    local: Option<Redis>,
    target: Option<Redis>,
}

impl<'a> Io<'a> {
    fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            local: None,
            target: None,
        }
    }

    async fn execute(&mut self, action: &Action) -> Observation {
        let c = &self.shared.config;
        match action {
            Action::ReadLocal => match self.read_local().await {
                Ok(v) => Observation::Local(v),
                Err(e) => Observation::Failed(e.to_string()),
            },
            Action::ReadTarget { region, budget } => self.read_target(*region, *budget).await,
            Action::ProbeServing => Observation::Serving(serving_primary(self.shared).await),
            Action::ReadMark => match self.read_marks().await {
                Ok(m) => Observation::Mark(m),
                Err(e) => Observation::Failed(e.to_string()),
            },
            Action::ReadHighestEpoch => Observation::HighestEpoch(highest_seen(self.shared).await),
            Action::Wait(d) => {
                tokio::time::sleep(*d).await;
                Observation::Done
            }
            Action::Record(known) => match self.shared.record(*known) {
                Ok(()) => Observation::Done,
                Err(e) => Observation::Failed(e.to_string()),
            },
            Action::ReadTargetOffset { wait, .. } => {
                let Some(t) = self.target.as_mut() else {
                    return Observation::Offset(None);
                };
                let offset = t.replication_within(*wait).await.ok();
                Observation::Offset(offset.and_then(|i| uint(&i, "slave_repl_offset")))
            }
            Action::PromoteTarget(known) => match self.target.as_mut() {
                Some(t) => done(t.promote_at(*known, &c.topology).await),
                None => Observation::Failed("not connected to the target".into()),
            },
            Action::Finish(_) => Observation::Done,
            local => self.execute_local(local).await,
        }
    }

    /// The actions on our own Redis, through the connection [`Action::ReadLocal`] opened.
    async fn execute_local(&mut self, action: &Action) -> Observation {
        let c = &self.shared.config;
        let Some(r) = self.local.as_mut() else {
            return Observation::Failed("not connected to our Redis".into());
        };
        match action {
            Action::MarkSwitchover { what, ttl, epoch } => {
                done(r.mark_switchover(what, *ttl, *epoch).await)
            }
            Action::PauseWrites { duration } => done(r.pause_writes(*duration).await),
            Action::ReadPrimaryOffset => match r.info(&["replication"]).await {
                Ok(i) => Observation::Offset(uint(&i, "master_repl_offset")),
                Err(e) => Observation::Failed(e.to_string()),
            },
            Action::Demote { follow } => {
                // Our relay, or past it while it cannot store (the next round would move it).
                let via = self.shared.follow_addr(*follow);
                done(r.follow(&via.ip().to_string(), via.port()).await)
            }
            Action::BecomePrimary => done(r.become_primary().await),
            Action::LiftFence => {
                self.shared.set_fenced(None);
                done(r.lift_fence().await)
            }
            Action::WriteMeta(known) => done(r.write_meta(*known, &c.topology).await),
            Action::Unpause => done(r.unpause().await),
            Action::ClearMark => done(r.clear_switchover_mark().await),
            other => Observation::Failed(format!("no driver for {other:?}")),
        }
    }

    async fn read_local(&mut self) -> Result<LocalView, LocalError> {
        let c = &self.shared.config;
        let mut r = Redis::connect(c.redis, &c.passwords, STEP_TIMEOUT)
            .await
            .map_err(LocalError::Connect)?;
        let info = r.info(&["replication"]).await?;
        let fence_on = r.fence_on().await?;
        let meta = r.read_meta(&c.topology).await?;
        self.local = Some(r);
        Ok(LocalView {
            role: role(&info),
            fence_on,
            replica_offset: uint(&info, "slave_repl_offset"),
            meta,
        })
    }

    /// The newest switchover mark in our Redis (an error if it cannot be read) and every
    /// reachable region's.
    async fn read_marks(&mut self) -> Result<Option<SwitchoverMark>, LocalError> {
        let c = &self.shared.config;
        let local = self.local.as_mut().ok_or(LocalError::NotConnected)?;
        let mut marks: Vec<SwitchoverMark> = local
            .switchover_mark()
            .await
            .map_err(LocalError::Read)?
            .into_iter()
            .collect();
        for i in c.other_regions() {
            let Ok(mut r) = Redis::connect(c.peer_addr(i), &c.passwords, PEER_TIMEOUT).await else {
                continue;
            };
            if let Ok(Some(m)) = r.switchover_mark().await {
                marks.push(m);
            }
        }
        Ok(SwitchoverMark::newest(marks))
    }

    async fn read_target(&mut self, region: RegionId, budget: Duration) -> Observation {
        let c = &self.shared.config;
        let name = &c.topology.regions[region].name;
        let mut r = match Redis::connect(c.peer_addr(region), &c.passwords, budget).await {
            Ok(r) => r,
            Err(e) => {
                return Observation::Failed(format!(
                    "cannot reach {name}'s Redis through the tunnel: {e}"
                ))
            }
        };
        let info = match r.info(&["replication"]).await {
            Ok(i) => i,
            Err(e) => return Observation::Failed(format!("{name}'s Redis: {e}")),
        };
        self.target = Some(r);
        Observation::Target {
            replica_link_up: info.get("role") == Some("slave")
                && info.get("master_link_status") == Some("up"),
        }
    }
}

/// Why our own Redis could not be read; the message of [`Observation::Failed`].
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error("cannot reach our Redis: {0}")]
    Connect(resp::Error),
    #[error("our Redis: {0}")]
    Redis(#[from] resp::Error),
    #[error("not connected to our Redis")]
    NotConnected,
    #[error(transparent)]
    Read(resp::Error),
}

/// A command's outcome as the machines see it.
fn done(r: Result<(), resp::Error>) -> Observation {
    match r {
        Ok(()) => Observation::Done,
        Err(e) => Observation::Failed(e.to_string()),
    }
}

fn role(info: &resp::Info) -> RedisRole {
    match info.get("role") {
        Some("master") => RedisRole::Primary,
        Some("slave") => RedisRole::Replica,
        _ => RedisRole::Other,
    }
}

fn uint(info: &resp::Info, field: &str) -> Option<u64> {
    info.int(field).and_then(|v| u64::try_from(v).ok())
}

/// The first other region whose Redis answers through our tunnel as an unfenced primary.
async fn serving_primary(shared: &Shared) -> Option<RegionId> {
    let c = &shared.config;
    for i in c.other_regions() {
        let Ok(mut r) = Redis::connect(c.peer_addr(i), &c.passwords, PEER_TIMEOUT).await else {
            continue;
        };
        if r.is_serving_primary().await.unwrap_or(false) {
            return Some(i);
        }
    }
    None
}

/// The highest epoch held (or marked for a switchover) by any reachable region, so a new epoch
/// is above all of them.
async fn highest_seen(shared: &Shared) -> u64 {
    let c = &shared.config;
    let mut highest = 0;
    for i in c.topology.regions.iter().map(|r| r.index) {
        let addr = if i == c.region {
            c.redis
        } else {
            c.peer_addr(i)
        };
        let Ok(mut r) = Redis::connect(addr, &c.passwords, PEER_TIMEOUT).await else {
            continue;
        };
        if let Ok(e) = r.highest_epoch().await {
            highest = highest.max(e);
        }
    }
    highest
}

/// Reports a completed change: metrics, `/status`'s `last_change`, a log line.
fn finish(shared: &Shared, done: &Completed, started: Instant) -> PrimaryChange {
    let change = done.report(&names(shared), crate::now_ms(), started.elapsed());
    let m = &shared.metrics;
    m.failovers
        .get_or_create(&vec![("kind".to_string(), change.kind.to_string())])
        .inc();
    m.last_change_duration_ms.set(change.duration_ms as i64);
    if let Some(p) = change.write_pause_ms {
        m.last_write_pause_ms.set(p as i64);
    }
    shared
        .changes
        .send_modify(|c| c.last = Some(change.clone()));
    match change.kind {
        ChangeKind::Planned => tracing::info!(
            to = %change.to,
            epoch = change.epoch,
            pause_ms = ?change.write_pause_ms,
            "planned switchover done"
        ),
        ChangeKind::Emergency => tracing::warn!(
            epoch = change.epoch,
            offset_gap = ?change.offset_gap,
            "emergency promotion: this region is the primary"
        ),
    }
    change
}
