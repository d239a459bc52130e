//! The redis.conf settings georep wants, shared by `georep up` and `georep render k8s`.
//!
//! Each environment writes its own header (port, bind address, directories, ACL file); the
//! persistence, replication and role lines come from here, so a local region and a pod start
//! Redis the same way. The agent keeps the same settings in place at run time (`control.rs`).

use topology::Topology;

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

/// The persistence, replication and role lines, one per line, each ending in a newline.
///
/// The primary keeps an AOF fsynced every second and no RDB snapshots; a replica keeps RDB
/// snapshots every outage-budget/2. No password appears: users come from the ACL file (hashes
/// only) and the agent sets `masterauth` at run time.
pub fn settings(topology: &Topology, start: StartAs) -> String {
    let append_only = matches!(start, StartAs::Primary { append_only: true });
    let mut conf = format!(
        "appendonly {aof}\n\
         appendfsync everysec\n\
         dbfilename dump.rdb\n\
         repl-diskless-sync yes\n\
         repl-diskless-sync-delay 1\n\
         repl-backlog-size {backlog}\n\
         shutdown-timeout {SHUTDOWN_TIMEOUT_SECS}\n",
        aof = if append_only { "yes" } else { "no" },
        backlog = topology.redis.repl_backlog_bytes(),
    );
    if let Some(m) = &topology.redis.maxmemory {
        conf.push_str(&format!("maxmemory {m}\n"));
    }
    match start {
        StartAs::Primary { .. } => {
            conf.push_str("save \"\"\nmin-replicas-to-write 1\nmin-replicas-max-lag 10\n");
        }
        StartAs::Replica { primary_port } => conf.push_str(&format!(
            "save {} 1\nreplicaof 127.0.0.1 {primary_port}\nmasteruser {}\n",
            (topology.redis.outage_budget.as_secs() / 2).max(10),
            crate::credentials::REPLICATION_USER
        )),
    }
    conf
}

/// Redis's `shutdown-timeout`: how long a stopping primary waits for its replicas to catch up.
pub const SHUTDOWN_TIMEOUT_SECS: i64 = 10;
