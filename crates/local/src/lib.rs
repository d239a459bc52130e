//! `georep up`: every region of a topology on one machine.
//!
//! Per region a real `redis-server` and a real agent process (the same `georep agent` a pod runs,
//! with flags from the topology's port map), and between regions a user-space WAN emulator
//! (latency, jitter, bandwidth; cut and heal from tests or `georep link`). `up` supervises the
//! processes the way a kubelet would: what dies is restarted.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod claim;
mod cluster;
pub mod control;
pub mod layout;
pub mod leftovers;
pub mod lock;
pub mod port_check;
pub mod process;
mod procfs;
mod regions;
mod wan_links;

/// The HTTP client of the agent's API, where the tests and tools that drive `georep up` found it
/// before it moved to the agent crate.
pub use agent::client as http;
pub use cluster::{Cluster, Options, UpError};
pub use regions::Pids;
