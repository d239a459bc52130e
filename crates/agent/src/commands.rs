//! Every command the agent sends to a Redis — its own or another region's through a tunnel
//! client — in one place: replication role, the fence, `georep:meta`, the switchover mark,
//! write pauses, ACL checks and the heartbeat stream. Nothing else in the crate builds a command.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use resp::{Conn, Info, Value};
use topology::Topology;

use crate::change::SwitchoverMark;
use crate::cluster_view::Known;
use crate::credentials::{Passwords, ADMIN_USER, APP_USER, REPLICATION_USER};

/// The hash holding the epoch and the primary's name, in every Redis.
pub(crate) const META: &str = "georep:meta";
/// Set on the primary (with a time to live) while a planned switchover runs; replicated to every
/// region, where a forced promotion finds it and is refused. Its value is `<epoch> <what>`: the
/// epoch the switchover records, then what it is (`failover to X`).
pub(crate) const SWITCHOVER_MARK: &str = "georep:switchover";
/// The `georep:meta` field holding the epoch a planned switchover will record.
const PENDING_EPOCH: &str = "switchover_epoch";
/// The heartbeat stream the primary's agent stamps.
pub(crate) const HEARTBEAT: &str = "georep:heartbeat";
/// The fence: a primary with `min-replicas-to-write 1` takes no write without a replica.
const FENCE: &str = "min-replicas-to-write";

/// An admin connection to one Redis.
#[derive(Debug)]
pub(crate) struct Redis(Conn);

impl Redis {
    /// Connects and authenticates as the admin user.
    pub(crate) async fn connect(
        addr: SocketAddr,
        passwords: &Passwords,
        timeout: Duration,
    ) -> Result<Self, resp::Error> {
        Ok(Self(
            Conn::connect(addr, Some(&passwords.admin_login()), timeout).await?,
        ))
    }

    /// `INFO` for the given sections.
    pub(crate) async fn info(&mut self, sections: &[&str]) -> Result<Info, resp::Error> {
        self.0.info(sections).await
    }

    /// `INFO replication`, waiting at most `wait` for the reply.
    pub(crate) async fn replication_within(&mut self, wait: Duration) -> Result<Info, resp::Error> {
        let v = self
            .0
            .cmd_with_timeout(&["INFO", "replication"], wait)
            .await?;
        Ok(Info::parse(&v.text().unwrap_or_default()))
    }

    /// Its `georep:meta`, if it holds one naming a region of the topology (a damaged one counts
    /// as absent).
    pub(crate) async fn read_meta(
        &mut self,
        topology: &Topology,
    ) -> Result<Option<Known>, resp::Error> {
        Ok(self.read_meta_checked(topology).await?.known())
    }

    /// Its `georep:meta`, telling an absent one from one an agent did not write.
    pub(crate) async fn read_meta_checked(
        &mut self,
        topology: &Topology,
    ) -> Result<Meta, resp::Error> {
        let reply = match self.0.cmd(&["HMGET", META, "epoch", "primary"]).await {
            Err(e) if is_wrong_type(&e) => return Ok(Meta::Damaged("not a hash")),
            reply => reply?,
        };
        let Value::Array(Some(fields)) = reply else {
            return Ok(Meta::Absent);
        };
        let field = |i: usize| fields.get(i).and_then(Value::text);
        Ok(Meta::parse(field(0), field(1), topology))
    }

    /// Writes `georep:meta`: the epoch and the primary's name live in the data, so every replica
    /// holds the epoch of what it has. The only writer of the hash. A key of another type in its
    /// place (only an admin can put one there) is deleted first: the metadata is repaired, not
    /// fatal.
    pub(crate) async fn write_meta(
        &mut self,
        known: Known,
        topology: &Topology,
    ) -> Result<(), resp::Error> {
        let epoch = known.epoch.to_string();
        let name = topology.regions[known.primary].name.as_str();
        let hset = ["HSET", META, "epoch", epoch.as_str(), "primary", name];
        match self.0.cmd(&hset).await {
            Err(e) if is_wrong_type(&e) => {
                tracing::warn!(key = META, "not a hash: deleting it to write the metadata");
                self.0.cmd(&["DEL", META]).await?;
                self.0.cmd(&hset).await?;
            }
            reply => {
                reply?;
            }
        }
        Ok(())
    }

    /// Whether the fence is on (`min-replicas-to-write` is not 0).
    pub(crate) async fn fence_on(&mut self) -> Result<bool, resp::Error> {
        Ok(self
            .config_get(&[FENCE])
            .await?
            .get(FENCE)
            .is_some_and(|v| v != "0"))
    }

    /// Lifts the fence.
    pub(crate) async fn lift_fence(&mut self) -> Result<(), resp::Error> {
        self.config_set(FENCE, "0").await
    }

    /// `REPLICAOF host port`.
    pub(crate) async fn follow(&mut self, host: &str, port: u16) -> Result<(), resp::Error> {
        self.0.cmd(&["REPLICAOF", host, &port.to_string()]).await?;
        Ok(())
    }

    /// `REPLICAOF NO ONE`.
    pub(crate) async fn become_primary(&mut self) -> Result<(), resp::Error> {
        self.0.cmd(&["REPLICAOF", "NO", "ONE"]).await?;
        Ok(())
    }

    /// Makes this Redis the primary at `known`: `REPLICAOF NO ONE`, then the epoch.
    pub(crate) async fn promote_at(
        &mut self,
        known: Known,
        topology: &Topology,
    ) -> Result<(), resp::Error> {
        self.become_primary().await?;
        self.write_meta(known, topology).await
    }

    /// Whether it answers as an unfenced primary.
    pub(crate) async fn is_serving_primary(&mut self) -> Result<bool, resp::Error> {
        let role = self.info(&["replication"]).await?;
        Ok(role.get("role") == Some("master") && !self.fence_on().await?)
    }

    /// `CLIENT PAUSE <ms> WRITE`.
    pub(crate) async fn pause_writes(&mut self, duration: Duration) -> Result<(), resp::Error> {
        let ms = duration.as_millis().to_string();
        self.0
            .cmd(&["CLIENT", "PAUSE", ms.as_str(), "WRITE"])
            .await?;
        Ok(())
    }

    /// `CLIENT UNPAUSE`.
    pub(crate) async fn unpause(&mut self) -> Result<(), resp::Error> {
        self.0.cmd(&["CLIENT", "UNPAUSE"]).await?;
        Ok(())
    }

    /// Marks a planned switchover for `ttl` with the epoch it will record, and notes that epoch
    /// in `georep:meta` (no time limit: later changes take a higher epoch).
    pub(crate) async fn mark_switchover(
        &mut self,
        what: &str,
        ttl: Duration,
        epoch: u64,
    ) -> Result<(), resp::Error> {
        let mark = format!("{epoch} {what}");
        let epoch = epoch.to_string();
        self.0
            .cmd(&["HSET", META, PENDING_EPOCH, epoch.as_str()])
            .await?;
        let ms = ttl.as_millis().to_string();
        self.0
            .cmd(&["SET", SWITCHOVER_MARK, mark.as_str(), "PX", ms.as_str()])
            .await?;
        Ok(())
    }

    /// The highest epoch this Redis holds or has had marked for a switchover (0 if none, or if
    /// `georep:meta` is not a hash).
    pub(crate) async fn highest_epoch(&mut self) -> Result<u64, resp::Error> {
        let reply = match self.0.cmd(&["HMGET", META, "epoch", PENDING_EPOCH]).await {
            Err(e) if is_wrong_type(&e) => return Ok(0),
            reply => reply?,
        };
        let Value::Array(Some(fields)) = reply else {
            return Ok(0);
        };
        Ok(fields
            .iter()
            .filter_map(|f| f.text()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    /// The switchover mark, if one is live.
    pub(crate) async fn switchover_mark(&mut self) -> Result<Option<SwitchoverMark>, resp::Error> {
        let value = self.0.cmd(&["GET", SWITCHOVER_MARK]).await?.text();
        Ok(value.map(|v| parse_mark(&v)))
    }

    /// Deletes the switchover mark.
    pub(crate) async fn clear_switchover_mark(&mut self) -> Result<(), resp::Error> {
        self.0.cmd(&["DEL", SWITCHOVER_MARK]).await?;
        Ok(())
    }

    /// Sets the primary region's relay-bypass lease ([`crate::relay_fallback::LEASE`]) for
    /// `ttl`.
    pub(crate) async fn set_relay_lease(
        &mut self,
        value: &str,
        ttl: Duration,
    ) -> Result<(), resp::Error> {
        let ms = ttl.as_millis().to_string();
        let lease = crate::relay_fallback::LEASE;
        self.0
            .cmd(&["SET", lease, value, "PX", ms.as_str()])
            .await?;
        Ok(())
    }

    /// Deletes the relay-bypass lease.
    pub(crate) async fn clear_relay_lease(&mut self) -> Result<(), resp::Error> {
        self.0.cmd(&["DEL", crate::relay_fallback::LEASE]).await?;
        Ok(())
    }

    /// The relay-bypass lease, if one is live (a key of another type counts as none).
    pub(crate) async fn relay_lease(&mut self) -> Result<Option<String>, resp::Error> {
        match self.0.cmd(&["GET", crate::relay_fallback::LEASE]).await {
            Err(e) if is_wrong_type(&e) => Ok(None),
            reply => Ok(reply?.text()),
        }
    }

    /// `CONFIG GET` of several parameters.
    pub(crate) async fn config_get(
        &mut self,
        names: &[&str],
    ) -> Result<HashMap<String, String>, resp::Error> {
        let mut args = vec!["CONFIG", "GET"];
        args.extend_from_slice(names);
        let mut out = HashMap::new();
        if let Value::Array(Some(items)) = self.0.cmd(&args).await? {
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    if let (Some(k), Some(v)) = (k.text(), v.text()) {
                        out.insert(k, v);
                    }
                }
            }
        }
        Ok(out)
    }

    /// `CONFIG SET name value`. Values are never logged: `masterauth` is a password.
    pub(crate) async fn config_set(&mut self, name: &str, value: &str) -> Result<(), resp::Error> {
        self.0.cmd(&["CONFIG", "SET", name, value]).await?;
        Ok(())
    }

    /// Re-applies the ACL file if someone changed the users at run time (or turned the default
    /// user on).
    pub(crate) async fn ensure_acl(&mut self) -> Result<(), resp::Error> {
        let default = self.0.cmd(&["ACL", "GETUSER", "default"]).await?;
        let default_off = match &default {
            Value::Array(Some(fields)) => fields
                .chunks(2)
                .find(|kv| kv.first().and_then(Value::text).as_deref() == Some("flags"))
                .and_then(|kv| kv.get(1))
                .is_some_and(|flags| matches!(flags, Value::Array(Some(f)) if f.iter().any(|x| x.text().as_deref() == Some("off")))),
            _ => false,
        };
        let users = self.0.cmd(&["ACL", "USERS"]).await?;
        let names: Vec<String> = match users {
            Value::Array(Some(u)) => u.iter().filter_map(Value::text).collect(),
            _ => Vec::new(),
        };
        let expected = [ADMIN_USER, REPLICATION_USER, APP_USER];
        if !default_off || !expected.iter().all(|u| names.iter().any(|n| n == u)) {
            tracing::warn!("ACL users differ from the ACL file; reloading it");
            self.0.cmd(&["ACL", "LOAD"]).await?;
        }
        Ok(())
    }

    /// Appends a heartbeat stamp (`READONLY` while this Redis is a replica). A key of another
    /// type in the stream's place is deleted first; true when that repair was needed.
    pub(crate) async fn stamp_heartbeat(&mut self, now_ms: u64) -> Result<bool, resp::Error> {
        let stamp = now_ms.to_string();
        let xadd = ["XADD", HEARTBEAT, "MAXLEN", "~", "100", "*", "ms", &stamp];
        match self.0.cmd(&xadd).await {
            Err(e) if is_wrong_type(&e) => {
                self.0.cmd(&["DEL", HEARTBEAT]).await?;
                self.0.cmd(&xadd).await?;
                Ok(true)
            }
            reply => reply.map(|_| false),
        }
    }

    /// Blocks up to a second for heartbeat stamps after `last_id`; the raw `XREAD` reply.
    pub(crate) async fn read_heartbeat(&mut self, last_id: &str) -> Result<Value, resp::Error> {
        let block = [
            "XREAD", "COUNT", "100", "BLOCK", "1000", "STREAMS", HEARTBEAT, last_id,
        ];
        self.0
            .cmd_with_timeout(&block, Duration::from_secs(3))
            .await
    }
}

/// What a Redis holds under `georep:meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meta {
    /// No epoch and no primary.
    Absent,
    /// An epoch and a region of the topology, as an agent writes them.
    Valid(Known),
    /// What no agent writes (only an admin can): why, without the value, which may be anything.
    Damaged(&'static str),
}

impl Meta {
    fn parse(epoch: Option<String>, primary: Option<String>, topology: &Topology) -> Self {
        let (epoch, primary) = match (epoch, primary) {
            (None, None) => return Self::Absent,
            (None, Some(_)) => return Self::Damaged("no epoch"),
            (Some(_), None) => return Self::Damaged("no primary"),
            (Some(e), Some(p)) => (e, p),
        };
        let Ok(epoch) = epoch.parse() else {
            return Self::Damaged("the epoch is not a number");
        };
        match topology.region(&primary) {
            Some(r) => Self::Valid(Known {
                epoch,
                primary: r.index,
            }),
            None => Self::Damaged("the primary is not a region of the topology"),
        }
    }

    /// The (epoch, primary) it holds, if valid.
    pub(crate) fn known(self) -> Option<Known> {
        match self {
            Self::Valid(k) => Some(k),
            Self::Absent | Self::Damaged(_) => None,
        }
    }
}

/// Whether Redis refused a command for the type of the key it found (`WRONGTYPE …`).
fn is_wrong_type(e: &resp::Error) -> bool {
    matches!(e, resp::Error::Command { message, .. } if message.starts_with("WRONGTYPE"))
}

/// A mark's value, `<epoch> <what>`; a value without an epoch (from an agent that did not write
/// one) is all `what`.
fn parse_mark(value: &str) -> SwitchoverMark {
    let epoch = value
        .split_once(' ')
        .and_then(|(e, what)| Some((e.parse().ok()?, what)));
    match epoch {
        Some((epoch, what)) => SwitchoverMark {
            what: what.to_owned(),
            epoch: Some(epoch),
        },
        None => SwitchoverMark {
            what: value.to_owned(),
            epoch: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_no_agent_wrote_is_damaged_not_an_error() {
        let text = r#"
            name = "shop"
            primary = "us-east-1"
            [[region]]
            name = "us-east-1"
            endpoint = "a.example:56379"
            [[region]]
            name = "eu-central-1"
            endpoint = "b.example:56379"
        "#;
        let topology = Topology::parse(text, std::path::Path::new("t.toml")).unwrap();
        let parse = |e: Option<&str>, p: Option<&str>| {
            Meta::parse(e.map(str::to_owned), p.map(str::to_owned), &topology)
        };
        assert_eq!(
            parse(Some("7"), Some("eu-central-1")),
            Meta::Valid(Known {
                epoch: 7,
                primary: topology::RegionId::new(1)
            })
        );
        assert_eq!(parse(None, None), Meta::Absent);
        for (e, p) in [
            (Some("x"), Some("us-east-1")),
            (Some("-1"), Some("us-east-1")),
            (Some("18446744073709551616"), Some("us-east-1")),
            (Some("3"), Some("mars-1")),
            (Some("3"), None),
            (None, Some("us-east-1")),
        ] {
            let m = parse(e, p);
            assert!(matches!(m, Meta::Damaged(_)), "{e:?} {p:?}: {m:?}");
            assert_eq!(m.known(), None);
        }
    }

    #[test]
    fn a_mark_names_its_epoch_and_an_older_mark_refuses_without_one() {
        assert_eq!(
            parse_mark("7 failover to eu"),
            SwitchoverMark {
                what: "failover to eu".into(),
                epoch: Some(7)
            }
        );
        assert_eq!(
            parse_mark("failover to eu"),
            SwitchoverMark {
                what: "failover to eu".into(),
                epoch: None
            }
        );
    }
}
