//! A region's pod: ports and paths the Kubernetes renderer lays out and the agent's flags
//! default to.

/// Redis's port, reachable only through the ClusterIP Service `redis`.
pub const REDIS_PORT: u16 = 6379;
/// The agent's tunnel server, the only port behind the load balancer.
pub const TUNNEL_PORT: u16 = 56379;
/// The agent's metrics port: `/metrics`, `/healthz`, `/readyz` (read-only, open to scrapers).
pub const HTTP_PORT: u16 = 9121;
/// The agent's control API (`/status`, `/failover`, `/promote`): bound to 127.0.0.1, in no
/// Service and no NetworkPolicy; reached with `kubectl port-forward`.
pub const CONTROL_PORT: u16 = 9122;
/// The operator token the control API accepts, from the credentials Secret.
pub const OPERATOR_TOKEN: &str = "/etc/georep/credentials/operator-token";
/// Directory of the mounted tunnel key Secret.
pub const TUNNEL_KEY_DIR: &str = "/etc/georep/tunnel";
/// The tunnel key the agent dials with (the agent's `--key` default).
pub const TUNNEL_KEY: &str = "/etc/georep/tunnel/key";
/// Directory of the mounted password Secret (the agent's `--credentials` default).
pub const CREDENTIALS: &str = "/etc/georep/credentials";
