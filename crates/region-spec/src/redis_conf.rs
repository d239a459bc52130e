//! The Redis settings georep wants, in one table: rendered into redis.conf by `georep up` and
//! `georep render k8s` ([`settings`]), and kept in place by the agent at run time with
//! `CONFIG SET` ([`run_time`]).
//!
//! Each environment writes its own redis.conf header (port, bind address, directories, ACL
//! file); the persistence, replication and role lines come from here, so a local region and a
//! pod start Redis the same way, and the agent corrects exactly what the file set.

use topology::Topology;

use crate::credentials::REPLICATION_USER;

/// Redis's `shutdown-timeout`: how long a stopping primary waits for its replicas to catch up.
pub const SHUTDOWN_TIMEOUT_SECS: i64 = 10;

/// Who may connect to Redis's Unix socket (`unixsocketperm`). Only the agent's primary
/// endpoint uses it; applications, other regions and probes use TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketAccess {
    /// Redis's own user (`700`): `georep up`, where the agent runs as that same user.
    User,
    /// Redis's user and group (`770`): a pod, where the agent runs as another user whose
    /// supplementary group is the pod's fsGroup, Redis's group. The socket's directory is an
    /// `emptyDir` mounted in the Redis and agent containers only: no other container of the pod
    /// sees it, and no other pod can reach a Unix socket in it.
    Group,
}

/// The `unixsocket` and `unixsocketperm` lines of redis.conf (Redis 7 and Valkey 8 alike). The
/// primary endpoint forwards to the local Redis over it: the hop skips the TCP/IP stack, which
/// cost most of the endpoint's CPU on loopback TCP. Redis removes a stale socket file before it
/// binds, and the socket stays where it is whatever the role.
pub fn unix_socket(path: &str, access: SocketAccess) -> String {
    let perm = match access {
        SocketAccess::User => "700",
        SocketAccess::Group => "770",
    };
    format!(
        "unixsocket {path}
unixsocketperm {perm}
"
    )
}

/// How a region's Redis starts, before its agent has looked at the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAs {
    /// The region last known as primary: fenced (writes need one attached replica) until its agent
    /// has confirmed the epoch with another region.
    Primary {
        /// Load the AOF (the durable copy after a crash), or the RDB (after a clean stop: it
        /// carries the replication ID and offset, so replicas resume with a partial resync).
        append_only: bool,
    },
    /// Any other region: a replica of the primary through the local tunnel client at this port,
    /// so it never accepts a write, even before its agent runs.
    Replica {
        /// The port of our tunnel client to the primary's region.
        primary_port: u16,
    },
}

/// What the agent knows at run time that no file holds.
#[derive(Debug, Clone, Copy)]
pub struct RunTime<'a> {
    /// Our Redis should be the primary.
    pub primary: bool,
    /// Keep the fence on (`min-replicas-to-write 1`).
    pub fenced: bool,
    /// The port the primary's agent reaches us on (`replica-announce-port`).
    pub announce_port: u16,
    /// The replication user's password (`masterauth`); never written to a file.
    pub masterauth: &'a str,
}

/// The persistence, replication and role lines of redis.conf, one per line, each ending in a
/// newline.
///
/// The primary keeps an AOF fsynced every second and no RDB snapshots; a replica keeps RDB
/// snapshots every outage-budget/2. No password appears: users come from the ACL file (hashes
/// only) and the agent sets `masterauth` at run time.
pub fn settings(topology: &Topology, start: StartAs) -> String {
    table(topology, Phase::Boot(start))
        .into_iter()
        .map(|(name, value)| match value.as_str() {
            "" => format!("{name} \"\"\n"),
            v => format!("{name} {v}\n"),
        })
        .collect()
}

/// The `CONFIG SET` parameters the agent keeps on its Redis, in the order to apply them.
pub fn run_time(topology: &Topology, run: &RunTime<'_>) -> Vec<(&'static str, String)> {
    table(topology, Phase::Run(*run))
}

#[derive(Debug, Clone, Copy)]
enum Phase<'a> {
    Boot(StartAs),
    Run(RunTime<'a>),
}

/// Rows in redis.conf order; each says whether it belongs to the file, to run time, or both.
fn table(topology: &Topology, phase: Phase<'_>) -> Vec<(&'static str, String)> {
    let redis = &topology.redis;
    let (boot, run) = match phase {
        Phase::Boot(s) => (Some(s), None),
        Phase::Run(r) => (None, Some(r)),
    };
    let primary = match phase {
        Phase::Boot(s) => matches!(s, StartAs::Primary { .. }),
        Phase::Run(r) => r.primary,
    };
    let mut rows = Vec::new();
    let mut row = |name: &'static str, value: String, in_file: bool, at_run: bool| {
        if (boot.is_some() && in_file) || (run.is_some() && at_run) {
            rows.push((name, value));
        }
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    // The primary is the durable copy: every write in the AOF, fsynced each second. Replicas
    // persist RDB snapshots, which (unlike the AOF) carry the replication ID and offset: a
    // restarted replica resumes with a partial resync.
    let append_only = match phase {
        Phase::Boot(StartAs::Primary { append_only }) => append_only,
        _ => primary,
    };
    row("appendonly", yes_no(append_only), true, true);
    row("appendfsync", "everysec".into(), true, true);
    row("dbfilename", "dump.rdb".into(), true, false);
    row("repl-diskless-sync", "yes".into(), true, true);
    row("repl-diskless-sync-delay", "1".into(), true, true);
    row(
        "repl-backlog-size",
        redis.repl_backlog_bytes().to_string(),
        true,
        true,
    );
    row(
        "shutdown-timeout",
        SHUTDOWN_TIMEOUT_SECS.to_string(),
        true,
        false,
    );
    if let Some(m) = &redis.maxmemory {
        row("maxmemory", m.clone(), true, false);
    }
    // Snapshots often enough that the backlog still holds what came after the last one.
    let save = if primary {
        String::new()
    } else {
        format!("{} 1", (redis.outage_budget.as_secs() / 2).max(10))
    };
    row("save", save, true, true);
    // The fence: a primary not confirmed yet accepts writes only with a replica attached (a
    // region whose agent agrees it is the primary). Every primary starts fenced.
    let fenced = run.is_none_or(|r| r.fenced);
    row(
        "min-replicas-to-write",
        if fenced { "1" } else { "0" }.into(),
        primary,
        true,
    );
    row("min-replicas-max-lag", "10".into(), primary, false);
    if let Some(StartAs::Replica { primary_port }) = boot {
        row(
            "replicaof",
            format!("127.0.0.1 {primary_port}"),
            true,
            false,
        );
    }
    row("masteruser", REPLICATION_USER.into(), !primary, true);
    // In the file, not only at run time: Redis pipelines its replication handshake and decides
    // whether to read a reply to `REPLCONF ip-address` when it reads, not when it sends. Set by
    // `CONFIG SET` between the two (a restarted replica connects at once, its agent corrects it
    // milliseconds later), Redis takes the `capa` reply for it and waits for one that never
    // comes: the link hangs for `repl-timeout`, then loops. A constant, so nothing to learn first.
    row("replica-announce-ip", "127.0.0.1".into(), true, true);
    if let Some(r) = run {
        row("repl-timeout", "60".into(), false, true);
        // A WAN full sync of a large dataset must not be cut off by the output buffer limit (the
        // classic full-sync loop); 1 GiB hard, 512 MiB for 2 minutes soft.
        row(
            "client-output-buffer-limit",
            "replica 1073741824 536870912 120".into(),
            false,
            true,
        );
        row(
            "replica-announce-port",
            r.announce_port.to_string(),
            false,
            true,
        );
        row("masterauth", r.masterauth.to_owned(), false, true);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsed, not loaded: the tests of this module run at once, and one file shared by all of
    /// them was once read half-written by one test while another rewrote it.
    fn topology() -> Topology {
        Topology::parse(
            "name = \"t\"\nprimary = \"a\"\n\n[[region]]\nname = \"a\"\nendpoint = \"a.example:56379\"\n\n\
             [[region]]\nname = \"b\"\nendpoint = \"b.example:56379\"\n",
            std::path::Path::new("/etc/georep/t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn the_file_and_run_time_agree_on_every_shared_setting() {
        let t = topology();
        for (start, primary) in [
            (StartAs::Primary { append_only: true }, true),
            (
                StartAs::Replica {
                    primary_port: 16000,
                },
                false,
            ),
        ] {
            let file = settings(&t, start);
            let run = run_time(
                &t,
                &RunTime {
                    primary,
                    fenced: true,
                    announce_port: 16001,
                    masterauth: "secret-password-123",
                },
            );
            for (name, value) in &run {
                let line = file.lines().find(|l| l.split(' ').next() == Some(name));
                if let Some(line) = line {
                    let in_file = line[name.len() + 1..].trim_matches('"');
                    assert_eq!(in_file, value, "{name} differs ({start:?})");
                }
            }
            assert!(!file.contains("secret-password"));
            assert!(run.iter().any(|(n, _)| *n == "masterauth"));
        }
    }

    #[test]
    fn the_unix_socket_is_private_to_the_user_or_the_pod_group() {
        assert_eq!(
            unix_socket("/d/redis.sock", SocketAccess::User),
            "unixsocket /d/redis.sock\nunixsocketperm 700\n"
        );
        assert_eq!(
            unix_socket("/run/redis/redis.sock", SocketAccess::Group),
            "unixsocket /run/redis/redis.sock\nunixsocketperm 770\n"
        );
    }

    #[test]
    fn a_primary_starts_fenced_and_a_replica_follows_the_primary() {
        let t = topology();
        let p = settings(&t, StartAs::Primary { append_only: false });
        assert!(p.starts_with("appendonly no\nappendfsync everysec\ndbfilename dump.rdb\n"));
        assert!(p.ends_with(
            "save \"\"\nmin-replicas-to-write 1\nmin-replicas-max-lag 10\nreplica-announce-ip 127.0.0.1\n"
        ));
        let r = settings(
            &t,
            StartAs::Replica {
                primary_port: 16000,
            },
        );
        assert!(r.ends_with(
            "replicaof 127.0.0.1 16000\nmasteruser georep-replication\nreplica-announce-ip 127.0.0.1\n"
        ));
        assert!(!r.contains("min-replicas"));
    }

    /// Redis pipelines its replication handshake and, when it reads the replies, skips the
    /// `REPLCONF ip-address` one if `replica-announce-ip` is unset *then*: a value set at run
    /// time between the send and the reads hangs the link (found by the pod test that restarts a
    /// replica's Redis container). So a replica's file already holds it, with its run-time value.
    #[test]
    fn what_shapes_the_replication_handshake_is_in_the_file_from_the_start() {
        let t = topology();
        let run = run_time(
            &t,
            &RunTime {
                primary: false,
                fenced: false,
                announce_port: 16001,
                masterauth: "secret-password-123",
            },
        );
        for start in [
            StartAs::Primary { append_only: true },
            StartAs::Replica {
                primary_port: 16000,
            },
        ] {
            let file = settings(&t, start);
            let (_, ip) = run
                .iter()
                .find(|(n, _)| *n == "replica-announce-ip")
                .unwrap();
            assert!(
                file.contains(&format!("\nreplica-announce-ip {ip}\n")),
                "{start:?}: {file}"
            );
        }
    }
}
