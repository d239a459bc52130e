//! Sentinel-compatible discovery: the subset of the Redis Sentinel protocol that client libraries
//! use to find the primary, answered from the agent's view of the cluster.
//!
//! ```text
//!   bytes ─► request::decode ─► Session::handle(args, &View) ─► Reply::encode ─► bytes
//!   View changes ─► ViewChanges::update ─► Event (+switch-master) ─► Session::publish ─► bytes
//! ```
//!
//! [`Session`] is sans-IO: the tokio driver in [`server`] only moves bytes, watches the
//! [`View`] and enforces connection limits and timeouts. This is not a Sentinel: it monitors
//! nothing and elects nothing; georep's agents decide where the primary is and publish a `View`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod glob;
pub mod metrics;
mod reply;
pub mod request;
pub mod server;
mod session;
mod view;

pub use metrics::SentinelMetrics;
pub use reply::{Protocol, Reply};
pub use request::{RequestError, RequestLimits};
pub use server::{serve, Limits};
pub use session::{
    CloseReason, Credentials, Event, Flow, Note, Session, SessionLimits, ViewChanges,
    REPORTED_VERSION,
};
pub use view::{Addr, AddrParseError, PeerSentinel, SentinelId, View};
