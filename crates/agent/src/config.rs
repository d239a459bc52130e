//! Everything one agent needs, parsed and checked before any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use spiped_proto::Key;
use topology::{RegionId, Topology};
use tunnel::Address;

use crate::credentials::Passwords;

/// The agent's settings. The same flags build it in a Kubernetes pod and under `georep up`.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The cluster.
    pub topology: Topology,
    /// Our region.
    pub region: RegionId,
    /// Our Redis.
    pub redis: SocketAddr,
    /// Our Redis's Unix socket (its `unixsocket`), if it has one: the primary endpoint's route
    /// to it, which skips the TCP/IP stack. The agent's own Redis connections stay on `redis`.
    pub redis_socket: Option<std::path::PathBuf>,
    /// Tunnel keys: the first is used to dial, all are accepted (rotation).
    pub keys: Vec<Key>,
    /// Passwords of the managed ACL users.
    pub passwords: Passwords,
    /// Where our tunnel server listens (other regions' agents dial it).
    pub tunnel_listen: Address,
    /// HTTP metrics and probes (open to scrapers).
    pub http: SocketAddr,
    /// The control API (`/status`, `/failover`, `/promote`), if served: 127.0.0.1 in a pod.
    pub control: Option<SocketAddr>,
    /// Operator tokens the control API accepts (several during a rotation); not empty when
    /// `control` is set.
    pub operator_tokens: Vec<httpd::auth::Token>,
    /// Our tunnel client to region `i` listens on `127.0.0.1:(peer_port_base + i)`.
    pub peer_port_base: u16,
    /// The primary's agent reaches region `i` on `127.0.0.1:(announce_port_base + i)`: the port a
    /// replica announces (`replica-announce-port`). Equals `peer_port_base` in pods.
    pub announce_port_base: u16,
    /// Where to dial each region's tunnel server, by region index (the topology's endpoints,
    /// or the WAN emulator locally).
    pub peer_endpoints: Vec<Address>,
    /// How often the primary stamps the heartbeat.
    pub heartbeat_every: Duration,
    /// How often Redis is checked and corrected.
    pub reconcile_every: Duration,
    /// Where the agent keeps its state file (the highest epoch and primary it has learned).
    pub state_dir: std::path::PathBuf,
    /// In a pod: the Redis container's redis.conf, rewritten in our region's role whenever we
    /// learn a new primary ([`crate::pod_conf`]). `georep up` writes its own at every start.
    pub redis_conf: Option<std::path::PathBuf>,
    /// Where the primary endpoint listens (`None`: no endpoint).
    pub primary_endpoint: Option<SocketAddr>,
    /// How long the endpoint's forwarding thread may keep polling after traffic before it
    /// sleeps (adaptive; zero: never). See [`endpoint::Limits::busy_poll`].
    pub endpoint_busy_poll: Duration,
    /// Where the Sentinel-compatible port listens (`None`: none).
    pub sentinel: Option<SocketAddr>,
    /// The address the Sentinel port gives clients for our Redis (in a pod: the `redis`
    /// Service); `None`: `redis` itself, reachable on this host only.
    pub announce_redis: Option<sentinel::Addr>,
    /// The address the Sentinel port gives clients for our primary endpoint (in a pod: the
    /// `georep-primary` Service); `None`: `primary_endpoint`, on loopback if it listens on all.
    pub announce_endpoint: Option<sentinel::Addr>,
    /// The region's replication relay, run in the agent (`None`: Redis replicates directly
    /// through the tunnels).
    pub relay: Option<crate::RelayPlacement>,
}

impl AgentConfig {
    /// Our region's name.
    pub fn region_name(&self) -> &str {
        &self.topology.regions[self.region].name
    }

    /// Every region but ours, in topology order.
    pub fn other_regions(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.topology
            .regions
            .iter()
            .map(|r| r.index)
            .filter(move |i| *i != self.region)
    }

    /// What our Redis replicates from while region `primary` is the primary: our relay if we
    /// run one, else our tunnel client to that region.
    pub fn follow_addr(&self, primary: RegionId) -> SocketAddr {
        match &self.relay {
            Some(r) => r.listen,
            None => self.peer_addr(primary),
        }
    }

    /// Where our tunnel client to `region` listens (port arithmetic: `peer_port_base + index`).
    pub fn peer_addr(&self, region: RegionId) -> SocketAddr {
        let port = self.peer_port_base + region.index() as u16;
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}
