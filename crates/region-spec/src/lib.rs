//! What every form of a georep region agrees on — `georep up` (crate `local`), the Kubernetes
//! renderer (crate `k8s`) and the agent itself — with no runtime: no tokio, no Redis client.
//!
//! - [`redis_conf`]: the one table of Redis settings, rendered into redis.conf at start and kept
//!   in place by the agent at run time (`CONFIG SET`);
//! - [`credentials`]: the ACL users and the files holding their passwords;
//! - [`pod`]: the ports and paths of a region's pod, which are also the agent's defaults;
//! - [`AgentFlags`]: the agent's command line, built once from a typed struct.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent_flags;
pub mod credentials;
pub mod pod;
pub mod redis_conf;

pub use agent_flags::AgentFlags;
