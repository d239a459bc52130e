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
pub mod http;
pub mod layout;
pub mod leftovers;
pub mod lock;
pub mod port_check;
pub mod process;
mod procfs;
pub mod secrets;
pub mod view;

pub use cluster::{Cluster, Options, Pids, UpError};
