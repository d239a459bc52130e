use super::*;

const R0: RegionId = RegionId::new(0);
const R1: RegionId = RegionId::new(1);
const R2: RegionId = RegionId::new(2);

fn k(epoch: u64, primary: RegionId) -> Known {
    Known { epoch, primary }
}

fn reached(meta: Option<Known>, _is_primary: bool) -> Peer {
    Peer::Reached { meta }
}

fn obs(me: RegionId, persisted: Option<Known>, local_meta: Option<Known>) -> Observation {
    Observation {
        me,
        bootstrap_primary: R0,
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
    let mut o = obs(R0, None, None);
    o.peers = vec![(R1, Peer::Unreachable)];
    let out = decide(&o, &mut m);
    assert!(matches!(out.decision, Decision::Fenced(_)), "{out:?}");
    assert_eq!(out.known, k(1, R0));
    o.peers = vec![(R1, reached(None, false))];
    let out = decide(&o, &mut m);
    assert_eq!(out.decision, Decision::Primary);
    assert!(out.persist);
    // The replica follows the topology primary.
    let mut r = obs(R1, None, None);
    r.peers = vec![(R0, Peer::Unreachable)];
    assert_eq!(decide(&r, &mut m).decision, Decision::Follow(R0));
}

#[test]
fn a_single_region_cluster_needs_no_peer() {
    let out = decide(&obs(R0, None, None), &mut Memory::default());
    assert_eq!(out.decision, Decision::Primary);
}

#[test]
fn the_highest_epoch_anywhere_wins() {
    let mut o = obs(R0, Some(k(3, R0)), Some(k(3, R0)));
    o.local_is_primary = true;
    o.peers = vec![(R1, reached(Some(k(4, R1)), true)), (R2, Peer::Unreachable)];
    let out = decide(&o, &mut Memory::default());
    assert_eq!(out.known, k(4, R1));
    assert_eq!(out.decision, Decision::Follow(R1));
    assert!(out.persist);
    assert_eq!(out.complete_on, None);
}

#[test]
fn a_restarted_primary_that_reaches_nobody_stays_read_only() {
    let mut o = obs(R0, Some(k(5, R0)), Some(k(5, R0)));
    o.peers = vec![(R1, Peer::Unreachable), (R2, Peer::Unreachable)];
    let mut m = Memory::default();
    assert!(matches!(decide(&o, &mut m).decision, Decision::Fenced(_)));
    // One region answers with the same epoch: confirmed.
    o.peers[1] = (R2, reached(Some(k(5, R0)), false));
    assert_eq!(decide(&o, &mut m).decision, Decision::Primary);
    // One region answers with a higher epoch: it was replaced while away.
    o.peers[1] = (R2, reached(Some(k(6, R1)), false));
    assert_eq!(decide(&o, &mut m).decision, Decision::Follow(R1));
}

#[test]
fn a_region_returning_with_a_stale_epoch_follows_the_current_one() {
    // Region 0 was primary at epoch 2, crashed; region 1 was promoted at epoch 3.
    let mut o = obs(R0, Some(k(2, R0)), Some(k(2, R0)));
    o.peers = vec![(R1, reached(Some(k(3, R1)), true))];
    let out = decide(&o, &mut Memory::default());
    assert_eq!(out.decision, Decision::Follow(R1));
    assert_eq!(out.known, k(3, R1));
    // And the current primary ignores the stale region's epoch.
    let mut p = obs(R1, Some(k(3, R1)), Some(k(3, R1)));
    p.local_is_primary = true;
    p.peers = vec![(R0, reached(Some(k(2, R0)), false))];
    let out = decide(&p, &mut Memory::default());
    assert_eq!(out.decision, Decision::Primary);
    assert!(!out.persist);
}

#[test]
fn a_running_primary_keeps_serving_while_partitioned() {
    let mut o = obs(R0, Some(k(2, R0)), Some(k(2, R0)));
    o.local_is_primary = true;
    o.peers = vec![(R1, Peer::Unreachable)];
    assert_eq!(
        decide(&o, &mut Memory::default()).decision,
        Decision::Primary
    );
}

#[test]
fn a_just_promoted_target_is_held_until_its_epoch_arrives_then_demoted_after_the_grace() {
    // Region 1 has been promoted by region 0's switchover; the epoch is not written yet.
    let mut m = Memory::default();
    let mut o = obs(R1, Some(k(2, R0)), Some(k(2, R0)));
    o.local_is_primary = true;
    o.peers = vec![(R0, reached(Some(k(2, R0)), false))];
    assert_eq!(decide(&o, &mut m).decision, Decision::Hold);
    o.now_ms = UNCONFIRMED_PRIMARY_GRACE_MS - 1;
    assert_eq!(decide(&o, &mut m).decision, Decision::Hold);
    // The epoch arrives: primary.
    let mut done = o.clone();
    done.local_meta = Some(k(3, R1));
    assert_eq!(decide(&done, &mut m).decision, Decision::Primary);
    // Without it, past the grace, a stray primary is demoted.
    let mut m = Memory::default();
    o.now_ms = 0;
    assert_eq!(decide(&o, &mut m).decision, Decision::Hold);
    o.now_ms = UNCONFIRMED_PRIMARY_GRACE_MS;
    assert_eq!(decide(&o, &mut m).decision, Decision::Follow(R0));
}

#[test]
fn an_old_primary_that_recorded_a_switchover_completes_it_after_a_crash() {
    // Region 0's agent recorded epoch 3 → region 1, then died before region 1 was promoted.
    let mut o = obs(R0, Some(k(3, R1)), Some(k(2, R0)));
    o.peers = vec![(R1, reached(Some(k(2, R0)), false))];
    let out = decide(&o, &mut Memory::default());
    assert_eq!(out.decision, Decision::Follow(R1));
    assert_eq!(out.complete_on, Some(R1));
    // Once region 1 holds epoch 3, nothing more to complete.
    o.peers = vec![(R1, reached(Some(k(3, R1)), true))];
    assert_eq!(decide(&o, &mut Memory::default()).complete_on, None);
    // A third region never completes someone else's switchover: it has not recorded it.
    let mut third = obs(R2, Some(k(2, R0)), Some(k(2, R0)));
    third.peers = vec![
        (R0, reached(Some(k(2, R0)), false)),
        (R1, reached(Some(k(2, R0)), false)),
    ];
    assert_eq!(decide(&third, &mut Memory::default()).complete_on, None);
}

#[test]
fn two_regions_forced_at_the_same_epoch_settle_on_the_first_listed() {
    let mut a = obs(R1, Some(k(4, R1)), Some(k(4, R1)));
    a.local_is_primary = true;
    a.peers = vec![(R2, reached(Some(k(4, R2)), true))];
    let mut b = obs(R2, Some(k(4, R2)), Some(k(4, R2)));
    b.local_is_primary = true;
    b.peers = vec![(R1, reached(Some(k(4, R1)), true))];
    assert_eq!(
        decide(&a, &mut Memory::default()).decision,
        Decision::Primary
    );
    assert_eq!(
        decide(&b, &mut Memory::default()).decision,
        Decision::Follow(R1)
    );
}

/// The in-memory cluster, driving the real change machines.
mod sim;
