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

/// An (epoch, primary) pair; `primary` is a region index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Cluster epoch.
    pub epoch: u64,
    /// Primary region index.
    pub primary: usize,
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
    /// Our region index.
    pub me: usize,
    /// The topology's primary: the cluster's primary at epoch 1, before any change.
    pub bootstrap_primary: usize,
    /// Our state file.
    pub persisted: Option<Known>,
    /// Our Redis's `georep:meta`.
    pub local_meta: Option<Known>,
    /// Whether our Redis is an unfenced primary (`role:master`, `min-replicas-to-write 0`).
    pub local_is_primary: bool,
    /// Every other region, by index.
    pub peers: Vec<(usize, Peer)>,
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
    Follow(usize),
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
    pub complete_on: Option<usize>,
}

/// Decides; `memory` carries the grace timer from round to round.
pub fn decide(obs: &Observation, memory: &mut Memory) -> Outcome {
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
    let persist = obs.persisted != Some(known);

    if known.primary != obs.me {
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
        return Outcome {
            known,
            decision,
            persist,
            complete_on,
        };
    }
    memory.unconfirmed_primary_since = None;
    let reached_someone = obs.peers.is_empty()
        || obs
            .peers
            .iter()
            .any(|(_, p)| matches!(p, Peer::Reached { .. }));
    let decision = if obs.local_is_primary || reached_someone {
        Decision::Primary
    } else {
        Decision::Fenced(format!(
            "epoch {} names this region primary, but no other region is reachable to confirm \
             that no higher epoch exists; staying fenced (see `georep promote --force`)",
            known.epoch
        ))
    };
    Outcome {
        known,
        decision,
        persist,
        complete_on: None,
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
mod tests {
    use super::*;

    fn k(epoch: u64, primary: usize) -> Known {
        Known { epoch, primary }
    }

    fn reached(meta: Option<Known>, _is_primary: bool) -> Peer {
        Peer::Reached { meta }
    }

    fn obs(me: usize, persisted: Option<Known>, local_meta: Option<Known>) -> Observation {
        Observation {
            me,
            bootstrap_primary: 0,
            persisted,
            local_meta,
            local_is_primary: false,
            peers: vec![],
            now_ms: 0,
        }
    }

    #[test]
    fn a_fresh_cluster_promotes_the_topology_primary_once_a_peer_answers() {
        let mut m = Memory::default();
        let mut o = obs(0, None, None);
        o.peers = vec![(1, Peer::Unreachable)];
        let out = decide(&o, &mut m);
        assert!(matches!(out.decision, Decision::Fenced(_)), "{out:?}");
        assert_eq!(out.known, k(1, 0));
        o.peers = vec![(1, reached(None, false))];
        let out = decide(&o, &mut m);
        assert_eq!(out.decision, Decision::Primary);
        assert!(out.persist);
        // The replica follows the topology primary.
        let mut r = obs(1, None, None);
        r.peers = vec![(0, Peer::Unreachable)];
        assert_eq!(decide(&r, &mut m).decision, Decision::Follow(0));
    }

    #[test]
    fn a_single_region_cluster_needs_no_peer() {
        let out = decide(&obs(0, None, None), &mut Memory::default());
        assert_eq!(out.decision, Decision::Primary);
    }

    #[test]
    fn the_highest_epoch_anywhere_wins() {
        let mut o = obs(0, Some(k(3, 0)), Some(k(3, 0)));
        o.local_is_primary = true;
        o.peers = vec![(1, reached(Some(k(4, 1)), true)), (2, Peer::Unreachable)];
        let out = decide(&o, &mut Memory::default());
        assert_eq!(out.known, k(4, 1));
        assert_eq!(out.decision, Decision::Follow(1));
        assert!(out.persist);
        assert_eq!(out.complete_on, None);
    }

    #[test]
    fn a_restarted_primary_that_reaches_nobody_stays_read_only() {
        let mut o = obs(0, Some(k(5, 0)), Some(k(5, 0)));
        o.peers = vec![(1, Peer::Unreachable), (2, Peer::Unreachable)];
        let mut m = Memory::default();
        assert!(matches!(decide(&o, &mut m).decision, Decision::Fenced(_)));
        // One region answers with the same epoch: confirmed.
        o.peers[1] = (2, reached(Some(k(5, 0)), false));
        assert_eq!(decide(&o, &mut m).decision, Decision::Primary);
        // One region answers with a higher epoch: it was replaced while away.
        o.peers[1] = (2, reached(Some(k(6, 1)), false));
        assert_eq!(decide(&o, &mut m).decision, Decision::Follow(1));
    }

    #[test]
    fn a_region_returning_with_a_stale_epoch_follows_the_current_one() {
        // Region 0 was primary at epoch 2, crashed; region 1 was promoted at epoch 3.
        let mut o = obs(0, Some(k(2, 0)), Some(k(2, 0)));
        o.peers = vec![(1, reached(Some(k(3, 1)), true))];
        let out = decide(&o, &mut Memory::default());
        assert_eq!(out.decision, Decision::Follow(1));
        assert_eq!(out.known, k(3, 1));
        // And the current primary ignores the stale region's epoch.
        let mut p = obs(1, Some(k(3, 1)), Some(k(3, 1)));
        p.local_is_primary = true;
        p.peers = vec![(0, reached(Some(k(2, 0)), false))];
        let out = decide(&p, &mut Memory::default());
        assert_eq!(out.decision, Decision::Primary);
        assert!(!out.persist);
    }

    #[test]
    fn a_running_primary_keeps_serving_while_partitioned() {
        let mut o = obs(0, Some(k(2, 0)), Some(k(2, 0)));
        o.local_is_primary = true;
        o.peers = vec![(1, Peer::Unreachable)];
        assert_eq!(
            decide(&o, &mut Memory::default()).decision,
            Decision::Primary
        );
    }

    #[test]
    fn a_just_promoted_target_is_held_until_its_epoch_arrives_then_demoted_after_the_grace() {
        // Region 1 has been promoted by region 0's switchover; the epoch is not written yet.
        let mut m = Memory::default();
        let mut o = obs(1, Some(k(2, 0)), Some(k(2, 0)));
        o.local_is_primary = true;
        o.peers = vec![(0, reached(Some(k(2, 0)), false))];
        assert_eq!(decide(&o, &mut m).decision, Decision::Hold);
        o.now_ms = UNCONFIRMED_PRIMARY_GRACE_MS - 1;
        assert_eq!(decide(&o, &mut m).decision, Decision::Hold);
        // The epoch arrives: primary.
        let mut done = o.clone();
        done.local_meta = Some(k(3, 1));
        assert_eq!(decide(&done, &mut m).decision, Decision::Primary);
        // Without it, past the grace, a stray primary is demoted.
        let mut m = Memory::default();
        o.now_ms = 0;
        assert_eq!(decide(&o, &mut m).decision, Decision::Hold);
        o.now_ms = UNCONFIRMED_PRIMARY_GRACE_MS;
        assert_eq!(decide(&o, &mut m).decision, Decision::Follow(0));
    }

    #[test]
    fn an_old_primary_that_recorded_a_switchover_completes_it_after_a_crash() {
        // Region 0's agent recorded epoch 3 → region 1, then died before region 1 was promoted.
        let mut o = obs(0, Some(k(3, 1)), Some(k(2, 0)));
        o.peers = vec![(1, reached(Some(k(2, 0)), false))];
        let out = decide(&o, &mut Memory::default());
        assert_eq!(out.decision, Decision::Follow(1));
        assert_eq!(out.complete_on, Some(1));
        // Once region 1 holds epoch 3, nothing more to complete.
        o.peers = vec![(1, reached(Some(k(3, 1)), true))];
        assert_eq!(decide(&o, &mut Memory::default()).complete_on, None);
        // A third region never completes someone else's switchover: it has not recorded it.
        let mut third = obs(2, Some(k(2, 0)), Some(k(2, 0)));
        third.peers = vec![
            (0, reached(Some(k(2, 0)), false)),
            (1, reached(Some(k(2, 0)), false)),
        ];
        assert_eq!(decide(&third, &mut Memory::default()).complete_on, None);
    }

    #[test]
    fn two_regions_forced_at_the_same_epoch_settle_on_the_first_listed() {
        let mut a = obs(1, Some(k(4, 1)), Some(k(4, 1)));
        a.local_is_primary = true;
        a.peers = vec![(2, reached(Some(k(4, 2)), true))];
        let mut b = obs(2, Some(k(4, 2)), Some(k(4, 2)));
        b.local_is_primary = true;
        b.peers = vec![(1, reached(Some(k(4, 1)), true))];
        assert_eq!(
            decide(&a, &mut Memory::default()).decision,
            Decision::Primary
        );
        assert_eq!(
            decide(&b, &mut Memory::default()).decision,
            Decision::Follow(1)
        );
    }

    /// An in-memory cluster: each region's Redis (role, meta, whom it follows) and agent (state
    /// file, memory), run in rounds of one simulated second.
    #[derive(Debug, Clone, Default)]
    struct Node {
        persisted: Option<Known>,
        meta: Option<Known>,
        primary: bool,
        fenced: bool,
        follows: Option<usize>,
        memory: Memory,
        down: bool,
    }

    fn round(nodes: &mut [Node], now_ms: u64) {
        for i in 0..nodes.len() {
            if nodes[i].down {
                continue;
            }
            let peers = (0..nodes.len())
                .filter(|j| *j != i)
                .map(|j| {
                    let p = if nodes[j].down {
                        Peer::Unreachable
                    } else {
                        reached(nodes[j].meta, nodes[j].primary)
                    };
                    (j, p)
                })
                .collect();
            let o = Observation {
                me: i,
                bootstrap_primary: 0,
                persisted: nodes[i].persisted,
                local_meta: nodes[i].meta,
                local_is_primary: nodes[i].primary && !nodes[i].fenced,
                peers,
                now_ms,
            };
            let mut memory = std::mem::take(&mut nodes[i].memory);
            let out = decide(&o, &mut memory);
            nodes[i].memory = memory;
            if out.persist {
                nodes[i].persisted = Some(out.known);
            }
            match out.decision {
                Decision::Primary => {
                    let n = &mut nodes[i];
                    (n.primary, n.fenced, n.follows) = (true, false, None);
                    n.meta = Some(out.known);
                }
                Decision::Follow(j) => {
                    let n = &mut nodes[i];
                    (n.primary, n.fenced, n.follows) = (false, false, Some(j));
                }
                Decision::Fenced(_) => {
                    let n = &mut nodes[i];
                    (n.primary, n.fenced, n.follows) = (true, true, None);
                }
                Decision::Hold => {}
            }
            if let Some(t) = out.complete_on {
                nodes[t].primary = true;
                nodes[t].follows = None;
                nodes[t].meta = Some(out.known);
            }
        }
        // Replication: a replica of a primary holds its data, meta included.
        for i in 0..nodes.len() {
            if let Some(j) = nodes[i].follows {
                if nodes[j].primary && !nodes[j].down && !nodes[i].down {
                    nodes[i].meta = nodes[j].meta;
                }
            }
        }
    }

    fn settled(nodes: &[Node]) -> Option<usize> {
        let primaries: Vec<usize> = (0..nodes.len())
            .filter(|i| nodes[*i].primary && !nodes[*i].fenced && !nodes[*i].down)
            .collect();
        let [p] = primaries[..] else { return None };
        let all_follow =
            (0..nodes.len()).all(|i| i == p || nodes[i].down || nodes[i].follows == Some(p));
        all_follow.then_some(p)
    }

    fn healthy_cluster(n: usize) -> Vec<Node> {
        let mut nodes = vec![Node::default(); n];
        for t in 0..5 {
            round(&mut nodes, t * 1000);
        }
        assert_eq!(settled(&nodes), Some(0));
        nodes
    }

    type Step = dyn Fn(&mut [Node]);

    #[test]
    fn a_switchover_interrupted_at_any_step_converges_on_one_primary() {
        // The steps of a planned switchover 0 → 1, as `switchover::failover` runs them.
        for crash_after in 0..=4 {
            let mut nodes = healthy_cluster(3);
            let next = k(2, 1);
            let steps: [&Step; 4] = [
                &move |n| n[0].persisted = Some(next),
                &|n| (n[0].primary, n[0].follows) = (false, Some(1)),
                &|n| (n[1].primary, n[1].follows) = (true, None),
                &move |n| n[1].meta = Some(next),
            ];
            for step in &steps[..crash_after] {
                step(&mut nodes);
            }
            // The old primary's agent dies here and restarts (its memory is lost).
            nodes[0].memory = Memory::default();
            for t in 0..20 {
                round(&mut nodes, 10_000 + t * 1000);
            }
            let expected = if crash_after == 0 { 0 } else { 1 };
            assert_eq!(
                settled(&nodes),
                Some(expected),
                "crash after {crash_after}: {nodes:?}"
            );
            for n in &nodes {
                assert_eq!(
                    n.persisted.unwrap().primary,
                    expected,
                    "crash after {crash_after}"
                );
            }
        }
    }

    #[test]
    fn a_crashed_primary_replaced_by_force_returns_as_a_replica_without_ever_being_writable() {
        let mut nodes = healthy_cluster(2);
        nodes[0].down = true;
        // `promote --force` on region 1: epoch + 1, itself primary.
        let forced = k(nodes[1].persisted.unwrap().epoch + 1, 1);
        nodes[1].persisted = Some(forced);
        (nodes[1].primary, nodes[1].follows, nodes[1].meta) = (true, None, Some(forced));
        round(&mut nodes, 20_000);
        // Region 0 restarts fenced (its Redis starts as a fenced primary) and the WAN is still
        // down at first: it stays fenced, never writable.
        nodes[0] = Node {
            down: false,
            fenced: true,
            primary: true,
            ..nodes[0].clone()
        };
        let mut cut = nodes.clone();
        cut[1].down = true;
        for t in 0..5 {
            round(&mut cut, 21_000 + t * 1000);
            assert!(
                cut[0].fenced || !cut[0].primary,
                "writable while isolated: {:?}",
                cut[0]
            );
        }
        // The WAN heals: it follows the new primary.
        nodes[0] = cut[0].clone();
        round(&mut nodes, 30_000);
        round(&mut nodes, 31_000);
        assert_eq!(settled(&nodes), Some(1));
        assert_eq!(nodes[0].persisted, Some(forced));
    }

    #[test]
    fn concurrent_forced_promotions_in_a_partition_settle_when_it_heals() {
        let mut nodes = healthy_cluster(3);
        // Regions 1 and 2 cannot see each other nor 0; both are forced at epoch 2.
        nodes[0].down = true;
        for r in [1, 2] {
            let forced = k(2, r);
            nodes[r].persisted = Some(forced);
            (nodes[r].primary, nodes[r].follows, nodes[r].meta) = (true, None, Some(forced));
        }
        nodes[0].down = false;
        nodes[0].fenced = true;
        for t in 0..5 {
            round(&mut nodes, 40_000 + t * 1000);
        }
        assert_eq!(settled(&nodes), Some(1));
    }
}
