//! Where client connections go now.

use std::net::SocketAddr;

/// The endpoint's target, published by the agent on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward to the primary of `epoch`, reachable at `addr` from this region (the local Redis,
    /// or the local end of the tunnel to the primary region).
    Primary {
        /// Where to connect.
        addr: SocketAddr,
        /// The cluster epoch this primary holds. A new epoch is a new route, even at the same
        /// address: connections opened before it are closed.
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
    /// The target address, when a primary is known.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Primary { addr, .. } => Some(*addr),
            Self::Unavailable { .. } => None,
        }
    }
}
