//! What this Sentinel tells clients: the cluster as seen from one region.

use sha2::{Digest, Sha256};

/// A host and port as a client in this region dials them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Addr {
    /// An IP address or a host name (Sentinel's `announce-hostnames` form).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Addr {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl From<std::net::SocketAddr> for Addr {
    fn from(a: std::net::SocketAddr) -> Self {
        Self::new(a.ip().to_string(), a.port())
    }
}

/// Why a `HOST:PORT` did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not HOST:PORT (a host name or IP address, and a port from 1 to 65535)")]
pub struct AddrParseError(String);

impl std::str::FromStr for Addr {
    type Err = AddrParseError;

    /// `host:port`, `1.2.3.4:port` or `[::1]:port`. The host is announced to clients as given,
    /// so it must be one word a client can dial: no spaces or control characters, which would
    /// also break Sentinel's space-separated `+switch-master` message.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddrParseError(s.to_owned());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
                .ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        Ok(Self::new(host, port))
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A Sentinel's run id: 40 lowercase hex characters, as `SENTINEL MYID` returns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentinelId(String);

impl SentinelId {
    /// A stable id derived from a name (e.g. `cluster/region`), so it survives restarts the way a
    /// real Sentinel's id survives in its config file.
    pub fn derive(name: &str) -> Self {
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self(hex[..40].to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Another region's Sentinel-compatible port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSentinel {
    /// Its run id.
    pub id: SentinelId,
    /// Where clients reach it.
    pub addr: Addr,
}

/// The cluster as this region's Sentinel reports it. The agent publishes a new one on every change
/// (a `watch` channel); each connection answers from the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The master name clients ask for: the cluster's name.
    pub master_name: String,
    /// The cluster epoch, reported as the master's `config-epoch`.
    pub epoch: u64,
    /// Whether a primary is known at this epoch. When not (fenced, unknown epoch), `SENTINEL
    /// master(s)` flags the master `s_down,o_down`, so Sentinel clients that check (redis-py) back
    /// off and retry instead of connecting.
    pub primary_known: bool,
    /// The primary as reachable from this region: the local Redis when this region is primary,
    /// else this region's primary endpoint. While no primary is known, keep the endpoint here: it
    /// holds and then refuses clients with a clear error.
    pub primary: Addr,
    /// Replicas reachable from this region (normally the local Redis when it is a replica).
    pub replicas: Vec<Addr>,
    /// This Sentinel's id.
    pub myid: SentinelId,
    /// The other regions' Sentinels.
    pub sentinels: Vec<PeerSentinel>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_addresses_parse_as_clients_dial_them() {
        let ok = |s: &str| s.parse::<Addr>().unwrap();
        assert_eq!(
            ok("redis.georep.svc:6379"),
            Addr::new("redis.georep.svc", 6379)
        );
        assert_eq!(ok("10.0.0.7:6380"), Addr::new("10.0.0.7", 6380));
        assert_eq!(ok("[fd00::1]:6379"), Addr::new("fd00::1", 6379));
        for bad in [
            "",
            "redis",
            ":6379",
            "redis:",
            "redis:0",
            "redis:70000",
            "fd00::1:6379",
            "[x]:1",
            "a b:1",
        ] {
            assert!(bad.parse::<Addr>().is_err(), "{bad:?} parsed");
        }
    }
}
