//! The machines alone: every path that pauses writes unpauses them, failures say what changed.

use super::*;

const MS: Duration = Duration::from_millis(1);
const R0: RegionId = RegionId::new(0);
const R1: RegionId = RegionId::new(1);
const R2: RegionId = RegionId::new(2);

fn names() -> Vec<String> {
    ["us", "eu", "ap"].map(String::from).to_vec()
}

fn planned() -> (Planned, Action) {
    Planned::new(PlannedStart {
        names: names(),
        me: R0,
        to: R1,
        known: Known {
            epoch: 4,
            primary: R0,
        },
        fenced: false,
        timeout: Duration::from_millis(500),
    })
}

fn local_primary() -> Observation {
    Observation::Local(LocalView {
        role: RedisRole::Primary,
        fence_on: false,
        replica_offset: None,
        meta: Some(Known {
            epoch: 4,
            primary: R0,
        }),
    })
}

/// Runs the happy path, answering each action; `fail_at` answers that action (by index) with a
/// failure instead. Returns every action issued, the last being `Finish`.
fn run_planned(fail_at: Option<usize>) -> Vec<Action> {
    let (mut m, mut action) = planned();
    let mut seen_actions = vec![action.clone()];
    let mut now = Duration::ZERO;
    for i in 0.. {
        if matches!(action, Action::Finish(_)) {
            break;
        }
        assert!(i < 100, "no end: {seen_actions:?}");
        let answer = if fail_at == Some(i) {
            Observation::Failed("boom".into())
        } else {
            match &action {
                Action::ReadLocal => local_primary(),
                Action::ReadTarget { .. } => Observation::Target {
                    replica_link_up: true,
                },
                Action::ReadHighestEpoch => Observation::HighestEpoch(6),
                Action::ReadPrimaryOffset => Observation::Offset(Some(100)),
                Action::ReadTargetOffset { .. } => Observation::Offset(Some(100)),
                _ => Observation::Done,
            }
        };
        now += MS;
        action = m.handle(now, answer);
        seen_actions.push(action.clone());
    }
    seen_actions
}

fn position(actions: &[Action], f: impl Fn(&Action) -> bool) -> Option<usize> {
    actions.iter().position(f)
}

#[test]
fn a_planned_switchover_issues_its_steps_in_order_and_reports_the_new_epoch() {
    let actions = run_planned(None);
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            Action::ReadLocal => "local",
            Action::ReadTarget { .. } => "target",
            Action::ReadHighestEpoch => "highest",
            Action::MarkSwitchover { epoch: 7, .. } => "mark",
            Action::PauseWrites { .. } => "pause",
            Action::ReadPrimaryOffset => "offset",
            Action::ReadTargetOffset { .. } => "caught-up?",
            Action::Record(Known {
                epoch: 7,
                primary: R1,
            }) => "record",
            Action::Demote { follow: R1 } => "demote",
            Action::PromoteTarget(_) => "promote",
            Action::Unpause => "unpause",
            Action::Finish(Ok(_)) => "ok",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "local",
            "target",
            "highest",
            "mark",
            "pause",
            "offset",
            "caught-up?",
            "record",
            "demote",
            "promote",
            "unpause",
            "ok"
        ]
    );
    let Some(Action::Finish(Ok(done))) = actions.last() else {
        unreachable!()
    };
    assert_eq!(
        (done.kind, done.from, done.to, done.epoch),
        (ChangeKind::Planned, R0, R1, 7)
    );
    assert_eq!(done.offset_gap, Some(0));
}

#[test]
fn every_failure_after_the_pause_unpauses_and_the_message_says_what_changed() {
    let happy = run_planned(None);
    let pause = position(&happy, |a| matches!(a, Action::PauseWrites { .. })).unwrap();
    for fail_at in 0..happy.len() - 1 {
        let actions = run_planned(Some(fail_at));
        let Some(Action::Finish(result)) = actions.last() else {
            panic!("no finish: {actions:?}")
        };
        let unpauses = actions.iter().filter(|a| **a == Action::Unpause).count();
        // The pause itself failing means there is no pause to lift.
        let paused = fail_at > pause;
        assert_eq!(
            unpauses,
            usize::from(paused),
            "failure at {fail_at}: {actions:?}"
        );
        if paused {
            // Unpausing comes before the end, and a mark is removed only after it.
            let unpause = position(&actions, |a| *a == Action::Unpause).unwrap();
            let clear = position(&actions, |a| *a == Action::ClearMark);
            assert!(unpause < actions.len() - 1 && clear.is_none_or(|c| c > unpause));
        }
        let demote = position(&happy, |a| matches!(a, Action::Demote { .. })).unwrap();
        if let (true, Err(e)) = (fail_at < demote, result) {
            let e = e.to_string();
            assert!(
                e.contains("nothing changed") || e.contains("unchanged") || e.contains("boom"),
                "failure at {fail_at}: {e}"
            );
        }
    }
}

#[test]
fn an_aborted_switchover_removes_its_mark_after_unpausing() {
    // The target never catches up.
    let (mut m, _) = planned();
    let mut now = Duration::ZERO;
    let mut action = m.handle(now, local_primary());
    let mut trail = Vec::new();
    while !matches!(action, Action::Finish(_)) {
        now += Duration::from_millis(50);
        let answer = match &action {
            Action::ReadTarget { .. } => Observation::Target {
                replica_link_up: true,
            },
            Action::ReadHighestEpoch => Observation::HighestEpoch(4),
            Action::ReadPrimaryOffset => Observation::Offset(Some(100)),
            Action::ReadTargetOffset { .. } => Observation::Offset(Some(99)),
            _ => Observation::Done,
        };
        trail.push(action.clone());
        action = m.handle(now, answer);
        assert!(trail.len() < 1000);
    }
    let n = trail.len();
    assert_eq!(trail[n - 2..], [Action::Unpause, Action::ClearMark]);
    assert!(!trail.iter().any(|a| matches!(a, Action::Record(_))));
    let Action::Finish(Err(e @ ChangeError::CatchUpTimeout { .. })) = action else {
        panic!("{action:?}")
    };
    assert!(e.to_string().contains("no write was lost"), "{e}");
}

#[test]
fn a_switchover_is_refused_before_any_action_when_we_are_not_the_primary() {
    let (_, first) = Planned::new(PlannedStart {
        names: names(),
        me: R2,
        to: R1,
        known: Known {
            epoch: 4,
            primary: R0,
        },
        fenced: false,
        timeout: Duration::from_secs(1),
    });
    let Action::Finish(Err(e @ ChangeError::NotPrimary { .. })) = first else {
        panic!("{first:?}")
    };
    assert!(e.to_string().contains("the primary is us (epoch 4)"), "{e}");
}

fn forced(known_primary: RegionId) -> (Forced, Action) {
    Forced::new(ForcedStart {
        names: names(),
        me: R1,
        known: Known {
            epoch: 4,
            primary: known_primary,
        },
        fenced: false,
        last_primary_offset: Some(1000),
    })
}

fn local_replica() -> Observation {
    Observation::Local(LocalView {
        role: RedisRole::Replica,
        fence_on: false,
        replica_offset: Some(900),
        meta: Some(Known {
            epoch: 4,
            primary: R0,
        }),
    })
}

#[test]
fn a_forced_promotion_is_refused_while_anyone_serves_or_a_switchover_is_marked() {
    let (mut m, _) = forced(R0);
    assert_eq!(m.handle(local_replica()), Action::ProbeServing);
    let Action::Finish(Err(e)) = m.handle(Observation::Serving(Some(R2))) else {
        panic!()
    };
    assert!(matches!(e, ChangeError::PrimaryServing { ref primary, .. } if primary == "ap"));

    let (mut m, _) = forced(R0);
    m.handle(local_replica());
    assert_eq!(m.handle(Observation::Serving(None)), Action::ReadMark);
    let mark = SwitchoverMark {
        what: "failover to eu".into(),
        epoch: Some(5),
    };
    let Action::Finish(Err(e)) = m.handle(Observation::Mark(Some(mark))) else {
        panic!()
    };
    assert_eq!(
        e,
        ChangeError::SwitchoverInProgress("failover to eu".into())
    );

    // Our Redis is already the primary the data names (a switchover to us just finished).
    let (mut m, _) = forced(R0);
    let done = Observation::Local(LocalView {
        role: RedisRole::Primary,
        fence_on: false,
        replica_offset: None,
        meta: Some(Known {
            epoch: 5,
            primary: R1,
        }),
    });
    assert!(matches!(
        m.handle(done),
        Action::Finish(Err(ChangeError::AlreadyPrimary { epoch: Some(5), .. }))
    ));
}

#[test]
fn a_forced_promotion_records_above_every_epoch_then_promotes_and_reports_the_gap() {
    let (mut m, _) = forced(R0);
    m.handle(local_replica());
    m.handle(Observation::Serving(None));
    assert_eq!(m.handle(Observation::Mark(None)), Action::ReadHighestEpoch);
    let next = Known {
        epoch: 8,
        primary: R1,
    };
    assert_eq!(m.handle(Observation::HighestEpoch(7)), Action::Record(next));
    assert_eq!(m.handle(Observation::Done), Action::BecomePrimary);
    assert_eq!(m.handle(Observation::Done), Action::LiftFence);
    assert_eq!(m.handle(Observation::Done), Action::WriteMeta(next));
    let Action::Finish(Ok(done)) = m.handle(Observation::Done) else {
        panic!()
    };
    assert_eq!(
        (done.kind, done.epoch, done.offset_gap),
        (ChangeKind::Emergency, 8, Some(100))
    );
    // A failure after the record says so; nothing is paused, so nothing to unpause.
    let (mut m, _) = forced(R0);
    m.handle(local_replica());
    m.handle(Observation::Serving(None));
    m.handle(Observation::Mark(None));
    m.handle(Observation::HighestEpoch(7));
    m.handle(Observation::Done);
    let Action::Finish(Err(e)) = m.handle(Observation::Failed("READONLY".into())) else {
        panic!()
    };
    assert_eq!(e.to_string(), "REPLICAOF NO ONE failed: READONLY");
}

#[test]
fn an_answer_that_does_not_fit_the_step_aborts_without_panicking() {
    let (mut m, _) = planned();
    let a = m.handle(MS, Observation::Serving(None));
    assert!(
        matches!(a, Action::Finish(Err(ChangeError::Failed(_)))),
        "{a:?}"
    );
    // And the machine stays finished.
    assert!(matches!(
        m.handle(MS, Observation::Done),
        Action::Finish(Err(_))
    ));
}

#[test]
fn a_switchover_above_the_last_epoch_is_refused_before_anything_changes() {
    for (known, highest) in [(4, u64::MAX), (u64::MAX, 0)] {
        let (mut m, _) = Planned::new(PlannedStart {
            names: names(),
            me: R0,
            to: R1,
            known: Known {
                epoch: known,
                primary: R0,
            },
            fenced: false,
            timeout: Duration::from_millis(500),
        });
        m.handle(MS, local_primary());
        m.handle(
            MS,
            Observation::Target {
                replica_link_up: true,
            },
        );
        let a = m.handle(MS, Observation::HighestEpoch(highest));
        let Action::Finish(Err(e @ ChangeError::EpochExhausted(u64::MAX))) = a else {
            panic!("{a:?}")
        };
        assert!(e.to_string().contains("nothing changed"), "{e}");
    }
}

#[test]
fn a_forced_promotion_above_the_last_epoch_is_refused_before_anything_changes() {
    let (mut m, _) = forced(R0);
    m.handle(local_replica());
    m.handle(Observation::Serving(None));
    m.handle(Observation::Mark(None));
    let a = m.handle(Observation::HighestEpoch(u64::MAX));
    let Action::Finish(Err(e @ ChangeError::EpochExhausted(u64::MAX))) = a else {
        panic!("{a:?}")
    };
    assert!(e.to_string().contains("nothing changed"), "{e}");
}

#[test]
fn a_forced_promotion_right_after_a_completed_switchover_is_accepted() {
    // The switchover to ap recorded epoch 5, which our Redis holds (replicated from ap): its
    // mark, alive for a while yet, no longer refuses. ap is gone, nobody serves.
    let (mut m, _) = forced(R0);
    let after_switchover = Observation::Local(LocalView {
        role: RedisRole::Replica,
        fence_on: false,
        replica_offset: Some(900),
        meta: Some(Known {
            epoch: 5,
            primary: R2,
        }),
    });
    assert_eq!(m.handle(after_switchover), Action::ProbeServing);
    assert_eq!(m.handle(Observation::Serving(None)), Action::ReadMark);
    let mark = SwitchoverMark {
        what: "failover to ap".into(),
        epoch: Some(5),
    };
    assert_eq!(
        m.handle(Observation::Mark(Some(mark))),
        Action::ReadHighestEpoch
    );
    assert_eq!(
        m.handle(Observation::HighestEpoch(5)),
        Action::Record(Known {
            epoch: 6,
            primary: R1
        })
    );
    // A mark one epoch further (a switchover not seen yet), or one that does not say, refuses.
    for epoch in [Some(6), None] {
        let (mut m, _) = forced(R0);
        m.handle(local_replica());
        m.handle(Observation::Serving(None));
        let mark = SwitchoverMark {
            what: "failover to ap".into(),
            epoch,
        };
        let a = m.handle(Observation::Mark(Some(mark)));
        assert!(
            matches!(a, Action::Finish(Err(ChangeError::SwitchoverInProgress(_)))),
            "{epoch:?}: {a:?}"
        );
    }
}

#[test]
fn the_newest_mark_is_the_highest_epoch_and_one_without_an_epoch_is_newer_still() {
    let mark = |epoch| SwitchoverMark {
        what: "failover".into(),
        epoch,
    };
    assert_eq!(SwitchoverMark::newest([]), None);
    assert_eq!(
        SwitchoverMark::newest([mark(Some(3)), mark(Some(7)), mark(Some(5))]),
        Some(mark(Some(7)))
    );
    assert_eq!(
        SwitchoverMark::newest([mark(Some(3)), mark(None), mark(Some(9))]),
        Some(mark(None))
    );
}
