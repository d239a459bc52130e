//! The emulated WAN links of the relays (`[relay]` in the topology): region *i*'s relay reaches
//! region *j*'s relay tunnel through `relay_wan_listener(i, j)`, with the same conditions as the
//! link between *i* and *j*. They are listed with the Redis links, so `georep link cut A B` cuts
//! both streams between A and B.

use std::net::SocketAddr;

use tokio::sync::watch;
use topology::Topology;
use wan::{Link, LinkHandle, LinkParams};

/// Binds and spawns every relay link, appending them to `links`.
pub(crate) async fn spawn(
    topology: &Topology,
    links: &mut Vec<(usize, usize, LinkHandle)>,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<()> {
    let n = topology.regions.len();
    for from in 0..n {
        for to in (0..n).filter(|to| *to != from) {
            let listen =
                SocketAddr::from(([127, 0, 0, 1], topology.local.relay_wan_listener(from, to)));
            let upstream =
                SocketAddr::from(([127, 0, 0, 1], topology.local.ports(to).relay_tunnel));
            let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("relay WAN link listener {listen}: {e}"))
            })?;
            let p = topology.local.link(from, to);
            let params = LinkParams {
                latency: p.latency,
                jitter: p.jitter,
                bandwidth: p.bandwidth_bytes_per_sec,
            };
            let name = format!(
                "relay {}->{}",
                topology.regions[from].name, topology.regions[to].name
            );
            links.push((
                from,
                to,
                Link::spawn(name, listener, upstream, params, stop.clone()),
            ));
        }
    }
    Ok(())
}
