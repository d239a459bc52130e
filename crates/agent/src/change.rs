//! Changes of primary as sans-IO state machines: observations in, actions out.
//!
//! [`Planned`] is the zero-loss switchover run by the current primary's agent; [`Forced`] is the
//! emergency promotion run by the promoted region's agent. Neither does any IO nor reads a clock:
//! the driver (`switchover.rs`) carries out each [`Action`], reports what it saw as an
//! [`Observation`] with the time elapsed since the change started, and asks for the next action
//! until it gets [`Action::Finish`]. The in-memory cluster tests (`cluster_view/tests.rs`) drive
//! the same machines against simulated regions, crashing the agent after every action.
//!
//! Guarantees by construction:
//! - once [`Action::PauseWrites`] has been issued, every path to [`Action::Finish`] passes through
//!   [`Action::Unpause`] (the only way to finish is [`Machine::finish`], which queues it);
//! - the new epoch is recorded ([`Action::Record`]) only after the target holds every byte, and
//!   from then on the change is completed, never undone.
//!
//! One change at a time across kinds: before pausing, a planned switchover marks itself in the
//! primary's data ([`Action::MarkSwitchover`], a key with a time-to-live that replicates to every
//! region, naming the epoch the switchover will record); a forced promotion that finds a mark
//! whose epoch it had not seen before probing for a serving primary is refused, as is one that
//! finds the primary serving or its own Redis already the confirmed primary. A mark whose epoch
//! was seen belongs to a switchover that had promoted its target before the probe: it no longer
//! refuses, though it lives until its time-to-live. The epoch is also noted without a time
//! limit: it is recorded in the old primary's state file before any Redis holds it, and a forced
//! promotion that comes after the mark has expired must still take a higher one.

use std::collections::VecDeque;
use std::time::Duration;

use topology::RegionId;

use crate::cluster_view::Known;
use crate::status::{ChangeKind, PrimaryChange};

/// The pause outlives the longest switchover by this much; if the agent dies in between, its
/// restarted successor (or Redis, when the pause expires) ends it.
pub const PAUSE_MARGIN: Duration = Duration::from_secs(10);

/// The longest any single step of a change may take (connecting to the target included).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the target's offset is polled while writes are paused.
pub const POLL_EVERY: Duration = Duration::from_millis(2);

/// Why a change of primary was refused or failed. Each variant says whether anything changed;
/// `http.rs` maps them to status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The request itself is malformed (a missing or bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// The target region is not in the topology.
    #[error("no region {0:?} in the topology")]
    UnknownRegion(String),
    /// This agent is already carrying out a change of primary.
    #[error("another change of primary is in progress ({0}); try again when it has finished")]
    Busy(String),
    /// A planned switchover marked in our data is still running (sent by another agent).
    #[error(
        "a planned switchover is in progress ({0}); nothing changed, try again when it has \
         finished (watch `georep status`)"
    )]
    SwitchoverInProgress(String),
    /// A planned switchover was sent to an agent that is not the primary's.
    #[error(
        "{me} is not the primary: the primary is {primary} (epoch {epoch}); send the request to \
         its agent"
    )]
    NotPrimary {
        /// This region.
        me: String,
        /// The primary this agent knows.
        primary: String,
        /// At this epoch.
        epoch: u64,
    },
    /// The requested region is the primary already.
    #[error("{me} is already the primary{}", epoch.map(|e| format!(" (epoch {e})")).unwrap_or_default())]
    AlreadyPrimary {
        /// This region.
        me: String,
        /// The epoch, when the refusal names it.
        epoch: Option<u64>,
    },
    /// Our Redis is fenced, starting, or not a primary.
    #[error("{0}'s Redis is not a writable primary (fenced or starting); nothing changed")]
    NotWritable(String),
    /// The target is not a replica with its link up.
    #[error("{0} is not a replica with its link up; nothing changed")]
    TargetNotReady(String),
    /// The primary answers as a writable primary: a forced promotion would lose its writes.
    #[error(
        "the primary {primary} is reachable from {me} and serving writes; an emergency promotion \
         would lose its unreplicated writes: use `georep failover --to {me}` (no loss) instead"
    )]
    PrimaryServing {
        /// The serving primary.
        primary: String,
        /// This region.
        me: String,
    },
    /// A Redis could not be reached or answered with an error; the message says what changed.
    #[error("{0}")]
    Unreachable(String),
    /// The target did not catch up within the timeout; the switchover was aborted, nothing lost.
    #[error(
        "{to} did not catch up within {timeout:?}; aborted, the primary is unchanged ({me}) and \
         no write was lost (writes were paused for {paused_ms} ms)"
    )]
    CatchUpTimeout {
        /// The target.
        to: String,
        /// This region (the unchanged primary).
        me: String,
        /// The timeout requested.
        timeout: Duration,
        /// How long writes were paused.
        paused_ms: u64,
    },
    /// An epoch is at `u64::MAX`: no change of primary can take a higher one. Refused before
    /// anything changed.
    #[error(
        "epoch {0} is the largest an epoch can be: no change of primary can record a higher one; \
         nothing changed"
    )]
    EpochExhausted(u64),
    /// A step failed on our side (state file, Redis command); the message says what changed.
    #[error("{0}")]
    Failed(String),
}

/// One thing for the driver to do. Each one is answered by the [`Observation`] named in its doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read our Redis's replication role, fence, offset and `georep:meta` → [`Observation::Local`].
    ReadLocal,
    /// Read the target's replication state through our tunnel client, connecting within `budget`
    /// → [`Observation::Target`].
    ReadTarget {
        /// The region.
        region: RegionId,
        /// Connection deadline.
        budget: Duration,
    },
    /// Which other region's Redis, if any, answers as an unfenced primary (every region is
    /// asked, not only the one this agent believes primary: its view may be a round old)
    /// → [`Observation::Serving`].
    ProbeServing,
    /// Read the planned-switchover mark in our Redis and every reachable region's
    /// → [`Observation::Mark`] (the newest).
    ReadMark,
    /// The highest epoch any reachable region holds or has had marked for a switchover
    /// → [`Observation::HighestEpoch`].
    ReadHighestEpoch,
    /// Mark a planned switchover (`what`, `epoch`) in our Redis for `ttl`, and note (with no
    /// time limit) the epoch it will record, so that any later change takes a higher one
    /// → [`Observation::Done`].
    MarkSwitchover {
        /// Describes the change (`failover to X`).
        what: String,
        /// Time to live of the mark.
        ttl: Duration,
        /// The epoch the switchover records.
        epoch: u64,
    },
    /// `CLIENT PAUSE <for> WRITE` on our Redis → [`Observation::Done`].
    PauseWrites {
        /// How long Redis holds the pause if nobody lifts it.
        duration: Duration,
    },
    /// Our Redis's `master_repl_offset` → [`Observation::Offset`].
    ReadPrimaryOffset,
    /// The target's `slave_repl_offset`, waiting at most `wait` → [`Observation::Offset`].
    ReadTargetOffset {
        /// The region.
        region: RegionId,
        /// Reply deadline.
        wait: Duration,
    },
    /// Sleep, then → [`Observation::Done`].
    Wait(Duration),
    /// Set the agent's known epoch and write the state file → [`Observation::Done`].
    Record(Known),
    /// `REPLICAOF` the region on our Redis (read-only from here) → [`Observation::Done`].
    Demote {
        /// The region to follow.
        follow: RegionId,
    },
    /// On the target, through the tunnel: `REPLICAOF NO ONE`, then `georep:meta` = `known`
    /// → [`Observation::Done`]. The mark stays until it expires, but refuses a forced promotion
    /// only where this epoch has not been seen yet.
    PromoteTarget(Known),
    /// `REPLICAOF NO ONE` on our Redis → [`Observation::Done`].
    BecomePrimary,
    /// Lift the fence: the agent's flag and `min-replicas-to-write 0` → [`Observation::Done`].
    LiftFence,
    /// `georep:meta` = `known` on our Redis → [`Observation::Done`].
    WriteMeta(Known),
    /// `CLIENT UNPAUSE` on our Redis → [`Observation::Done`] (a failure changes nothing).
    Unpause,
    /// Delete the switchover mark from our Redis → [`Observation::Done`] (best effort).
    ClearMark,
    /// The change is over: the driver reports the result. No further action.
    Finish(Result<Completed, ChangeError>),
}

/// What a Redis role looks like from `INFO replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisRole {
    /// `role:master`.
    Primary,
    /// `role:slave`.
    Replica,
    /// Anything else.
    Other,
}

/// Our own Redis, as [`Action::ReadLocal`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalView {
    /// Its role.
    pub role: RedisRole,
    /// `min-replicas-to-write` is not 0.
    pub fence_on: bool,
    /// `slave_repl_offset` on a replica.
    pub replica_offset: Option<u64>,
    /// Its `georep:meta`.
    pub meta: Option<Known>,
}

/// What the driver saw doing the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The action succeeded (no value to report).
    Done,
    /// The action failed: why, for the operator.
    Failed(String),
    /// Answers [`Action::ReadLocal`].
    Local(LocalView),
    /// Answers [`Action::ReadTarget`]: a replica with its link up.
    Target {
        /// `role:slave` and `master_link_status:up`.
        replica_link_up: bool,
    },
    /// Answers [`Action::ProbeServing`]: a region serving writes.
    Serving(Option<RegionId>),
    /// Answers [`Action::ReadMark`]: the newest live mark found (see [`SwitchoverMark::newest`]).
    Mark(Option<SwitchoverMark>),
    /// Answers [`Action::ReadHighestEpoch`] (0 when nobody holds one).
    HighestEpoch(u64),
    /// Answers the offset reads (`None`: the field was missing or the read failed).
    Offset(Option<u64>),
}

/// A planned switchover's mark, as [`Action::ReadMark`] finds it in a Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverMark {
    /// Describes the change (`failover to X`).
    pub what: String,
    /// The epoch the switchover records; `None` for a mark that does not say (it refuses as
    /// long as it lives).
    pub epoch: Option<u64>,
}

impl SwitchoverMark {
    /// The switchover's epoch is at most `seen`: it has been recorded where `seen` was read.
    pub fn recorded_by(&self, seen: u64) -> bool {
        self.epoch.is_some_and(|e| e <= seen)
    }

    /// The mark that refuses longest: the highest epoch, one without an epoch above all.
    pub fn newest(marks: impl IntoIterator<Item = Self>) -> Option<Self> {
        marks
            .into_iter()
            .max_by_key(|m| (m.epoch.is_none(), m.epoch))
    }
}

/// A change that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// Planned or emergency.
    pub kind: ChangeKind,
    /// The previous primary.
    pub from: RegionId,
    /// The new one.
    pub to: RegionId,
    /// The new epoch.
    pub epoch: u64,
    /// Planned: how long application writes were paused.
    pub write_pause: Option<Duration>,
    /// Emergency: replication bytes the promoted region had not received, when known.
    pub offset_gap: Option<u64>,
}

impl Completed {
    /// The report served by the agent, with region names, completion time and duration.
    pub fn report(&self, names: &[String], at_ms: u64, duration: Duration) -> PrimaryChange {
        PrimaryChange {
            kind: self.kind,
            from: names[self.from.index()].clone(),
            to: names[self.to.index()].clone(),
            epoch: self.epoch,
            at_ms,
            duration_ms: duration.as_millis() as u64,
            write_pause_ms: self.write_pause.map(|p| p.as_millis() as u64),
            offset_gap: self.offset_gap,
        }
    }
}

/// What both machines share: the cleanup queue that makes unpausing part of finishing.
#[derive(Debug, Clone)]
struct Machine {
    /// Actions still to issue before [`Action::Finish`].
    closing: VecDeque<Action>,
    result: Option<Result<Completed, ChangeError>>,
    paused: bool,
    marked: bool,
}

impl Machine {
    fn new() -> Self {
        Self {
            closing: VecDeque::new(),
            result: None,
            paused: false,
            marked: false,
        }
    }

    /// Ends the change: unpauses if writes were paused and, when the change did not complete,
    /// removes its mark; then finishes.
    fn finish(&mut self, result: Result<Completed, ChangeError>) -> Action {
        if self.paused {
            self.closing.push_back(Action::Unpause);
            self.paused = false;
        }
        if self.marked && result.is_err() {
            self.closing.push_back(Action::ClearMark);
        }
        self.result = Some(result);
        self.next_closing()
    }

    fn closing(&self) -> bool {
        self.result.is_some()
    }

    fn next_closing(&mut self) -> Action {
        match self.closing.pop_front() {
            Some(a) => a,
            None => Action::Finish(self.result.clone().unwrap_or_else(|| {
                Err(ChangeError::Failed(
                    "change finished without a result".into(),
                ))
            })),
        }
    }
}

/// What a planned switchover starts from.
#[derive(Debug, Clone)]
pub struct PlannedStart {
    /// Region names, by index.
    pub names: Vec<String>,
    /// Our region.
    pub me: RegionId,
    /// The region to make primary.
    pub to: RegionId,
    /// The (epoch, primary) this agent knows.
    pub known: Known,
    /// The agent holds our Redis fenced.
    pub fenced: bool,
    /// Abort when the target has not caught up by then.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlannedState {
    ReadLocal,
    ReadTarget,
    ReadHighestEpoch,
    Mark,
    Pause,
    ReadOffset,
    CatchUp { offset: u64, waiting: bool },
    Record,
    Demote,
    Promote,
}

/// The planned switchover, run by the primary's agent:
///
/// 1. check that we are the writable primary and the target a replica with its link up;
/// 2. mark the switchover, `CLIENT PAUSE WRITE`;
/// 3. wait until the target's offset reaches ours (on timeout: unpause, abort, nothing changed);
/// 4. record (epoch + 1, target): from here on the change is completed, by a restarted agent
///    or the control loop if need be;
/// 5. `REPLICAOF target` here (read-only before the target becomes writable), then promote the
///    target and write the new epoch into it;
/// 6. unpause: the writes waiting in the pause fail with `READONLY`, unacknowledged.
#[derive(Debug, Clone)]
pub struct Planned {
    start: PlannedStart,
    state: PlannedState,
    machine: Machine,
    paused_at: Duration,
    next: Known,
    demote_error: Option<String>,
}

impl Planned {
    /// A switchover and its first action.
    pub fn new(start: PlannedStart) -> (Self, Action) {
        let mut m = Self {
            next: start.known,
            start,
            state: PlannedState::ReadLocal,
            machine: Machine::new(),
            paused_at: Duration::ZERO,
            demote_error: None,
        };
        let s = &m.start;
        let first = if s.known.primary != s.me {
            let e = ChangeError::NotPrimary {
                me: s.names[s.me.index()].clone(),
                primary: s.names[s.known.primary.index()].clone(),
                epoch: s.known.epoch,
            };
            m.machine.finish(Err(e))
        } else if s.to == s.me {
            let e = ChangeError::AlreadyPrimary {
                me: s.names[s.me.index()].clone(),
                epoch: None,
            };
            m.machine.finish(Err(e))
        } else {
            Action::ReadLocal
        };
        (m, first)
    }

    fn me(&self) -> String {
        self.start.names[self.start.me.index()].clone()
    }

    fn to(&self) -> String {
        self.start.names[self.start.to.index()].clone()
    }

    /// Takes the outcome of the last action, observed `now` after the change started, and says
    /// what to do next.
    pub fn handle(&mut self, now: Duration, seen: Observation) -> Action {
        if self.machine.closing() {
            return self.machine.next_closing();
        }
        match (self.state, seen) {
            (PlannedState::ReadLocal, Observation::Local(v)) => self.check_local(now, &v),
            (PlannedState::ReadTarget, Observation::Target { replica_link_up }) => {
                self.check_target(replica_link_up)
            }
            (PlannedState::ReadHighestEpoch, Observation::HighestEpoch(h)) => self.mark(h),
            (PlannedState::Mark, Observation::Done) => self.pause(),
            (PlannedState::Pause, Observation::Done) => self.read_offset(now),
            (PlannedState::Pause, Observation::Failed(e)) => self.machine.finish(Err(
                ChangeError::Unreachable(format!("CLIENT PAUSE failed: {e}; nothing changed")),
            )),
            (PlannedState::ReadOffset, Observation::Offset(o)) => {
                self.state = PlannedState::CatchUp {
                    offset: o.unwrap_or(0),
                    waiting: false,
                };
                self.poll_target(now)
            }
            (PlannedState::CatchUp { offset, waiting }, seen) => {
                self.catch_up(now, offset, waiting, &seen)
            }
            (PlannedState::Record, Observation::Done) => {
                self.state = PlannedState::Demote;
                Action::Demote {
                    follow: self.start.to,
                }
            }
            (PlannedState::Record, Observation::Failed(e)) => {
                self.machine.finish(Err(ChangeError::Failed(format!(
                    "cannot write the state file: {e}; aborted, the primary is unchanged"
                ))))
            }
            (PlannedState::Demote, seen) => self.promote_target(seen),
            (PlannedState::Promote, seen) => self.complete(now, seen),
            (state, Observation::Failed(e)) => self.abort(state, e),
            (state, seen) => self.machine.finish(Err(unexpected(&state, &seen))),
        }
    }

    /// Step 1, our side: only a writable primary hands over.
    fn check_local(&mut self, now: Duration, v: &LocalView) -> Action {
        if v.role != RedisRole::Primary || self.start.fenced {
            return self
                .machine
                .finish(Err(ChangeError::NotWritable(self.me())));
        }
        self.state = PlannedState::ReadTarget;
        // Reaching the target counts against the timeout: an unresponsive target aborts in time.
        let budget = self
            .start
            .timeout
            .saturating_sub(now)
            .clamp(Duration::from_millis(100), STEP_TIMEOUT);
        Action::ReadTarget {
            region: self.start.to,
            budget,
        }
    }

    /// Step 1, the target's side: a replica with its link up.
    fn check_target(&mut self, replica_link_up: bool) -> Action {
        if !replica_link_up {
            return self
                .machine
                .finish(Err(ChangeError::TargetNotReady(self.to())));
        }
        self.state = PlannedState::ReadHighestEpoch;
        // Every epoch any region holds, read before the pause (it costs round trips).
        Action::ReadHighestEpoch
    }

    /// Step 2: the new epoch is above every epoch known or seen (`highest`); mark it.
    fn mark(&mut self, highest: u64) -> Action {
        self.next = match next_known(self.start.known, highest, self.start.to) {
            Ok(next) => next,
            Err(e) => return self.machine.finish(Err(e)),
        };
        self.state = PlannedState::Mark;
        Action::MarkSwitchover {
            what: format!("failover to {}", self.to()),
            ttl: self.start.timeout + PAUSE_MARGIN,
            epoch: self.next.epoch,
        }
    }

    /// Step 2, once marked: pause writes.
    fn pause(&mut self) -> Action {
        self.machine.marked = true;
        self.state = PlannedState::Pause;
        Action::PauseWrites {
            duration: self.start.timeout + PAUSE_MARGIN,
        }
    }

    /// Step 3 begins: the offset the target has to reach.
    fn read_offset(&mut self, now: Duration) -> Action {
        self.machine.paused = true;
        self.paused_at = now;
        self.state = PlannedState::ReadOffset;
        Action::ReadPrimaryOffset
    }

    /// Step 3: poll the target's offset (with a short wait between polls) until it reaches
    /// `offset`, then record (step 4); abort on timeout.
    fn catch_up(
        &mut self,
        now: Duration,
        offset: u64,
        waiting: bool,
        seen: &Observation,
    ) -> Action {
        let caught_up = !waiting && matches!(seen, Observation::Offset(Some(o)) if *o >= offset);
        if caught_up {
            self.state = PlannedState::Record;
            return Action::Record(self.next);
        }
        let timeout = self.start.timeout;
        let paused_for = now.saturating_sub(self.paused_at);
        if paused_for >= timeout {
            let e = ChangeError::CatchUpTimeout {
                to: self.to(),
                me: self.me(),
                timeout,
                paused_ms: paused_for.as_millis() as u64,
            };
            return self.machine.finish(Err(e));
        }
        self.state = PlannedState::CatchUp {
            offset,
            waiting: !waiting,
        };
        if waiting {
            self.poll_target(now)
        } else {
            Action::Wait(POLL_EVERY)
        }
    }

    /// Step 5, once demoted (or not: the promotion goes ahead, the report says so).
    fn promote_target(&mut self, seen: Observation) -> Action {
        if let Observation::Failed(e) = seen {
            self.demote_error = Some(e);
        }
        self.state = PlannedState::Promote;
        Action::PromoteTarget(self.next)
    }

    /// Step 6: the change is complete (or recorded, for the agents to complete); unpause.
    fn complete(&mut self, now: Duration, seen: Observation) -> Action {
        let write_pause = now.saturating_sub(self.paused_at);
        let failed = match seen {
            Observation::Failed(e) => Some(e),
            _ => self.demote_error.take(),
        };
        let result = match failed {
            Some(e) => Err(ChangeError::Failed(format!(
                "epoch {} → {to} is recorded but the switchover did not complete ({e}); \
                 the agents complete it when {to} is reachable (watch `georep status`)",
                self.next.epoch,
                to = self.to()
            ))),
            None => Ok(Completed {
                kind: ChangeKind::Planned,
                from: self.start.me,
                to: self.start.to,
                epoch: self.next.epoch,
                write_pause: Some(write_pause),
                offset_gap: Some(0),
            }),
        };
        // The change is complete (or will be completed): the mark stays until it expires, and
        // no longer refuses a forced promotion once its epoch is recorded.
        self.machine.marked = false;
        self.machine.finish(result)
    }

    /// A step before the record failed: nothing changed.
    fn abort(&mut self, state: PlannedState, e: String) -> Action {
        let e = match state {
            // The driver's message says which Redis and why.
            PlannedState::ReadLocal | PlannedState::ReadTarget => e,
            PlannedState::ReadOffset => format!("our Redis: {e}; aborted, nothing changed"),
            PlannedState::Mark => format!("cannot mark the switchover: {e}; nothing changed"),
            _ => format!("{e}; aborted, nothing changed"),
        };
        self.machine.finish(Err(ChangeError::Unreachable(e)))
    }

    fn poll_target(&self, now: Duration) -> Action {
        let left = self
            .start
            .timeout
            .saturating_sub(now.saturating_sub(self.paused_at))
            .max(Duration::from_millis(1));
        Action::ReadTargetOffset {
            region: self.start.to,
            wait: left,
        }
    }
}

/// What a change records: `primary` at the epoch after the one it knew and every epoch seen
/// anywhere (`highest`) — unless that was the last epoch there can be.
fn next_known(known: Known, highest: u64, primary: RegionId) -> Result<Known, ChangeError> {
    let highest = known.epoch.max(highest);
    let epoch = highest
        .checked_add(1)
        .ok_or(ChangeError::EpochExhausted(highest))?;
    Ok(Known { epoch, primary })
}

/// An observation that does not answer the step: a bug in the driver, reported, not a panic.
fn unexpected(state: &impl std::fmt::Debug, seen: &Observation) -> ChangeError {
    ChangeError::Failed(format!(
        "internal error: {seen:?} does not answer step {state:?}; aborted"
    ))
}

/// What an emergency promotion starts from.
#[derive(Debug, Clone)]
pub struct ForcedStart {
    /// Region names, by index.
    pub names: Vec<String>,
    /// Our region: the one to promote.
    pub me: RegionId,
    /// The (epoch, primary) this agent knows.
    pub known: Known,
    /// The agent holds our Redis fenced.
    pub fenced: bool,
    /// The primary's `master_repl_offset` as the control loop last saw it.
    pub last_primary_offset: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForcedState {
    ReadLocal,
    Probe,
    ReadMark,
    ReadHighestEpoch,
    Record,
    BecomePrimary,
    LiftFence,
    WriteMeta,
}

/// The emergency promotion of our own region, for when the primary's region is unreachable:
/// refused while the primary serves writes or a planned switchover is marked and not yet
/// recorded; otherwise (highest epoch + 1, us) is recorded and our Redis becomes the unfenced
/// primary. Writes the old primary had not replicated are lost; the report says how many bytes,
/// when known.
#[derive(Debug, Clone)]
pub struct Forced {
    start: ForcedStart,
    state: ForcedState,
    machine: Machine,
    offset_gap: Option<u64>,
    /// The highest epoch this agent knew or its Redis held before the probe.
    seen_epoch: u64,
    next: Known,
}

impl Forced {
    /// A promotion and its first action.
    pub fn new(start: ForcedStart) -> (Self, Action) {
        let m = Self {
            next: start.known,
            seen_epoch: start.known.epoch,
            start,
            state: ForcedState::ReadLocal,
            machine: Machine::new(),
            offset_gap: None,
        };
        (m, Action::ReadLocal)
    }

    fn me(&self) -> String {
        self.start.names[self.start.me.index()].clone()
    }

    /// Takes the outcome of the last action and says what to do next.
    pub fn handle(&mut self, seen: Observation) -> Action {
        if self.machine.closing() {
            return self.machine.next_closing();
        }
        match (self.state, seen) {
            (ForcedState::ReadLocal, Observation::Local(v)) => self.check_local(&v),
            (ForcedState::Probe, Observation::Serving(Some(primary))) => {
                let e = ChangeError::PrimaryServing {
                    primary: self.start.names[primary.index()].clone(),
                    me: self.me(),
                };
                self.machine.finish(Err(e))
            }
            // Read after the probe: a primary that has already demoted itself for a planned
            // switchover wrote the mark before pausing, and the target held every byte before
            // the demotion, so a probe that finds nobody serving (the window between the
            // demotion and the target's promotion) is followed by a read that finds the mark.
            (ForcedState::Probe, Observation::Serving(None) | Observation::Failed(_)) => {
                self.state = ForcedState::ReadMark;
                Action::ReadMark
            }
            (ForcedState::ReadMark, Observation::Mark(mark)) => self.check_mark(mark),
            (ForcedState::ReadHighestEpoch, Observation::HighestEpoch(h)) => self.record(h),
            (ForcedState::Record, Observation::Done) => {
                self.state = ForcedState::BecomePrimary;
                Action::BecomePrimary
            }
            (ForcedState::BecomePrimary, Observation::Done) => {
                self.state = ForcedState::LiftFence;
                Action::LiftFence
            }
            (ForcedState::LiftFence, Observation::Done) => {
                self.state = ForcedState::WriteMeta;
                Action::WriteMeta(self.next)
            }
            (ForcedState::WriteMeta, Observation::Done) => self.complete(),
            (state, Observation::Failed(e)) => self.fail(state, e),
            (state, seen) => self.machine.finish(Err(unexpected(&state, &seen))),
        }
    }

    /// Refused when our Redis already is the serving primary; otherwise probe the others.
    fn check_local(&mut self, v: &LocalView) -> Action {
        let s = &self.start;
        let serving = v.role == RedisRole::Primary && !v.fence_on;
        let known_primary = s.known.primary == s.me && !s.fenced;
        // Our Redis already is the primary the data names (a switchover to us has just
        // completed, and our control loop has not caught up yet).
        let named = v
            .meta
            .is_some_and(|m| m.primary == s.me && m.epoch >= s.known.epoch);
        if serving && (known_primary || named) {
            let epoch = if named { v.meta.map(|m| m.epoch) } else { None };
            return self.machine.finish(Err(ChangeError::AlreadyPrimary {
                me: self.me(),
                epoch: epoch.or(Some(s.known.epoch)),
            }));
        }
        self.offset_gap = s
            .last_primary_offset
            .zip(v.replica_offset)
            .map(|(p, ours)| p.saturating_sub(ours));
        // Seen before the probe: a switchover recorded at this epoch had promoted its target
        // before the probe looked for a serving primary.
        self.seen_epoch = s.known.epoch.max(v.meta.map_or(0, |m| m.epoch));
        self.state = ForcedState::Probe;
        Action::ProbeServing
    }

    /// Refused while a switchover is marked whose epoch was not seen before the probe (it may
    /// be running); a completed switchover's mark, still alive, does not refuse.
    fn check_mark(&mut self, mark: Option<SwitchoverMark>) -> Action {
        match mark {
            Some(m) if !m.recorded_by(self.seen_epoch) => self
                .machine
                .finish(Err(ChangeError::SwitchoverInProgress(m.what))),
            _ => {
                self.state = ForcedState::ReadHighestEpoch;
                Action::ReadHighestEpoch
            }
        }
    }

    /// Record (above every epoch known or seen anywhere, `highest`, us).
    fn record(&mut self, highest: u64) -> Action {
        self.next = match next_known(self.start.known, highest, self.start.me) {
            Ok(next) => next,
            Err(e) => return self.machine.finish(Err(e)),
        };
        self.state = ForcedState::Record;
        Action::Record(self.next)
    }

    fn complete(&mut self) -> Action {
        let done = Completed {
            kind: ChangeKind::Emergency,
            from: self.start.known.primary,
            to: self.start.me,
            epoch: self.next.epoch,
            write_pause: None,
            offset_gap: self.offset_gap,
        };
        self.machine.finish(Ok(done))
    }

    fn fail(&mut self, state: ForcedState, e: String) -> Action {
        let e = match state {
            ForcedState::ReadLocal => ChangeError::Unreachable(e),
            ForcedState::ReadMark => {
                ChangeError::Unreachable(format!("our Redis: {e}; nothing changed"))
            }
            ForcedState::Record => {
                ChangeError::Failed(format!("cannot write the state file: {e}; nothing changed"))
            }
            ForcedState::BecomePrimary => {
                ChangeError::Failed(format!("REPLICAOF NO ONE failed: {e}"))
            }
            ForcedState::LiftFence => ChangeError::Failed(format!("lifting the fence failed: {e}")),
            ForcedState::WriteMeta => ChangeError::Failed(format!("writing the epoch failed: {e}")),
            _ => ChangeError::Failed(format!("{e}; nothing changed")),
        };
        self.machine.finish(Err(e))
    }
}

#[cfg(test)]
mod tests;
