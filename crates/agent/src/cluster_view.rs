//! Who should be primary, as a pure function of what one agent can observe.
//!
//! Every change of primary increments the cluster **epoch**. The epoch and the primary's name
//! live in each Redis (`georep:meta`, written on the primary, so every replica holds the epoch of
//! the data it has) and in each agent's state file. An agent gathers every epoch it can see —
//! its state file, its own Redis, each other region's Redis read through its tunnel client — and
//! the highest one wins: its primary is the desired primary. An old primary that comes back and
//! sees a higher epoch demotes itself.
//!
//! Fencing: every Redis starts unable to take application writes — as a replica, or, in the
//! region that believed itself primary, as a primary with `min-replicas-to-write 1` (writes need
//! a replica attached, i.e. a region whose agent agrees). The agent lifts the fence only when the
//! highest epoch it knows names its region **and** it has reached at least one other region's
//! Redis (so it has seen that nobody there holds a higher epoch), or its Redis already was the
//! unfenced primary. A restarted primary that reaches no other region stays fenced until one is
//! reachable or an operator forces a promotion.

use topology::RegionId;

/// An (epoch, primary) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Cluster epoch.
    pub epoch: u64,
    /// Primary region.
    pub primary: RegionId,
}

/// What one other region looks like through our tunnel client to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Its Redis could not be reached (agent, tunnel, WAN or Redis down).
    Unreachable,
    /// Its Redis answered.
    Reached {
        /// Its `georep:meta`, if any.
        meta: Option<Known>,
    },
}

/// Everything one control round observed.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Our region.
    pub me: RegionId,
    /// The topology's primary: the cluster's primary at epoch 1, before any change.
    pub bootstrap_primary: RegionId,
    /// Our state file.
    pub persisted: Option<Known>,
    /// Our Redis's `georep:meta`.
    pub local_meta: Option<Known>,
    /// Whether our Redis is an unfenced primary (`role:master`, `min-replicas-to-write 0`).
    pub local_is_primary: bool,
    /// Every other region.
    pub peers: Vec<(RegionId, Peer)>,
    /// Local clock, milliseconds.
    pub now_ms: u64,
}

/// How long a Redis that is a primary without being named by the epoch it holds is left alone:
/// the window between a planned switchover promoting it and writing the new epoch into it.
pub const UNCONFIRMED_PRIMARY_GRACE_MS: u64 = 5_000;

/// What the control loop remembers between rounds.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    unconfirmed_primary_since: Option<u64>,
}

/// The role our Redis should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Be the writable primary.
    Primary,
    /// Replicate from this region.
    Follow(RegionId),
    /// Be the primary, fenced (`min-replicas-to-write 1`): the epoch names us, but no other
    /// region could confirm that no higher epoch exists.
    Fenced(String),
    /// Leave the role as it is this round (a promotion by another agent is being completed).
    Hold,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The highest epoch seen.
    pub known: Known,
    /// Our Redis's role.
    pub decision: Decision,
    /// Whether the state file must be rewritten with `known`.
    pub persist: bool,
    /// Finish an interrupted switchover: promote this region's Redis and write `known` into it.
    /// Only the agent whose state file recorded the switchover (the old primary) does this.
    pub complete_on: Option<RegionId>,
}

/// Decides; `memory` carries the grace timer from round to round.
pub fn decide(obs: &Observation, memory: &mut Memory) -> Outcome {
    let known = highest_known(obs);
    let persist = obs.persisted != Some(known);
    let (decision, complete_on) = if known.primary == obs.me {
        (lead(obs, memory, known), None)
    } else {
        follow(obs, memory, known)
    };
    Outcome {
        known,
        decision,
        persist,
        complete_on,
    }
}

/// The highest (epoch, primary) among our state file, our Redis and every peer reached; the
/// topology's primary at epoch 1 when nobody knows better.
fn highest_known(obs: &Observation) -> Known {
    let mut known = Known {
        epoch: 1,
        primary: obs.bootstrap_primary,
    };
    // At equal epochs (two regions force-promoted at once, each unaware of the other) the
    // region listed first in the topology wins, the same everywhere.
    let sources =
        obs.persisted
            .iter()
            .chain(obs.local_meta.iter())
            .chain(obs.peers.iter().filter_map(|(_, p)| match p {
                Peer::Reached { meta, .. } => meta.as_ref(),
                Peer::Unreachable => None,
            }));
    let mut first = true;
    for k in sources {
        let wins = k.epoch > known.epoch
            || (k.epoch == known.epoch && (first || k.primary < known.primary));
        if wins {
            known = *k;
        }
        first = false;
    }
    known
}

/// Another region is primary: follow it — unless our Redis was just promoted by a switchover
/// whose epoch has not arrived yet (held for the grace) — and finish the switchover we recorded
/// if the new primary does not hold its epoch yet.
fn follow(obs: &Observation, memory: &mut Memory, known: Known) -> (Decision, Option<RegionId>) {
    memory_reset_unless(memory, obs, known);
    let peer = obs
        .peers
        .iter()
        .find(|(i, _)| *i == known.primary)
        .map(|(_, p)| p);
    let complete_on = match peer {
        Some(Peer::Reached { meta, .. })
            if obs.persisted == Some(known) && meta.is_none_or(|m| m.epoch < known.epoch) =>
        {
            Some(known.primary)
        }
        _ => None,
    };
    let decision = if obs.local_is_primary && is_unconfirmed_promotion(obs, known) {
        let since = *memory.unconfirmed_primary_since.get_or_insert(obs.now_ms);
        if obs.now_ms.saturating_sub(since) < UNCONFIRMED_PRIMARY_GRACE_MS {
            Decision::Hold
        } else {
            Decision::Follow(known.primary)
        }
    } else {
        Decision::Follow(known.primary)
    };
    (decision, complete_on)
}

/// We are primary: serve writes if our Redis already does or another region confirmed that no
/// higher epoch exists; otherwise stay fenced.
fn lead(obs: &Observation, memory: &mut Memory, known: Known) -> Decision {
    memory.unconfirmed_primary_since = None;
    let reached_someone = obs.peers.is_empty()
        || obs
            .peers
            .iter()
            .any(|(_, p)| matches!(p, Peer::Reached { .. }));
    if obs.local_is_primary || reached_someone {
        Decision::Primary
    } else {
        Decision::Fenced(format!(
            "epoch {} names this region primary, but no other region is reachable to confirm \
             that no higher epoch exists; staying fenced (see `georep promote --force`)",
            known.epoch
        ))
    }
}

/// Our Redis is a primary, but the epoch it holds names another region, and nobody we see knows
/// a higher epoch: the state between `REPLICAOF NO ONE` and the new epoch's write in a planned
/// switchover. (An old primary at a lower epoch is demoted at once.)
fn is_unconfirmed_promotion(obs: &Observation, known: Known) -> bool {
    matches!(obs.local_meta, Some(m) if m == known && m.primary != obs.me)
}

fn memory_reset_unless(memory: &mut Memory, obs: &Observation, known: Known) {
    if !(obs.local_is_primary && is_unconfirmed_promotion(obs, known)) {
        memory.unconfirmed_primary_since = None;
    }
}

#[cfg(test)]
mod tests;
