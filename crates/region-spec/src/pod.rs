//! A region's pod: ports and paths the Kubernetes renderer lays out and the agent's flags
//! default to.

/// Redis's port, reachable only through the ClusterIP Service `redis`.
pub const REDIS_PORT: u16 = 6379;
/// The agent's tunnel server, the only port behind the load balancer.
pub const TUNNEL_PORT: u16 = 56379;
/// The agent's metrics port: `/metrics`, `/healthz`, `/readyz` (read-only, open to scrapers).
pub const HTTP_PORT: u16 = 9121;
/// The agent's control API (`/status`, `/failover`, `/promote`): bound to 127.0.0.1, in no
/// Service and no NetworkPolicy; reached with `kubectl port-forward`.
pub const CONTROL_PORT: u16 = 9122;
/// The operator token the control API accepts, from the credentials Secret.
pub const OPERATOR_TOKEN: &str = "/etc/georep/credentials/operator-token";
/// Directory of the mounted tunnel key Secret.
pub const TUNNEL_KEY_DIR: &str = "/etc/georep/tunnel";
/// The tunnel key the agent dials with (the agent's `--key` default).
pub const TUNNEL_KEY: &str = "/etc/georep/tunnel/key";
/// Directory of the mounted password Secret (the agent's `--credentials` default).
pub const CREDENTIALS: &str = "/etc/georep/credentials";
/// Directory holding redis.conf in the Redis container: an in-memory volume the `redis-conf`
/// init container fills at pod start and the agent rewrites whenever it learns a new primary.
pub const REDIS_CONF_DIR: &str = "/usr/local/etc/redis";
/// redis.conf in the Redis container.
pub const REDIS_CONF: &str = "/usr/local/etc/redis/redis.conf";
/// Directory of Redis's Unix socket: an in-memory volume mounted in the Redis and agent
/// containers only.
pub const REDIS_SOCKET_DIR: &str = "/run/redis";
/// Redis's Unix socket (mode 0770, Redis's user and the pod's fsGroup), the agent's primary
/// endpoint's route to the local Redis (`--redis-socket`).
pub const REDIS_SOCKET: &str = "/run/redis/redis.sock";
/// The ACL file, written by the `acl-file` init container, read by Redis.
pub const ACL_FILE: &str = "/run/georep/acl/users.acl";
/// Redis's data directory (the persistent volume), mounted in the agent too for its own state.
pub const DATA: &str = "/data";
/// The agent's state directory (its `--state-dir` default), on the data volume.
pub const STATE_DIR: &str = "/data/georep";
/// The region's replication relay (topologies with `[relay]`), run by the agent on 127.0.0.1:
/// only the local Redis and the relay's tunnel server, both in the pod, connect to it. In no
/// Service, no NetworkPolicy and no container port.
pub const RELAY_PORT: u16 = 6390;
/// The relay's tunnel server in the pod: the other regions' relays dial it through the load
/// balancer (the region's `endpoint` host, on the endpoint's port + 1).
pub const RELAY_TUNNEL_PORT: u16 = 56380;
/// The relay's store (`--relay-dir`): a persistent volume of its own, so the backlog survives a
/// pod restart and filling it can never stop Redis from writing its AOF.
pub const RELAY_DIR: &str = "/var/lib/georep/relay";

/// The redis.conf of region `region` in its pod, given the region its agent last knew as
/// primary (its state file, else the topology's).
///
/// It mirrors what `georep up` writes (`crates/local/src/layout.rs`), in the pod's layout: the
/// believed primary starts fenced with its AOF (the durable copy after a crash); every other
/// region starts as its replica through the local tunnel client (`127.0.0.1:16000+i`), or with
/// `[relay]` of the region's relay ([`RELAY_PORT`]), so it never accepts a write, even before
/// its agent runs. Written at every pod start and on every change of primary, so a restarted
/// Redis container starts in its current role, never the role at render time. Users come from
/// the ACL file; no password is in this file. Redis listens on every address because
/// in-cluster clients come through the `redis` Service; the default user is off, so an
/// unauthenticated client gets `NOAUTH`. It also listens on [`REDIS_SOCKET`], for the agent's
/// primary endpoint only.
pub fn redis_conf(
    topology: &topology::Topology,
    region: topology::RegionId,
    primary: topology::RegionId,
) -> String {
    use crate::redis_conf::{settings, unix_socket, SocketAccess, StartAs};
    let name = &topology.regions[region].name;
    let is_primary = region == primary;
    let header = format!(
        "# Written by georep for region {name} ({role}: primary {primary_name}), from the\n\
         # topology and the agent's state file; rewritten at every pod start and change of\n\
         # primary. Edit the topology instead.\n\
         port {REDIS_PORT}\n\
         bind * -::*\n\
         protected-mode yes\n\
         daemonize no\n\
         dir {DATA}\n\
         logfile \"\"\n\
         aclfile {ACL_FILE}\n",
        role = if is_primary { "primary" } else { "replica" },
        primary_name = topology.regions[primary].name,
    );
    let start = if is_primary {
        StartAs::Primary { append_only: true }
    } else {
        StartAs::Replica {
            // With a relay, a replica region's Redis replicates from the local relay.
            primary_port: match topology.relay {
                Some(_) => RELAY_PORT,
                None => topology::pod_peer_port(primary.index()),
            },
        }
    };
    header + &unix_socket(REDIS_SOCKET, SocketAccess::Group) + &settings(topology, start)
}
/// The agent's primary endpoint: forwards each application connection to the current primary
/// (ClusterIP Service `georep-primary`).
pub const PRIMARY_ENDPOINT_PORT: u16 = 6380;
/// The agent's Sentinel-compatible port (ClusterIP Service `georep-sentinel`).
pub const SENTINEL_PORT: u16 = 26379;
