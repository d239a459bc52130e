//! The agent's command line (`georep agent …`), built once from a typed struct by both
//! `georep up` and the Kubernetes renderer.

/// Flags of `georep agent`. `None` (or an empty list) leaves the flag out: the agent's default,
/// which is the pod's layout ([`crate::pod`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFlags {
    /// `--topology FILE`.
    pub topology: String,
    /// `--region NAME`.
    pub region: String,
    /// `--redis ADDR`.
    pub redis: Option<String>,
    /// `--redis-socket PATH`: the local Redis's Unix socket, the primary endpoint's route to it.
    pub redis_socket: Option<String>,
    /// `--key FILE`, repeated; the first dials.
    pub keys: Vec<String>,
    /// `--credentials DIR`.
    pub credentials: Option<String>,
    /// `--tunnel-listen ADDR`.
    pub tunnel_listen: Option<String>,
    /// `--http ADDR`.
    pub http: Option<String>,
    /// `--control ADDR`: the control API (operator token required).
    pub control: Option<String>,
    /// `--operator-token-file FILE`, repeated (rotation).
    pub operator_token_files: Vec<String>,
    /// `--peer-port-base BASE`.
    pub peer_port_base: Option<u16>,
    /// `--announce-port-base BASE`.
    pub announce_port_base: Option<u16>,
    /// `--state-dir DIR`.
    pub state_dir: Option<String>,
    /// `--peer-endpoint REGION=ADDR`, repeated.
    pub peer_endpoints: Vec<(String, String)>,
    /// `--primary-endpoint ADDR`: where applications reach the current primary.
    pub primary_endpoint: Option<String>,
    /// `--sentinel ADDR`: the Sentinel-compatible port.
    pub sentinel: Option<String>,
    /// `--announce-redis HOST:PORT`: our Redis as the Sentinel port names it to clients.
    pub announce_redis: Option<String>,
    /// `--announce-endpoint HOST:PORT`: our primary endpoint as the Sentinel port names it.
    pub announce_endpoint: Option<String>,
    /// `--relay-listen ADDR`: run the region's replication relay (topologies with `[relay]`).
    pub relay_listen: Option<String>,
    /// `--relay-tunnel-listen ADDR`: the relay's tunnel server.
    pub relay_tunnel_listen: Option<String>,
    /// `--relay-peer-endpoint REGION=ADDR`, repeated: each other region's relay tunnel.
    pub relay_peer_endpoints: Vec<(String, String)>,
    /// `--relay-dir DIR`: the relay's store (default `<state-dir>/relay`).
    pub relay_dir: Option<String>,
}

impl AgentFlags {
    /// The arguments after the program name, starting with the `agent` subcommand.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["agent".to_owned()];
        let mut flag = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        flag("topology", self.topology.clone());
        flag("region", self.region.clone());
        if let Some(v) = &self.redis {
            flag("redis", v.clone());
        }
        if let Some(v) = &self.redis_socket {
            flag("redis-socket", v.clone());
        }
        for k in &self.keys {
            flag("key", k.clone());
        }
        if let Some(v) = &self.credentials {
            flag("credentials", v.clone());
        }
        if let Some(v) = &self.tunnel_listen {
            flag("tunnel-listen", v.clone());
        }
        if let Some(v) = &self.http {
            flag("http", v.clone());
        }
        if let Some(v) = &self.control {
            flag("control", v.clone());
        }
        for f in &self.operator_token_files {
            flag("operator-token-file", f.clone());
        }
        if let Some(v) = self.peer_port_base {
            flag("peer-port-base", v.to_string());
        }
        if let Some(v) = self.announce_port_base {
            flag("announce-port-base", v.to_string());
        }
        if let Some(v) = &self.state_dir {
            flag("state-dir", v.clone());
        }
        for (region, addr) in &self.peer_endpoints {
            flag("peer-endpoint", format!("{region}={addr}"));
        }
        if let Some(v) = &self.primary_endpoint {
            flag("primary-endpoint", v.clone());
        }
        if let Some(v) = &self.sentinel {
            flag("sentinel", v.clone());
        }
        if let Some(v) = &self.announce_redis {
            flag("announce-redis", v.clone());
        }
        if let Some(v) = &self.announce_endpoint {
            flag("announce-endpoint", v.clone());
        }
        if let Some(v) = &self.relay_listen {
            flag("relay-listen", v.clone());
        }
        if let Some(v) = &self.relay_tunnel_listen {
            flag("relay-tunnel-listen", v.clone());
        }
        for (region, addr) in &self.relay_peer_endpoints {
            flag("relay-peer-endpoint", format!("{region}={addr}"));
        }
        if let Some(v) = &self.relay_dir {
            flag("relay-dir", v.clone());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_flags_set_appear_in_a_fixed_order() {
        let pod = AgentFlags {
            topology: "/etc/georep/topology.toml".into(),
            region: "eu".into(),
            ..AgentFlags::default()
        };
        assert_eq!(
            pod.args(),
            [
                "agent",
                "--topology",
                "/etc/georep/topology.toml",
                "--region",
                "eu"
            ]
        );
        let local = AgentFlags {
            redis_socket: Some("/d/us/redis.sock".into()),
            keys: vec!["a".into(), "b".into()],
            peer_port_base: Some(16000),
            peer_endpoints: vec![("us".into(), "[127.0.0.1]:1".into())],
            ..pod
        };
        assert_eq!(
            local.args()[5..],
            [
                "--redis-socket",
                "/d/us/redis.sock",
                "--key",
                "a",
                "--key",
                "b",
                "--peer-port-base",
                "16000",
                "--peer-endpoint",
                "us=[127.0.0.1]:1"
            ]
        );
        let relay = AgentFlags {
            relay_listen: Some("127.0.0.1:17106".into()),
            relay_tunnel_listen: Some("[127.0.0.1]:17107".into()),
            relay_peer_endpoints: vec![("us".into(), "[127.0.0.1]:17190".into())],
            relay_dir: Some("/var/lib/georep/relay".into()),
            ..AgentFlags::default()
        };
        assert_eq!(
            relay.args()[5..],
            [
                "--relay-listen",
                "127.0.0.1:17106",
                "--relay-tunnel-listen",
                "[127.0.0.1]:17107",
                "--relay-peer-endpoint",
                "us=[127.0.0.1]:17190",
                "--relay-dir",
                "/var/lib/georep/relay"
            ]
        );
    }
}
