//! What `georep up` does before it starts anything: take the data directory (its lock), stop
//! what an earlier `up` left running on it, and check that every port of the port map is free.
//! Each step fails fast with a message that names the culprit, so nothing half-starts.

use std::os::unix::fs::DirBuilderExt as _;

use topology::Topology;

use crate::layout::Layout;
use crate::leftovers::{self, StuckLeftovers};
use crate::lock::{InstanceLock, LockError};
use crate::port_check::{self, PortInUse};

/// Why `up` may not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// Another `up` runs on the data directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Leftover processes would not stop.
    #[error(transparent)]
    Leftovers(#[from] StuckLeftovers),
    /// A port of the map is taken.
    #[error(transparent)]
    Port(#[from] PortInUse),
    /// The data directory cannot be created.
    #[error("data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The data directory, held for one `up`; dropping it lets the next one in.
#[derive(Debug)]
pub struct Claim {
    lock: InstanceLock,
}

impl Claim {
    /// Takes the data directory of `layout` for `topology`: lock, leftovers, ports, in that order
    /// (leftovers are ours to stop only once we hold the lock, and they may hold our ports).
    pub async fn take(layout: &Layout, topology: &Topology) -> Result<Self, ClaimError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&layout.root)
            .map_err(|source| ClaimError::DataDir {
                dir: layout.root.clone(),
                source,
            })?;
        let lock = InstanceLock::acquire(&layout.pid_file(), &layout.root)?;
        leftovers::stop_all(&layout.root).await?;
        port_check::check(topology)?;
        Ok(Self { lock })
    }

    /// Lets the data directory go (at a clean stop).
    pub fn release(self) {
        self.lock.release();
    }
}
