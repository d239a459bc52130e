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
