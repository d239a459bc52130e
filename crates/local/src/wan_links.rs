//! The emulated WAN links between regions: region *i*'s tunnel client reaches region *j*'s
//! tunnel server through `wan_listener(i, j)`, and, with `[relay]` in the topology, *i*'s relay
//! reaches *j*'s relay tunnel through `relay_wan_listener(i, j)`, with the same conditions. Both
//! kinds are in one list, so `georep link cut A B` cuts every stream between A and B.

use std::net::SocketAddr;

use tokio::sync::watch;
use topology::{RegionId, Topology};
use wan::{Link, LinkParams};

use crate::regions::WanLink;

/// Which stream a set of links carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Redis replication and the agents' metadata reads, to the tunnel in front of Redis.
    Redis,
    /// Relay to relay, to the tunnel in front of the relay.
    Relay,
}

impl Stream {
    /// The name `georep link list` and `GET /links` show.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Relay => "relay",
        }
    }
}

/// Binds and spawns a link for every ordered pair of regions, appending them to `links`.
pub(crate) async fn spawn(
    topology: &Topology,
    stream: Stream,
    links: &mut Vec<WanLink>,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<()> {
    let n = topology.regions.len();
    let local = &topology.local;
    for from in 0..n {
        for to in (0..n).filter(|to| *to != from) {
            let (listen, upstream, prefix) = match stream {
                Stream::Redis => (local.wan_listener(from, to), local.ports(to).tunnel, ""),
                Stream::Relay => (
                    local.relay_wan_listener(from, to),
                    local.ports(to).relay_tunnel,
                    "relay ",
                ),
            };
            let listen = SocketAddr::from(([127, 0, 0, 1], listen));
            let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{listen}: {e}")))?;
            let p = local.link(RegionId::new(from), RegionId::new(to));
            let params = LinkParams {
                latency: p.latency,
                jitter: p.jitter,
                bandwidth: p.bandwidth_bytes_per_sec,
            };
            let name = format!(
                "{prefix}{}->{}",
                topology.regions[from].name, topology.regions[to].name
            );
            links.push(WanLink {
                from,
                to,
                stream,
                handle: Link::spawn(name, listener, upstream, params, stop.clone()),
            });
        }
    }
    Ok(())
}
