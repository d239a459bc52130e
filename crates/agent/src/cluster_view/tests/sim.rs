//! An in-memory cluster: each region's Redis (role, fence, pause, data, `georep:meta`, the
//! switchover mark) and agent (state file, memory, running change), under a simulated clock.
//! Control rounds call the real [`decide`]; changes of primary run the real [`Planned`] and
//! [`Forced`] machines, their actions carried out against the simulated Redis servers the way
//! `switchover.rs` carries them out against real ones.
//!
//! A region's tunnels live in its agent: while an agent is down, nobody reaches its Redis and
//! its Redis replicates from nobody. Applications write to whichever Redis accepts writes: an
//! unpaused primary, unfenced or (`min-replicas-to-write 1`) with a replica attached. A write is
//! acknowledged when that Redis takes it.

use std::time::Duration;

use proptest::prelude::*;

use super::super::*;
use super::{R0, R1};
use crate::change::{
    Action, ChangeError, Completed, Forced, ForcedStart, LocalView, Observation as Seen, Planned,
    PlannedStart, RedisRole, SwitchoverMark,
};

#[derive(Debug, Clone, Default)]
struct Redis {
    primary: bool,
    follows: Option<usize>,
    fence: bool,
    paused_until: Option<u64>,
    /// Write ids, in order: the replication stream (offset = length; 0 for the agent's writes).
    data: Vec<u64>,
    meta: Option<Known>,
    pending_epoch: Option<u64>,
    /// The mark and when it expires.
    mark: Option<(SwitchoverMark, u64)>,
    down: bool,
}

#[derive(Debug, Clone)]
enum Running {
    Planned {
        machine: Planned,
        next: Action,
        started: u64,
    },
    Forced {
        machine: Forced,
        next: Action,
    },
}

#[derive(Debug, Clone)]
struct Agent {
    up: bool,
    persisted: Option<Known>,
    known: Known,
    fenced: Option<String>,
    memory: Memory,
    unpaused: bool,
    change: Option<Running>,
    primary_offset: Option<u64>,
    /// A round has completed since the agent started.
    looked: bool,
}

impl Agent {
    fn started(persisted: Option<Known>) -> Self {
        Self {
            up: true,
            persisted,
            known: persisted.unwrap_or(Known {
                epoch: 1,
                primary: R0,
            }),
            fenced: Some("starting".into()),
            memory: Memory::default(),
            unpaused: false,
            change: None,
            primary_offset: None,
            looked: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Sim {
    redis: Vec<Redis>,
    agents: Vec<Agent>,
    now: u64,
    acked: Vec<u64>,
    next_id: u64,
    results: Vec<Result<Completed, ChangeError>>,
    /// Actions carried out, for failure messages.
    trace: Vec<String>,
}

/// The simulator keeps its regions in vectors, by position; the agent's code sees ids.
fn id(i: usize) -> RegionId {
    RegionId::new(i)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i}")).collect()
}

impl Sim {
    /// A fresh cluster as redis.conf starts it: region 0 a fenced primary, the others its
    /// replicas; then rounds until it has settled.
    fn healthy(n: usize) -> Self {
        let mut redis = vec![Redis::default(); n];
        redis[0].primary = true;
        redis[0].fence = true;
        for r in &mut redis[1..] {
            r.follows = Some(0);
        }
        let mut sim = Self {
            redis,
            agents: vec![Agent::started(None); n],
            now: 0,
            acked: Vec::new(),
            next_id: 0,
            results: Vec::new(),
            trace: Vec::new(),
        };
        sim.settle();
        assert_eq!(sim.settled(), Some(0), "{sim:#?}");
        sim
    }

    fn reach(&self, from: usize, to: usize) -> bool {
        from == to || (self.agents[from].up && self.agents[to].up && !self.redis[to].down)
    }

    fn paused(&self, i: usize) -> bool {
        self.redis[i].paused_until.is_some_and(|t| t > self.now)
    }

    fn link_up(&self, replica: usize) -> bool {
        let r = &self.redis[replica];
        match r.follows {
            Some(p) if !r.primary && !r.down => {
                self.reach(replica, p) && self.redis[p].primary && !self.redis[p].down
            }
            _ => false,
        }
    }

    /// Takes writes from applications (and from the agent: the fence binds every client).
    fn writable(&self, i: usize) -> bool {
        let r = &self.redis[i];
        let attached = (0..self.redis.len())
            .any(|j| j != i && self.redis[j].follows == Some(i) && self.link_up(j));
        !r.down && r.primary && !self.paused(i) && (!r.fence || attached)
    }

    fn writable_primaries(&self) -> Vec<usize> {
        (0..self.redis.len())
            .filter(|i| self.writable(*i))
            .collect()
    }

    fn mark(&self, i: usize) -> Option<SwitchoverMark> {
        let r = &self.redis[i];
        r.mark
            .as_ref()
            .filter(|(_, until)| *until > self.now)
            .map(|(m, _)| m.clone())
    }

    /// The invariant checked after every event.
    fn check(&self) {
        let w = self.writable_primaries();
        assert!(w.len() <= 1, "two writable primaries {w:?}: {self:#?}");
    }

    /// An application write, acknowledged if a Redis takes it.
    fn write(&mut self) {
        if let [p] = self.writable_primaries()[..] {
            self.next_id += 1;
            self.redis[p].data.push(self.next_id);
            self.acked.push(self.next_id);
        }
    }

    /// Replication: every replica with its link up holds its primary's data.
    fn replicate(&mut self) {
        for i in 0..self.redis.len() {
            if self.link_up(i) {
                if let Some(p) = self.redis[i].follows {
                    let src = self.redis[p].clone();
                    let r = &mut self.redis[i];
                    (r.data, r.meta, r.pending_epoch, r.mark) =
                        (src.data, src.meta, src.pending_epoch, src.mark);
                }
            }
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now += ms;
        self.replicate();
        self.check();
    }

    /// One control round of agent `i` (skipped while a change holds the round lock).
    fn round(&mut self, i: usize) {
        if !self.agents[i].up || self.agents[i].change.is_some() || self.redis[i].down {
            return;
        }
        let peers = (0..self.redis.len())
            .filter(|j| *j != i)
            .map(|j| {
                let p = if self.reach(i, j) {
                    Peer::Reached {
                        meta: self.redis[j].meta,
                    }
                } else {
                    Peer::Unreachable
                };
                (id(j), p)
            })
            .collect();
        let r = &self.redis[i];
        let o = Observation {
            me: id(i),
            bootstrap_primary: R0,
            persisted: self.agents[i].persisted,
            local_meta: r.meta,
            local_is_primary: r.primary && !r.fence,
            peers,
            now_ms: self.now,
        };
        let out = decide(&o, &mut self.agents[i].memory);
        let a = &mut self.agents[i];
        if out.persist || a.known != out.known {
            a.persisted = Some(out.known);
            a.known = out.known;
        }
        a.fenced = match &out.decision {
            Decision::Fenced(why) => Some(why.clone()),
            _ => None,
        };
        let fenced = matches!(out.decision, Decision::Fenced(_))
            || (out.decision == Decision::Hold && self.redis[i].fence);
        let r = &mut self.redis[i];
        r.fence = fenced;
        if out.decision != Decision::Hold {
            if out.known.primary == id(i) {
                (r.primary, r.follows) = (true, None);
            } else {
                (r.primary, r.follows) = (false, Some(out.known.primary.index()));
            }
        }
        if out.decision == Decision::Primary && self.redis[i].meta != Some(out.known) {
            if !self.writable(i) {
                return; // HSET blocks in the pause or is refused: the round fails
            }
            self.redis[i].meta = Some(out.known);
        }
        if let Some(t) = out.complete_on.map(RegionId::index) {
            if self.reach(i, t) {
                let r = &mut self.redis[t];
                (r.primary, r.follows) = (true, None);
                if !self.paused(t) {
                    self.redis[t].meta = Some(out.known);
                }
            }
        }
        if !self.agents[i].unpaused {
            self.redis[i].paused_until = None;
            self.agents[i].unpaused = true;
        }
        if let Some(p) = self.redis[i].follows.filter(|p| self.reach(i, *p)) {
            self.agents[i].primary_offset = Some(self.redis[p].data.len() as u64);
        }
        self.agents[i].looked = true;
        self.check();
    }

    fn rounds(&mut self) {
        for i in 0..self.redis.len() {
            self.round(i);
        }
    }

    /// A client asks agent `i` for a planned switchover to `to`.
    fn start_planned(&mut self, i: usize, to: usize, timeout_ms: u64) {
        if !self.agents[i].up {
            return;
        }
        if self.agents[i].change.is_some() {
            self.results.push(Err(ChangeError::Busy("another".into())));
            return;
        }
        let a = &self.agents[i];
        let (machine, next) = Planned::new(PlannedStart {
            names: names(self.redis.len()),
            me: id(i),
            to: id(to),
            known: a.known,
            fenced: a.fenced.is_some(),
            timeout: Duration::from_millis(timeout_ms),
        });
        self.run_change(
            i,
            Running::Planned {
                machine,
                next,
                started: self.now,
            },
        );
    }

    /// A client asks agent `i` for a forced promotion of its region.
    fn start_forced(&mut self, i: usize) {
        if !self.agents[i].up {
            return;
        }
        if self.agents[i].change.is_some() {
            self.results.push(Err(ChangeError::Busy("another".into())));
            return;
        }
        let a = &self.agents[i];
        let (machine, next) = Forced::new(ForcedStart {
            names: names(self.redis.len()),
            me: id(i),
            known: a.known,
            fenced: a.fenced.is_some(),
            last_primary_offset: a.primary_offset,
        });
        self.run_change(i, Running::Forced { machine, next });
    }

    fn run_change(&mut self, i: usize, running: Running) {
        let next = match &running {
            Running::Planned { next, .. } | Running::Forced { next, .. } => next,
        };
        if let Action::Finish(r) = next {
            self.results.push(r.clone());
        } else {
            self.agents[i].change = Some(running);
        }
    }

    fn changing(&self, i: usize) -> bool {
        self.agents[i].change.is_some()
    }

    fn forced_running(&self) -> bool {
        self.agents
            .iter()
            .any(|a| matches!(a.change, Some(Running::Forced { .. })))
    }

    /// Agent `i` carries out the next action of its change.
    fn step(&mut self, i: usize) {
        let Some(mut running) = self.agents[i].change.take() else {
            return;
        };
        let next = match &mut running {
            Running::Planned {
                machine,
                next,
                started,
            } => {
                let seen = self.execute(i, next);
                let elapsed = Duration::from_millis(self.now - *started);
                machine.handle(elapsed, seen)
            }
            Running::Forced { machine, next } => {
                let seen = self.execute(i, next);
                machine.handle(seen)
            }
        };
        match next {
            Action::Finish(r) => self.results.push(r),
            next => {
                match &mut running {
                    Running::Planned { next: n, .. } | Running::Forced { next: n, .. } => *n = next,
                }
                self.agents[i].change = Some(running);
            }
        }
        self.check();
    }

    /// What `switchover.rs` does for each action, against the simulated regions.
    fn execute(&mut self, i: usize, action: &Action) -> Seen {
        self.trace
            .push(format!("t={} agent {i}: {action:?}", self.now));
        let n = self.redis.len();
        let failed = || Seen::Failed("unreachable".into());
        if self.redis[i].down {
            return failed();
        }
        match action {
            Action::ReadLocal => {
                let r = &self.redis[i];
                Seen::Local(LocalView {
                    role: if r.primary {
                        RedisRole::Primary
                    } else {
                        RedisRole::Replica
                    },
                    fence_on: r.fence,
                    replica_offset: (!r.primary).then_some(r.data.len() as u64),
                    meta: r.meta,
                })
            }
            Action::ReadTarget { region, .. } => {
                if !self.reach(i, region.index()) {
                    return failed();
                }
                Seen::Target {
                    replica_link_up: self.link_up(region.index()),
                }
            }
            Action::ProbeServing => Seen::Serving(
                (0..n)
                    .find(|j| {
                        *j != i
                            && self.reach(i, *j)
                            && self.redis[*j].primary
                            && !self.redis[*j].fence
                    })
                    .map(id),
            ),
            Action::ReadMark => Seen::Mark(SwitchoverMark::newest(
                (0..n)
                    .filter(|j| self.reach(i, *j))
                    .filter_map(|j| self.mark(j)),
            )),
            Action::ReadHighestEpoch => Seen::HighestEpoch(
                (0..n)
                    .filter(|j| self.reach(i, *j))
                    .flat_map(|j| {
                        let r = &self.redis[j];
                        [r.meta.map(|m| m.epoch), r.pending_epoch]
                    })
                    .flatten()
                    .max()
                    .unwrap_or(0),
            ),
            Action::MarkSwitchover { what, ttl, epoch } => {
                if !self.writable(i) {
                    return Seen::Failed("write refused".into());
                }
                let until = self.now + ttl.as_millis() as u64;
                let r = &mut self.redis[i];
                r.pending_epoch = Some(r.pending_epoch.unwrap_or(0).max(*epoch));
                let mark = SwitchoverMark {
                    what: what.clone(),
                    epoch: Some(*epoch),
                };
                r.mark = Some((mark, until));
                // Both writes are in the replication stream: a target that has caught up with
                // the offset read after them holds the mark.
                r.data.push(0);
                Seen::Done
            }
            Action::PauseWrites { duration } => {
                self.redis[i].paused_until = Some(self.now + duration.as_millis() as u64);
                Seen::Done
            }
            Action::ReadPrimaryOffset => Seen::Offset(Some(self.redis[i].data.len() as u64)),
            Action::ReadTargetOffset { region, .. } => Seen::Offset(
                self.reach(i, region.index())
                    .then(|| self.redis[region.index()].data.len() as u64),
            ),
            Action::Wait(d) => {
                self.tick(d.as_millis().max(1) as u64);
                Seen::Done
            }
            Action::Record(k) => {
                let a = &mut self.agents[i];
                (a.persisted, a.known) = (Some(*k), *k);
                Seen::Done
            }
            Action::Demote { follow } => {
                let r = &mut self.redis[i];
                (r.primary, r.follows) = (false, Some(follow.index()));
                Seen::Done
            }
            Action::PromoteTarget(k) => {
                let t = k.primary.index();
                if !self.reach(i, t) {
                    return failed();
                }
                let r = &mut self.redis[t];
                (r.primary, r.follows) = (true, None);
                if !self.writable(t) {
                    return Seen::Failed("write refused".into());
                }
                self.redis[t].meta = Some(*k);
                Seen::Done
            }
            Action::BecomePrimary => {
                let r = &mut self.redis[i];
                (r.primary, r.follows) = (true, None);
                Seen::Done
            }
            Action::LiftFence => {
                self.agents[i].fenced = None;
                self.redis[i].fence = false;
                Seen::Done
            }
            Action::WriteMeta(k) => {
                if !self.writable(i) {
                    return Seen::Failed("write refused".into());
                }
                self.redis[i].meta = Some(*k);
                Seen::Done
            }
            Action::Unpause => {
                self.redis[i].paused_until = None;
                Seen::Done
            }
            Action::ClearMark => {
                if !self.writable(i) {
                    return Seen::Failed("write refused".into());
                }
                self.redis[i].mark = None;
                Seen::Done
            }
            Action::Finish(_) => Seen::Done,
        }
    }

    /// The agent process dies: its change stops mid-way, its memory is lost, its tunnels close.
    fn crash_agent(&mut self, i: usize) {
        self.agents[i].up = false;
        self.agents[i].change = None;
        self.check();
    }

    fn restart_agent(&mut self, i: usize) {
        if !self.agents[i].up {
            self.agents[i] = Agent::started(self.agents[i].persisted);
        }
    }

    /// The whole region is lost (Redis and agent killed).
    fn kill_region(&mut self, i: usize) {
        self.crash_agent(i);
        self.redis[i].down = true;
    }

    /// The region restarts: redis.conf from its agent's state file (the believed primary starts
    /// as a fenced primary, the others as its replicas), the data from disk.
    fn restart_region(&mut self, i: usize) {
        let believed = self.agents[i].persisted.map_or(0, |k| k.primary.index());
        let r = &mut self.redis[i];
        r.down = false;
        r.paused_until = None;
        if believed == i {
            (r.primary, r.fence, r.follows) = (true, true, None);
        } else {
            (r.primary, r.fence, r.follows) = (false, false, Some(believed));
        }
        self.restart_agent(i);
        self.check();
    }

    /// Everything restarts and runs (changes to their end) until quiet.
    fn settle(&mut self) {
        for i in 0..self.redis.len() {
            if self.redis[i].down {
                self.restart_region(i);
            }
            self.restart_agent(i);
        }
        for _ in 0..40 {
            for _ in 0..10_000 {
                let busy: Vec<usize> = (0..self.redis.len())
                    .filter(|i| self.changing(*i))
                    .collect();
                if busy.is_empty() {
                    break;
                }
                for i in busy {
                    self.step(i);
                    self.tick(1);
                }
            }
            self.rounds();
            self.tick(1000);
        }
    }

    /// The one writable primary every other region follows, with every agent agreeing.
    fn settled(&self) -> Option<usize> {
        let [p] = self.writable_primaries()[..] else {
            return None;
        };
        let all_follow = (0..self.redis.len())
            .all(|i| i == p || (self.redis[i].follows == Some(p) && self.link_up(i)));
        let all_agree = self.agents.iter().all(|a| a.known.primary == id(p));
        (all_follow && all_agree).then_some(p)
    }

    /// After [`Sim::settle`]: one primary, holding every acknowledged write.
    fn assert_converged(&self, context: &str) -> usize {
        let p = self
            .settled()
            .unwrap_or_else(|| panic!("{context}: not settled: {self:#?}"));
        let data = &self.redis[p].data;
        let lost: Vec<u64> = self
            .acked
            .iter()
            .filter(|id| !data.contains(id))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "{context}: acknowledged writes lost {lost:?}: {self:#?}"
        );
        p
    }
}

/// Every action a planned switchover 0 → 1 takes, in a healthy cluster of `n`.
fn planned_actions(n: usize) -> usize {
    let mut sim = Sim::healthy(n);
    sim.start_planned(0, 1, 5_000);
    let mut steps = 0;
    while sim.changing(0) {
        sim.step(0);
        sim.tick(1);
        steps += 1;
    }
    assert!(matches!(sim.results[..], [Ok(_)]), "{:?}", sim.results);
    steps
}

#[test]
fn a_planned_switchover_moves_the_primary_and_loses_nothing() {
    let mut sim = Sim::healthy(3);
    for _ in 0..10 {
        sim.write();
        sim.tick(1);
    }
    sim.start_planned(0, 1, 5_000);
    while sim.changing(0) {
        sim.write(); // refused while paused
        sim.step(0);
        sim.tick(1);
    }
    let [Ok(done)] = &sim.results[..] else {
        panic!("{:?}", sim.results)
    };
    assert_eq!((done.from, done.to, done.epoch), (R0, R1, 2));
    sim.settle();
    for _ in 0..10 {
        sim.write();
        sim.tick(1);
    }
    assert_eq!(sim.assert_converged("planned"), 1);
}

#[test]
fn a_switchover_whose_agent_crashes_after_any_action_converges_without_loss() {
    let total = planned_actions(3);
    let mut cases = 0;
    // The old primary's agent, then the target's, dies after each action.
    for crashing in [0, 1] {
        for crash_after in 0..=total {
            let mut sim = Sim::healthy(3);
            for _ in 0..5 {
                sim.write();
                sim.tick(1);
            }
            sim.start_planned(0, 1, 2_000);
            for _ in 0..crash_after {
                sim.step(0);
                sim.write();
                sim.tick(1);
            }
            sim.crash_agent(crashing);
            // Applications keep writing wherever Redis takes writes; the agent comes back later.
            for _ in 0..50 {
                sim.step(0);
                sim.write();
                sim.tick(100);
            }
            sim.settle();
            for _ in 0..5 {
                sim.write();
                sim.tick(1);
            }
            let context = format!("agent {crashing} crashed after {crash_after} of {total}");
            let p = sim.assert_converged(&context);
            let recorded = sim.agents[0].persisted.is_some_and(|k| k.epoch == 2);
            assert_eq!(p, usize::from(recorded), "{context}");
            cases += 1;
        }
    }
    assert_eq!(cases, 2 * (total + 1));
}

#[test]
fn a_forced_promotion_during_a_planned_switchover_is_refused_at_every_step() {
    let total = planned_actions(3);
    for forced_at in [1, 2] {
        for after in 0..=total {
            let mut sim = Sim::healthy(3);
            sim.start_planned(0, 1, 5_000);
            for _ in 0..after {
                sim.step(0);
                sim.tick(1);
            }
            // The forced promotion interleaves with the rest of the switchover, one action each.
            sim.start_forced(forced_at);
            while sim.changing(0) || sim.changing(forced_at) {
                sim.step(forced_at);
                sim.step(0);
                sim.write();
                sim.tick(1);
            }
            let forced = sim
                .results
                .iter()
                .filter(|r| !matches!(r, Ok(c) if c.kind == crate::status::ChangeKind::Planned));
            for r in forced {
                assert!(
                    matches!(
                        r,
                        Err(ChangeError::PrimaryServing { .. }
                            | ChangeError::SwitchoverInProgress(_)
                            | ChangeError::AlreadyPrimary { .. })
                    ),
                    "forced at {forced_at} after {after} of {total}: {r:?}\n{:#?}",
                    sim.trace
                );
            }
            sim.settle();
            let p = sim.assert_converged(&format!("forced at {forced_at} after {after}"));
            assert_eq!(p, 1);
            assert_eq!(sim.agents[0].known.epoch, 2, "one epoch, the planned one");
        }
    }
}

#[test]
fn a_forced_promotion_right_after_a_completed_switchover_is_accepted() {
    let mut sim = Sim::healthy(3);
    sim.start_planned(0, 1, 5_000);
    while sim.changing(0) {
        sim.step(0);
        sim.tick(1);
    }
    assert!(matches!(sim.results[..], [Ok(_)]), "{:?}", sim.results);
    sim.rounds();
    sim.tick(1);
    // The new primary is lost at once; its switchover's mark lives on in region 2.
    sim.kill_region(1);
    assert!(sim.mark(2).is_some(), "{:?}", sim.redis[2]);
    sim.start_forced(2);
    while sim.changing(2) {
        sim.step(2);
        sim.tick(1);
    }
    let [_, Ok(done)] = &sim.results[..] else {
        panic!("{:?}\n{:#?}", sim.results, sim.trace)
    };
    assert_eq!((done.to, done.epoch), (id(2), 3));
    // The others follow the promoted region before the lost one returns.
    for _ in 0..3 {
        sim.rounds();
        sim.tick(1000);
    }
    sim.settle();
    assert_eq!(sim.assert_converged("forced after a switchover"), 2);
}

#[test]
fn a_forced_promotion_interrupted_at_any_action_leaves_one_primary() {
    // Region 0 is lost; region 1 is promoted by force, its agent crashing after each action.
    for crash_after in 0..8 {
        let mut sim = Sim::healthy(3);
        for _ in 0..5 {
            sim.write();
            sim.tick(1);
        }
        sim.kill_region(0);
        sim.acked.clear(); // an emergency promotion may lose the lost region's last writes
        sim.start_forced(1);
        for _ in 0..crash_after {
            sim.step(1);
            sim.tick(1);
        }
        let finished = !sim.changing(1);
        sim.crash_agent(1);
        sim.tick(100);
        sim.restart_agent(1);
        for _ in 0..3 {
            sim.rounds();
            sim.tick(1000);
        }
        let promoted = sim.agents[1].persisted.is_some_and(|k| k.epoch == 2);
        if finished {
            assert!(promoted, "{:?}", sim.results);
        }
        // While region 0 is away, at most region 1 takes writes; then 0 returns.
        for _ in 0..5 {
            sim.write();
            sim.tick(1);
        }
        sim.settle();
        let p = sim.assert_converged(&format!("forced, crash after {crash_after}"));
        assert_eq!(p, if promoted { 1 } else { 0 }, "crash after {crash_after}");
    }
}

#[test]
fn a_crashed_primary_replaced_by_force_returns_as_a_replica_without_ever_being_writable() {
    let mut sim = Sim::healthy(2);
    sim.kill_region(0);
    sim.start_forced(1);
    while sim.changing(1) {
        sim.step(1);
        sim.tick(1);
    }
    assert!(matches!(sim.results[..], [Ok(_)]), "{:?}", sim.results);
    sim.rounds();
    // Region 0 returns while the WAN is still cut (its agent reaches nobody): fenced, never
    // writable.
    sim.crash_agent(1);
    sim.restart_region(0);
    for _ in 0..5 {
        sim.rounds();
        sim.tick(1000);
        assert!(
            !sim.writable(0),
            "writable while isolated: {:?}",
            sim.redis[0]
        );
    }
    sim.restart_agent(1);
    sim.settle();
    assert_eq!(sim.assert_converged("returning"), 1);
    assert_eq!(
        sim.agents[0].persisted,
        Some(Known {
            epoch: 2,
            primary: R1
        })
    );
}

/// One event of the property test.
#[derive(Debug, Clone)]
enum Event {
    Write,
    Tick(u64),
    Round(usize),
    Planned {
        at: usize,
        to: usize,
        timeout_ms: u64,
    },
    Forced(usize),
    Step(usize),
    CrashAgent(usize),
    RestartAgent(usize),
}

fn event(n: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Write),
        2 => (1u64..400).prop_map(Event::Tick),
        2 => (0..n).prop_map(Event::Round),
        1 => (0..n, 0..n, 1u64..3_000).prop_map(|(at, to, timeout_ms)| Event::Planned { at, to, timeout_ms }),
        1 => (0..n).prop_map(Event::Forced),
        8 => (0..n).prop_map(Event::Step),
        1 => (0..n).prop_map(Event::CrashAgent),
        1 => (0..n).prop_map(Event::RestartAgent),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Two concurrent changes of primary of any kinds, agent crashes and restarts, interleaved at
    /// random: never two writable primaries (checked after every event), and once everything has
    /// restarted and run, one primary holding every acknowledged write.
    ///
    /// The operator's side of the contract, as `georep promote --force` documents it, is
    /// modelled too: a forced promotion is requested only while every agent is up and has looked
    /// at the cluster once (`georep status` answers), and no agent dies while it runs; it must
    /// then be refused unless no region serves and no switchover is marked. Losing a region's unreplicated writes to a forced promotion while its Redis is
    /// alive but its agent is not (a partition, as far as anyone can tell) is the documented
    /// cost of an emergency promotion, not checked here.
    #[test]
    fn no_interleaving_of_changes_and_crashes_yields_two_primaries_or_loses_a_write(
        n in 2usize..=3,
        events in prop::collection::vec(event(3), 1..120),
    ) {
        let mut sim = Sim::healthy(n);
        let mut started = 0;
        for e in events {
            match e {
                Event::Write => sim.write(),
                Event::Tick(ms) => sim.tick(ms),
                Event::Round(i) if i < n => sim.round(i),
                Event::Planned { at, to, timeout_ms } if at < n && to < n && started < 2 => {
                    started += 1;
                    sim.start_planned(at, to, timeout_ms);
                }
                Event::Forced(i) if i < n && started < 2 && sim.agents.iter().all(|a| a.up && a.looked)
                    && !sim.forced_running() => {
                    started += 1;
                    sim.start_forced(i);
                }
                Event::Step(i) if i < n => sim.step(i),
                Event::CrashAgent(i) if i < n && !sim.forced_running() => sim.crash_agent(i),
                Event::RestartAgent(i) if i < n => sim.restart_agent(i),
                _ => {}
            }
            sim.check();
        }
        sim.settle();
        for _ in 0..3 {
            sim.write();
            sim.tick(1);
        }
        sim.assert_converged("after the interleaving");
    }
}
