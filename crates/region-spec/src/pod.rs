//! A region's pod: ports and paths the Kubernetes renderer lays out and the agent's flags
//! default to.

/// Redis's port, reachable only through the ClusterIP Service `redis`.
pub const REDIS_PORT: u16 = 6379;
/// The agent's tunnel server, the only port behind the load balancer.
pub const TUNNEL_PORT: u16 = 56379;
/// The agent's HTTP port: `/status`, `/metrics`, `/healthz`, `/readyz`.
pub const HTTP_PORT: u16 = 9121;
/// Directory of the mounted tunnel key Secret.
pub const TUNNEL_KEY_DIR: &str = "/etc/georep/tunnel";
/// The tunnel key the agent dials with (the agent's `--key` default).
pub const TUNNEL_KEY: &str = "/etc/georep/tunnel/key";
/// Directory of the mounted password Secret (the agent's `--credentials` default).
pub const CREDENTIALS: &str = "/etc/georep/credentials";
/// The agent's primary endpoint: forwards each application connection to the current primary
/// (ClusterIP Service `georep-primary`).
pub const PRIMARY_ENDPOINT_PORT: u16 = 6380;
/// The agent's Sentinel-compatible port (ClusterIP Service `georep-sentinel`).
pub const SENTINEL_PORT: u16 = 26379;
