//! Where client connections go now.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The endpoint's target, published by the agent on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward to the primary of `epoch`, reachable at `target` from this region (the local
    /// Redis, or the local end of the tunnel to the primary region).
    Primary {
        /// Where to connect.
        target: Target,
        /// The cluster epoch this primary holds. A new epoch is a new route, even at the same
        /// target: connections opened before it are closed.
        epoch: u64,
    },
    /// No primary is known (fenced, epoch unknown, switchover in progress): hold new clients,
    /// then refuse them with `reason` in the error.
    Unavailable {
        /// Why, for the client's error message and logs (e.g. `switchover in progress`).
        reason: String,
    },
}

impl Route {
    /// The target, when a primary is known.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Self::Primary { target, .. } => Some(target),
            Self::Unavailable { .. } => None,
        }
    }
}

/// How the endpoint reaches a primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A TCP address: the tunnel client to the primary region, or the local Redis's port.
    Tcp(SocketAddr),
    /// The local Redis's Unix socket (its `unixsocket`). The hop to a Redis on the same host
    /// skips the TCP/IP stack: on loopback TCP, most of the forwarder's CPU was the kernel's TCP
    /// send and receive of this extra hop.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp(addr)
    }
}
