//! Before `georep up` starts anything, every port of the topology's port map must be free.
//!
//! Otherwise a Redis or agent fails to bind and is restarted every second, with the reason only
//! in its log; worse, a foreign Redis on a Redis port (one left by an `up` whose data directory
//! was deleted) answers our clients with `WRONGPASS`. Each port is probed by binding it on
//! loopback, where everything of `up` listens; a taken port is reported with its role and, when
//! `/proc` shows it, the pid and command line of the program holding it.

use std::net::{Ipv4Addr, TcpListener};

use topology::Topology;

use crate::procfs;

/// A port of the map that something else holds.
#[derive(Debug, thiserror::Error)]
#[error(
    "port {port} ({role}) is already in use{owner}; stop that program, or move the whole \
     port map with [local] base_port in the topology"
)]
pub struct PortInUse {
    /// The port.
    pub port: u16,
    /// What `up` would run there: `Redis of us-east-1`.
    pub role: String,
    /// ` by pid 1234 (python3 -m http.server 17000)`, or empty when unknown.
    pub owner: String,
}

/// Every port `up` listens on for `topology`, with what listens there.
pub fn port_map(topology: &Topology) -> Vec<(u16, String)> {
    let local = &topology.local;
    let mut map = Vec::new();
    for r in &topology.regions {
        let ports = local.ports(r.index.index());
        let name = &r.name;
        map.push((ports.redis, format!("Redis of {name}")));
        map.push((ports.tunnel, format!("tunnel server of {name}")));
        map.push((ports.http, format!("agent HTTP of {name}")));
        map.push((ports.control, format!("agent control API of {name}")));
        map.push((
            ports.primary_endpoint,
            format!("primary endpoint of {name}"),
        ));
        map.push((ports.sentinel, format!("Sentinel port of {name}")));
        if topology.relay.is_some() {
            map.push((ports.relay, format!("replication relay of {name}")));
            map.push((ports.relay_tunnel, format!("relay tunnel server of {name}")));
            for peer in topology.regions.iter().filter(|p| p.index != r.index) {
                map.push((
                    local.relay_wan_listener(r.index.index(), peer.index.index()),
                    format!("emulated WAN link {name} -> {}'s relay", peer.name),
                ));
            }
        }
        for peer in topology.regions.iter().filter(|p| p.index != r.index) {
            map.push((
                ports.peer(peer.index.index()),
                format!("{name}'s tunnel client towards {}", peer.name),
            ));
            map.push((
                local.wan_listener(r.index.index(), peer.index.index()),
                format!("emulated WAN link {name} -> {}", peer.name),
            ));
        }
    }
    map.push((local.control_port(), "control API of georep up".to_owned()));
    map
}

/// Probes every port of the map; the first taken one is the error.
pub fn check(topology: &Topology) -> Result<(), PortInUse> {
    for (port, role) in port_map(topology) {
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            let owner = procfs::port_owner(port)
                .map(|pid| format!(" by {}", procfs::describe(pid)))
                .unwrap_or_default();
            return Err(PortInUse { port, role, owner });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(base: u16) -> Topology {
        let text = format!(
            "name = \"t\"\nprimary = \"a\"\n\
             [[region]]\nname = \"a\"\nendpoint = \"a.example:1\"\n\
             [[region]]\nname = \"b\"\nendpoint = \"b.example:1\"\n\
             [[region]]\nname = \"c\"\nendpoint = \"c.example:1\"\n\
             [local]\nbase_port = {base}\n"
        );
        Topology::parse(&text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn the_map_lists_every_listener_once() {
        let t = topology(20_000);
        let map = port_map(&t);
        // Per region: Redis, tunnel, HTTP, control, primary endpoint, Sentinel, and a tunnel
        // client and a WAN link per other region.
        assert_eq!(map.len(), 3 * (6 + 2 * 2) + 1);
        let mut ports: Vec<u16> = map.iter().map(|(p, _)| *p).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), map.len(), "a port is listed twice");
        assert!(map.contains(&(20_000, "Redis of a".into())));
        assert!(map.contains(&(20_101, "tunnel server of b".into())));
        assert!(map.contains(&(20_104, "primary endpoint of b".into())));
        assert!(map.contains(&(20_205, "Sentinel port of c".into())));
        assert!(map.contains(&(20_211, "c's tunnel client towards b".into())));
        assert!(map.contains(&(20_052, "emulated WAN link a -> c".into())));
        assert!(map.contains(&(20_099, "control API of georep up".into())));
        assert!(map.contains(&(20_103, "agent control API of b".into())));
    }

    #[test]
    fn a_taken_port_is_named_with_its_role_and_owner() {
        // Find a base whose whole map is free, then take one of its ports.
        let base = (0..200)
            .map(|i| 40_000 + i * 100)
            .find(|b| check(&topology(*b)).is_ok())
            .expect("a free port block");
        let t = topology(base);
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, base + 101)).unwrap();
        let err = check(&t).unwrap_err();
        assert_eq!(err.port, base + 101);
        assert_eq!(err.role, "tunnel server of b");
        let me = std::process::id();
        assert!(err.owner.starts_with(&format!(" by pid {me} (")), "{err}");
        drop(held);
    }
}
