//! A disk-backed Redis replication relay.
//!
//! Towards its upstream (a Redis primary or another relay) the relay is a replica: it runs the
//! replica side of Redis's replication protocol ([`upstream::Replica`]), stores the RDB and the
//! command stream on disk ([`store::Store`]) and acknowledges what it has written. Towards its
//! downstreams (Redis replicas, other relays) it is a master ([`downstream::Master`]): it answers
//! `PSYNC` with `+CONTINUE` from any offset it still holds, or `+FULLRESYNC` from its stored RDB
//! plus the stream after it, without asking its upstream for anything.
//!
//! Replication IDs and offsets are the upstream's, byte for byte: a replica of the relay ends up
//! with the same `master_replid` and `master_repl_offset` as a replica of the primary.
//!
//! Between two relays the stream may travel zstd-compressed ([`compress`], negotiated per link).
//!
//! The protocol code ([`upstream`], [`downstream`], [`frame`], [`compress`]) is sans-IO; [`run`]
//! drives it with tokio.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compress;
pub mod downstream;
pub mod frame;
pub mod metrics;
mod replid;
pub mod retention;
pub mod run;
pub mod store;
pub mod upstream;

pub use compress::Compression;
pub use metrics::RelayMetrics;
pub use replid::{ReplId, ReplIdError};
pub use retention::Retention;
pub use run::{Config, LocalRedis, Relay, UpstreamHandle};
