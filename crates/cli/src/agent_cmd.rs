//! `georep agent`: the per-region sidecar. The same flags in a pod and under `georep up`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use topology::{RegionId, Topology};
use tunnel::Address;

use crate::exit::Failure;

/// Flags of `georep agent`; the defaults are the pod's layout.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The topology file.
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// This agent's region (a name from the topology).
    #[arg(long, value_name = "NAME")]
    region: String,
    /// This region's Redis.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6379")]
    redis: SocketAddr,
    /// This region's Redis's Unix socket (its `unixsocket`): the primary endpoint forwards to
    /// the local primary on it instead of --redis, without the TCP/IP stack. The agent's own
    /// connections to Redis stay on --redis. Off unless given.
    #[arg(long, value_name = "PATH")]
    redis_socket: Option<PathBuf>,
    /// Tunnel key file; repeat during a key rotation (the first is used to dial).
    #[arg(
        long = "key",
        value_name = "FILE",
        default_value = "/etc/georep/tunnel/key"
    )]
    keys: Vec<PathBuf>,
    /// Directory holding admin.password, replication.password and app.password.
    #[arg(long, value_name = "DIR", default_value = "/etc/georep/credentials")]
    credentials: PathBuf,
    /// Where this region's tunnel server listens.
    #[arg(long, value_name = "ADDR", default_value = "[0.0.0.0]:56379")]
    tunnel_listen: Address,
    /// HTTP for /metrics, /healthz and /readyz (open: scrapers and probes).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9121")]
    http: SocketAddr,
    /// The control API (/status, POST /failover, POST /promote), guarded by an operator token;
    /// bind it to 127.0.0.1 (reach it with `kubectl port-forward`). Needs --operator-token-file.
    #[arg(long, value_name = "ADDR")]
    control: Option<SocketAddr>,
    /// A file holding an operator token the control API accepts; repeat during a rotation.
    #[arg(long = "operator-token-file", value_name = "FILE")]
    operator_token_files: Vec<PathBuf>,
    /// Our tunnel client to region i listens on 127.0.0.1:(BASE + i).
    #[arg(long, value_name = "BASE", default_value_t = topology::POD_PEER_PORT_BASE)]
    peer_port_base: u16,
    /// The primary reaches region i at 127.0.0.1:(BASE + i) (default: --peer-port-base).
    #[arg(long, value_name = "BASE")]
    announce_port_base: Option<u16>,
    /// Dial REGION's tunnel at ADDR instead of its topology endpoint (repeatable).
    #[arg(long = "peer-endpoint", value_name = "REGION=ADDR")]
    peer_endpoints: Vec<String>,
    /// Accept tunnel key files shorter than 32 bytes.
    #[arg(long)]
    allow_short_key: bool,
    /// Where the agent keeps its state file (the highest epoch and primary it has learned);
    /// put it on the volume that holds Redis's data.
    #[arg(long, value_name = "DIR", default_value = "/data/georep")]
    state_dir: PathBuf,
    /// In a pod: the Redis container's redis.conf (a volume shared with it), rewritten in this
    /// region's role whenever the agent learns a new primary, so a restarted Redis starts as
    /// what it is now.
    #[arg(long, value_name = "FILE")]
    redis_conf: Option<PathBuf>,
    /// Where applications reach the current primary (forwarded to the local Redis or through
    /// the tunnel to the primary region). Off unless given.
    #[arg(long, value_name = "ADDR")]
    primary_endpoint: Option<SocketAddr>,
    /// How long the primary endpoint's forwarding thread keeps polling after traffic before it
    /// sleeps (e.g. 100us). Cuts the latency a request pays for the extra hop (two wake-ups of
    /// the thread) for CPU time while traffic is dense; the window shrinks to nothing when
    /// traffic is sparse, and polling lets other runnable threads go first. 0: sleep at once.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = topology::parse_duration,
        default_value = "0",
        env = "GEOREP_ENDPOINT_BUSY_POLL"
    )]
    endpoint_busy_poll: Duration,
    /// The Sentinel-compatible discovery port. Off unless given.
    #[arg(long, value_name = "ADDR")]
    sentinel: Option<SocketAddr>,
    /// The address the Sentinel port gives applications for this region's Redis, when they
    /// cannot dial --redis (in a pod: the `redis` Service) [default: --redis].
    #[arg(long, value_name = "HOST:PORT")]
    announce_redis: Option<agent::AnnounceAddr>,
    /// The address the Sentinel port gives applications for the primary endpoint (in a pod: the
    /// `georep-primary` Service) [default: --primary-endpoint, on 127.0.0.1 if it listens on all].
    #[arg(long, value_name = "HOST:PORT")]
    announce_endpoint: Option<agent::AnnounceAddr>,
    /// Run the region's replication relay here (the topology must have `[relay]`); the local
    /// Redis, when a replica, replicates from it. Off unless given.
    #[arg(long, value_name = "ADDR", requires = "relay_tunnel_listen")]
    relay_listen: Option<SocketAddr>,
    /// Where the relay's tunnel server listens (other regions' relays dial it).
    #[arg(long, value_name = "ADDR", requires = "relay_listen")]
    relay_tunnel_listen: Option<Address>,
    /// Dial REGION's relay tunnel at ADDR (repeatable; one per other region with --relay-listen).
    #[arg(long = "relay-peer-endpoint", value_name = "REGION=ADDR")]
    relay_peer_endpoints: Vec<String>,
    /// The relay's store: its RDB and stream segments [default: <state-dir>/relay]. In a pod,
    /// a volume of its own.
    #[arg(long, value_name = "DIR", requires = "relay_listen")]
    relay_dir: Option<PathBuf>,
}

impl AgentArgs {
    fn into_config(self) -> anyhow::Result<agent::AgentConfig> {
        let topology = Topology::load(&self.topology)?;
        let region = topology
            .region(&self.region)
            .map(|r| r.index)
            .ok_or_else(|| {
                let names: Vec<&str> = topology.regions.iter().map(|r| r.name.as_str()).collect();
                anyhow!(
                    "--region {:?} is not in {} (regions: {})",
                    self.region,
                    self.topology.display(),
                    names.join(", ")
                )
            })?;
        let keys = self
            .keys
            .iter()
            .map(|p| tunnel::keyfile::load(p, self.allow_short_key))
            .collect::<Result<Vec<_>, _>>()?;
        let passwords = agent::Passwords::load(&self.credentials)?;
        if self.control.is_some() && self.operator_token_files.is_empty() {
            anyhow::bail!(
                "--control needs at least one --operator-token-file: the control API changes \
                 the primary and is never served without a credential (make one with \
                 `georep secrets init`)"
            );
        }
        if self.control.is_none() && !self.operator_token_files.is_empty() {
            anyhow::bail!("--operator-token-file is only used with --control ADDR");
        }
        let operator_tokens = self
            .operator_token_files
            .iter()
            .map(|p| agent::client::Token::read(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut peer_endpoints = topology
            .regions
            .iter()
            .map(|r| {
                r.endpoint
                    .parse::<Address>()
                    .with_context(|| format!("endpoint of region {}", r.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for o in &self.peer_endpoints {
            let (name, addr) = o
                .split_once('=')
                .ok_or_else(|| anyhow!("--peer-endpoint {o:?}: expected REGION=ADDR"))?;
            let r = topology
                .region(name)
                .ok_or_else(|| anyhow!("--peer-endpoint: no region {name:?}"))?;
            peer_endpoints[r.index.index()] = addr
                .parse()
                .with_context(|| format!("--peer-endpoint {o}"))?;
        }
        let relay = relay_placement(&self, &topology, region)?;
        if usize::from(self.peer_port_base) + topology.regions.len() > usize::from(u16::MAX) {
            anyhow::bail!(
                "--peer-port-base {} leaves no room for {} regions",
                self.peer_port_base,
                topology.regions.len()
            );
        }
        Ok(agent::AgentConfig {
            region,
            redis: self.redis,
            redis_socket: self.redis_socket,
            keys,
            passwords,
            tunnel_listen: self.tunnel_listen,
            http: self.http,
            control: self.control,
            operator_tokens,
            peer_port_base: self.peer_port_base,
            announce_port_base: self.announce_port_base.unwrap_or(self.peer_port_base),
            peer_endpoints,
            heartbeat_every: Duration::from_millis(100),
            reconcile_every: Duration::from_secs(1),
            state_dir: self.state_dir,
            redis_conf: self.redis_conf,
            primary_endpoint: self.primary_endpoint,
            endpoint_busy_poll: self.endpoint_busy_poll,
            sentinel: self.sentinel,
            announce_redis: self.announce_redis,
            announce_endpoint: self.announce_endpoint,
            topology,
            relay,
        })
    }
}

/// The relay flags, checked against the topology's `[relay]`.
fn relay_placement(
    args: &AgentArgs,
    topology: &Topology,
    region: RegionId,
) -> anyhow::Result<Option<agent::RelayPlacement>> {
    let (Some(listen), Some(tunnel_listen)) = (args.relay_listen, &args.relay_tunnel_listen) else {
        if !args.relay_peer_endpoints.is_empty() {
            anyhow::bail!("--relay-peer-endpoint is only used with --relay-listen");
        }
        if topology.relay.is_some() {
            tracing::warn!(
                "the topology has [relay] but this agent has no --relay-listen: no relay runs \
                 here, Redis replicates directly through the tunnels"
            );
        }
        return Ok(None);
    };
    let Some(settings) = &topology.relay else {
        anyhow::bail!(
            "--relay-listen needs a [relay] section in {} (it sets the relay's retention)",
            topology.source.display()
        );
    };
    let mut peer_endpoints: Vec<Option<Address>> = vec![None; topology.regions.len()];
    for o in &args.relay_peer_endpoints {
        let (name, addr) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("--relay-peer-endpoint {o:?}: expected REGION=ADDR"))?;
        let r = topology
            .region(name)
            .ok_or_else(|| anyhow!("--relay-peer-endpoint: no region {name:?}"))?;
        peer_endpoints[r.index.index()] = Some(
            addr.parse()
                .with_context(|| format!("--relay-peer-endpoint {o}"))?,
        );
    }
    let mut endpoints = Vec::new();
    for (i, e) in peer_endpoints.into_iter().enumerate() {
        match e {
            Some(a) => endpoints.push(a),
            None if i == region.index() => endpoints.push(tunnel_listen.clone()),
            None => anyhow::bail!(
                "--relay-listen: no --relay-peer-endpoint for region {}",
                topology.regions[i].name
            ),
        }
    }
    Ok(Some(agent::RelayPlacement {
        listen,
        tunnel_listen: tunnel_listen.clone(),
        peer_endpoints: endpoints,
        dir: args
            .relay_dir
            .clone()
            .unwrap_or_else(|| args.state_dir.join("relay")),
        retention: agent::RelayPlacement::retention_of(settings),
        compression: agent::RelayPlacement::compression_of(settings),
    }))
}

pub(crate) fn main(args: AgentArgs) -> Result<(), Failure> {
    let config = args.into_config().map_err(Failure::usage)?;
    crate::runtime()?
        .block_on(async {
            let shutdown =
                crate::signal::shutdown_on_signals().context("cannot install signal handlers")?;
            agent::run(config, shutdown).await?;
            Ok::<_, anyhow::Error>(())
        })
        .map_err(Failure::runtime)
}
