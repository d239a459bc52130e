//! What to change in Redis, as a pure function of what it should be and what it is.
//!
//! The control loop observes Redis (`INFO`, `CONFIG GET`), asks [`plan`] for actions and carries
//! them out; run again a second later, it finds nothing to do. Keeping the decision pure makes it
//! testable without Redis and makes "re-apply after a restart" the same code as "apply".

use std::collections::HashMap;

/// Which role Redis should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Accept writes.
    Primary,
    /// Follow the primary reachable at this address (our tunnel client to its region).
    Replica {
        /// Host to `REPLICAOF`.
        host: String,
        /// Port to `REPLICAOF`.
        port: u16,
    },
}

/// The state we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The role.
    pub role: Role,
    /// `CONFIG SET` parameters, in the order they must be applied.
    pub config: Vec<(&'static str, String)>,
}

/// The state Redis reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// `None` when `INFO replication` says neither master nor slave.
    pub role: Option<Role>,
    /// `CONFIG GET` results for the parameters in [`Desired::config`].
    pub config: HashMap<String, String>,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `CONFIG SET name value`.
    ConfigSet(&'static str, String),
    /// `REPLICAOF NO ONE`.
    Promote,
    /// `REPLICAOF host port`.
    Follow {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
}

/// The actions that take `observed` to `desired`: configuration first (a replica needs its
/// `masterauth` before it connects), then the role.
pub fn plan(desired: &Desired, observed: &Observed) -> Vec<Action> {
    let mut actions: Vec<Action> = desired
        .config
        .iter()
        .filter(|(name, want)| !config_matches(name, want, observed.config.get(*name)))
        .map(|(name, want)| Action::ConfigSet(name, want.clone()))
        .collect();
    if observed.role.as_ref() != Some(&desired.role) {
        actions.push(match &desired.role {
            Role::Primary => Action::Promote,
            Role::Replica { host, port } => Action::Follow {
                host: host.clone(),
                port: *port,
            },
        });
    }
    actions
}

/// Redis echoes most values as set; a few come back in another form.
fn config_matches(name: &str, want: &str, have: Option<&String>) -> bool {
    let Some(have) = have else { return false };
    match name {
        // Set as "replica H S T", reported as "normal … slave H S T pubsub …".
        "client-output-buffer-limit" => {
            let want = want.replacen("replica", "slave", 1);
            have.contains(&want)
        }
        _ => have == want,
    }
}

/// Heartbeat-based replication lag, in the manner of pt-heartbeat: the primary's agent stamps a
/// key with its clock every interval; a replica's agent notes `now − stamp` when each stamp
/// arrives. Between stamps the last measurement stands, unless stamps stop arriving, in which
/// case the lag is the age of the newest stamp — so a cut link shows a growing lag.
#[derive(Debug, Clone, Default)]
pub struct LagTracker {
    newest_stamp_ms: Option<u64>,
    arrived_ms: u64,
    measured_ms: u64,
}

impl LagTracker {
    /// Records a stamp seen at local time `now_ms`.
    pub fn observe(&mut self, stamp_ms: u64, now_ms: u64) {
        if self.newest_stamp_ms.is_some_and(|s| stamp_ms <= s) {
            return;
        }
        self.newest_stamp_ms = Some(stamp_ms);
        self.arrived_ms = now_ms;
        self.measured_ms = now_ms.saturating_sub(stamp_ms);
    }

    /// The lag at `now_ms`, given that stamps are written every `interval_ms`.
    pub fn lag_ms(&self, now_ms: u64, interval_ms: u64) -> Option<u64> {
        let stamp = self.newest_stamp_ms?;
        if now_ms.saturating_sub(self.arrived_ms) <= 3 * interval_ms {
            Some(self.measured_ms)
        } else {
            Some(now_ms.saturating_sub(stamp))
        }
    }

    /// The lag measured when the newest stamp arrived.
    pub fn last_measured_ms(&self) -> Option<u64> {
        self.newest_stamp_ms.map(|_| self.measured_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> Role {
        Role::Replica {
            host: "127.0.0.1".into(),
            port: 16000,
        }
    }

    #[test]
    fn nothing_to_do_when_redis_already_matches() {
        let desired = Desired {
            role: replica(),
            config: vec![("appendonly", "no".into())],
        };
        let observed = Observed {
            role: Some(replica()),
            config: [("appendonly".to_string(), "no".to_string())].into(),
        };
        assert_eq!(plan(&desired, &observed), vec![]);
    }

    #[test]
    fn a_restarted_redis_gets_config_then_role() {
        let desired = Desired {
            role: replica(),
            config: vec![
                ("masteruser", "georep-replication".into()),
                ("appendonly", "no".into()),
            ],
        };
        let observed = Observed {
            role: Some(Role::Primary),
            config: [("appendonly".to_string(), "no".to_string())].into(),
        };
        assert_eq!(
            plan(&desired, &observed),
            vec![
                Action::ConfigSet("masteruser", "georep-replication".into()),
                Action::Follow {
                    host: "127.0.0.1".into(),
                    port: 16000
                },
            ]
        );
    }

    #[test]
    fn a_replica_of_the_wrong_address_is_repointed_and_a_primary_promoted() {
        let wrong = Role::Replica {
            host: "127.0.0.1".into(),
            port: 16001,
        };
        let observed = Observed {
            role: Some(wrong),
            config: HashMap::new(),
        };
        let desired = Desired {
            role: replica(),
            config: vec![],
        };
        assert!(matches!(
            plan(&desired, &observed)[..],
            [Action::Follow { port: 16000, .. }]
        ));
        let desired = Desired {
            role: Role::Primary,
            config: vec![],
        };
        assert_eq!(plan(&desired, &observed), vec![Action::Promote]);
    }

    #[test]
    fn output_buffer_limits_compare_in_redis_form() {
        let have = "normal 0 0 0 slave 1073741824 536870912 120 pubsub 33554432 8388608 60";
        assert!(config_matches(
            "client-output-buffer-limit",
            "replica 1073741824 536870912 120",
            Some(&have.to_string())
        ));
    }

    #[test]
    fn lag_is_measured_on_arrival_and_grows_when_stamps_stop() {
        let mut t = LagTracker::default();
        assert_eq!(t.lag_ms(1000, 100), None);
        t.observe(1000, 1045);
        assert_eq!(t.lag_ms(1100, 100), Some(45));
        t.observe(990, 1150); // an older stamp changes nothing
        assert_eq!(t.lag_ms(1150, 100), Some(45));
        // No stamp for a while: the lag is the newest stamp's age.
        assert_eq!(t.lag_ms(5000, 100), Some(4000));
    }
}
