//! A running local cluster: Redis and agent processes per region, WAN links between regions,
//! a supervisor that restarts what dies, and the control API behind `georep link`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::Passwords;
use region_spec::AgentFlags;
use tokio::sync::{watch, Mutex};
use topology::{RegionId, Topology};
use wan::LinkHandle;

use crate::layout::{self, Layout};
use crate::process::{Spec, Supervised};
use crate::regions::{pids, set_cut, Links, Pids, RegionProcs};
use crate::wan_links::{self, Stream};

/// What `georep up` needs besides the topology.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cluster.
    pub topology: Topology,
    /// The `georep` binary, to run the agents.
    pub georep: PathBuf,
    /// The `redis-server` binary.
    pub redis_server: PathBuf,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// The data directory is in use, leftovers would not stop, or a port is taken.
    #[error(transparent)]
    Claim(#[from] crate::claim::ClaimError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A Redis did not come up.
    #[error("redis-server for {region} did not become ready: {why} (log: {log})")]
    RedisNotReady {
        /// Region.
        region: String,
        /// Why.
        why: String,
        /// Its log file.
        log: PathBuf,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpError {
    let what = what.into();
    move |source| UpError::Io { what, source }
}

/// A running local deployment.
pub struct Cluster {
    topology: Arc<Topology>,
    layout: Layout,
    passwords: Passwords,
    regions: Arc<Mutex<Vec<RegionProcs>>>,
    links: Links,
    stop_tx: watch::Sender<bool>,
    supervisor: tokio::task::JoinHandle<()>,
    georep: PathBuf,
    redis_server: PathBuf,
    control: Mutex<Option<tokio::task::JoinHandle<()>>>,
    claim: crate::claim::Claim,
}

impl Cluster {
    /// Prepares the data directory, starts the WAN links, every Redis, then every agent.
    pub async fn start(options: Options) -> Result<Self, UpError> {
        let Options {
            topology,
            georep,
            redis_server,
        } = options;
        let layout = Layout::new(&topology.local.data_dir).map_err(io("data directory"))?;
        let claim = crate::claim::Claim::take(&layout, &topology).await?;
        let passwords = layout
            .prepare(&topology)
            .map_err(io(format!("preparing {}", layout.root.display())))?;
        let (stop_tx, stop_rx) = watch::channel(false);

        let mut links = Vec::new();
        wan_links::spawn(&topology, Stream::Redis, &mut links, &stop_rx)
            .await
            .map_err(io("WAN link listener"))?;
        if topology.relay.is_some() {
            wan_links::spawn(&topology, Stream::Relay, &mut links, &stop_rx)
                .await
                .map_err(io("relay WAN link listener"))?;
        }

        let topology = Arc::new(topology);
        let mut regions = Vec::new();
        for r in &topology.regions {
            let redis = Supervised::start(redis_spec(
                &topology,
                &layout,
                &passwords,
                &redis_server,
                r.index,
            )?)
            .map_err(io(format!("starting redis-server for {}", r.name)))?;
            regions.push(redis);
        }
        for r in &topology.regions {
            wait_redis_ready(&topology, &layout, &passwords, r.index).await?;
        }
        let mut procs = Vec::new();
        for (r, redis) in topology.regions.iter().zip(regions) {
            let flags = agent_flags(&topology, &layout, r.index);
            let agent = Supervised::start(agent_spec(&layout, &georep, &flags))
                .map_err(io(format!("starting the agent for {}", r.name)))?;
            procs.push(RegionProcs {
                redis,
                agent,
                held: false,
            });
        }
        let regions = Arc::new(Mutex::new(procs));
        let supervisor = tokio::spawn(supervise(
            Arc::clone(&topology),
            layout.clone(),
            passwords.clone(),
            redis_server.clone(),
            Arc::clone(&regions),
        ));
        let links = Arc::new(links);
        let control = Mutex::new(None);
        let cluster = Self {
            topology,
            layout,
            passwords,
            regions,
            links,
            stop_tx,
            supervisor,
            georep,
            redis_server,
            control,
            claim,
        };
        cluster.serve_control(stop_rx).await?;
        Ok(cluster)
    }

    /// The topology being run.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The data directory layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The emulated link carrying region `from`'s Redis stream towards region `to`.
    pub fn link(&self, from: usize, to: usize) -> Option<&LinkHandle> {
        self.wan_link(from, to, Stream::Redis)
    }

    /// The emulated link carrying region `from`'s relay towards region `to`'s (`[relay]`).
    pub fn relay_link(&self, from: usize, to: usize) -> Option<&LinkHandle> {
        self.wan_link(from, to, Stream::Relay)
    }

    fn wan_link(&self, from: usize, to: usize, stream: Stream) -> Option<&LinkHandle> {
        self.links
            .iter()
            .find(|l| (l.from, l.to, l.stream) == (from, to, stream))
            .map(|l| &l.handle)
    }

    /// Cuts (or heals) both directions between two regions.
    pub fn set_cut(&self, a: usize, b: usize, cut: bool) {
        set_cut(&self.links, a, b, cut);
    }

    /// Process ids per region.
    pub async fn pids(&self) -> Vec<Pids> {
        pids(&self.topology, &self.regions).await
    }

    /// Restarts one region's agent with other tunnel keys (the first dials): a local key rotation,
    /// or a deliberately wrong key to see how a region with a mismatched key looks.
    pub async fn restart_agent_with_keys(
        &self,
        region: usize,
        keys: &[PathBuf],
    ) -> std::io::Result<()> {
        let mut flags = agent_flags(&self.topology, &self.layout, RegionId::new(region));
        flags.keys = keys.iter().map(|k| k.display().to_string()).collect();
        let spec = agent_spec(&self.layout, &self.georep, &flags);
        let mut regions = self.regions.lock().await;
        let agent = &mut regions[region].agent;
        agent.stop(Duration::from_secs(10)).await;
        agent.set_spec(spec);
        agent.restart().await
    }

    /// Kills one region's Redis and agent with SIGKILL (a region lost at once) and keeps the
    /// supervisor from restarting them until [`Cluster::start_region`].
    pub async fn kill_region(&self, region: usize) {
        let mut regions = self.regions.lock().await;
        let r = &mut regions[region];
        r.held = true;
        for p in [&mut r.redis, &mut r.agent] {
            if let Some(pid) = p.pid() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = p.wait_exit(Duration::from_secs(10)).await;
        }
    }

    /// Starts a region killed by [`Cluster::kill_region`] again (redis.conf regenerated from its
    /// agent's state file, as after any restart), and lets the supervisor watch it again.
    pub async fn start_region(&self, region: usize) -> Result<(), UpError> {
        let spec = redis_spec(
            &self.topology,
            &self.layout,
            &self.passwords,
            &self.redis_server,
            RegionId::new(region),
        )?;
        let mut regions = self.regions.lock().await;
        let r = &mut regions[region];
        r.redis.set_spec(spec);
        r.redis
            .restart()
            .await
            .map_err(io("restarting redis-server"))?;
        r.agent
            .restart()
            .await
            .map_err(io("restarting the agent"))?;
        r.held = false;
        Ok(())
    }

    /// Admin login for this cluster's Redis servers (tests and tools).
    pub fn admin_login(&self) -> resp::Credentials {
        self.passwords.admin_login()
    }

    /// Application login.
    pub fn app_login(&self) -> resp::Credentials {
        resp::Credentials {
            user: agent::credentials::APP_USER.into(),
            password: self.passwords.app.expose().to_owned(),
        }
    }

    /// Stops everything: agents first, then each Redis with `SHUTDOWN SAVE` (replicas before the
    /// primary), marking clean shutdowns so the next start resumes with partial resyncs.
    pub async fn stop(self) {
        self.supervisor.abort();
        let _ = self.supervisor.await;
        let mut regions = self.regions.lock().await;
        for r in regions.iter_mut() {
            r.agent.stop(Duration::from_secs(10)).await;
        }
        let primary = current_primary(&self.topology, &self.layout);
        let order = (self.topology.regions.iter().map(|r| r.index))
            .filter(|i| *i != primary)
            .chain([primary]);
        for i in order {
            let name = &self.topology.regions[i].name;
            let addr = redis_addr(&self.topology, i);
            let redis = &mut regions[i.index()].redis;
            let clean = match resp::Conn::connect(
                addr,
                Some(&self.passwords.admin_login()),
                Duration::from_secs(2),
            )
            .await
            {
                Ok(mut conn) => match conn.cmd(&["SHUTDOWN", "SAVE"]).await {
                    // Redis refuses when its final save fails (a full disk, a data directory
                    // gone) and stays up; SIGTERM would fail the same way. `SHUTDOWN NOSAVE`
                    // still flushes and fsyncs the AOF, the durable copy after an unclean stop.
                    Err(resp::Error::Command { message, .. }) => {
                        tracing::warn!(
                            region = %name,
                            error = %message,
                            "redis refused SHUTDOWN SAVE; stopping it without a final snapshot"
                        );
                        let _ = conn.cmd(&["SHUTDOWN", "NOSAVE"]).await;
                        let _ = redis.wait_exit(Duration::from_secs(5)).await;
                        false
                    }
                    // The connection closes as Redis exits; that is the expected "reply".
                    _ => {
                        matches!(redis.wait_exit(Duration::from_secs(20)).await, Some(s) if s.success())
                    }
                },
                Err(_) => false,
            };
            if clean {
                let _ = std::fs::write(self.layout.region(name).join("clean-shutdown"), b"");
                tracing::info!(region = %name, "redis stopped cleanly");
            } else {
                tracing::warn!(region = %name, "redis did not shut down cleanly; stopping it");
                redis.stop(Duration::from_secs(10)).await;
            }
        }
        drop(regions);
        self.stop_tx.send_replace(true);
        // Release every port before returning, so the cluster can start again at once.
        for link in self.links.iter() {
            link.handle.stopped().await;
        }
        if let Some(control) = self.control.lock().await.take() {
            let _ = control.await;
        }
        self.claim.release();
    }

    async fn serve_control(&self, stop: watch::Receiver<bool>) -> Result<(), UpError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.topology.local.control_port()));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(format!("control API {addr}")))?;
        let token = agent::client::Token::read(&self.layout.operator_token())
            .map_err(|e| io("reading the operator token")(std::io::Error::other(e)))?;
        let task = tokio::spawn(crate::control::serve(
            listener,
            Arc::clone(&self.topology),
            Arc::clone(&self.links),
            Arc::clone(&self.regions).into(),
            token,
            stop.into(),
        ));
        *self.control.lock().await = Some(task);
        Ok(())
    }
}

fn redis_addr(topology: &Topology, i: RegionId) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], topology.local.ports(i.index()).redis))
}

/// Writes the region's ACL file and redis.conf, and returns how to start its Redis.
fn redis_spec(
    topology: &Topology,
    layout: &Layout,
    passwords: &Passwords,
    redis_server: &std::path::Path,
    i: RegionId,
) -> Result<Spec, UpError> {
    let name = &topology.regions[i].name;
    let dir = layout.region(name);
    agent::secrets::write_private(&dir.join("users.acl"), passwords.acl_file().as_bytes())
        .map_err(io("writing users.acl"))?;
    // After a clean stop the primary's RDB carries its replication ID and offset, which its AOF
    // does not: load the RDB so replicas resume with partial resyncs; the agent turns the AOF
    // back on (Redis rewrites it from memory). After a crash, the AOF is the durable copy.
    // The region this region's agent last knew as primary (its state file), else the topology's.
    let believed = believed_primary(topology, &dir);
    let marker = dir.join("clean-shutdown");
    let append_only = i == believed && !(marker.exists() && dir.join("dump.rdb").exists());
    let _ = std::fs::remove_file(&marker);
    let conf = dir.join("redis.conf");
    let socket = layout.redis_socket(name);
    if socket.is_none() {
        tracing::warn!(
            region = %name,
            dir = %dir.display(),
            "the data directory's path is too long for a Unix socket; the primary endpoint \
             reaches this Redis over TCP (use a shorter data directory)"
        );
    }
    agent::secrets::write_private(
        &conf,
        layout::redis_conf(topology, i, believed, &dir, socket.as_deref(), append_only).as_bytes(),
    )
    .map_err(io("writing redis.conf"))?;
    Ok(Spec {
        name: format!("redis-server {name}"),
        program: redis_server.to_owned(),
        args: vec![conf.display().to_string()],
        log: dir.join("redis.stdout"),
        record: dir.join("redis.pid.json"),
    })
}

/// The primary named by a region's agent state file in `dir`, else the topology's primary.
fn believed_primary(topology: &Topology, dir: &std::path::Path) -> RegionId {
    agent::state::load(dir)
        .and_then(|s| topology.region(&s.primary).map(|r| r.index))
        .unwrap_or(topology.primary)
}

/// The primary at the highest epoch any region's state file records.
fn current_primary(topology: &Topology, layout: &Layout) -> RegionId {
    topology
        .regions
        .iter()
        .filter_map(|r| agent::state::load(&layout.region(&r.name)))
        .max_by_key(|s| s.epoch)
        .and_then(|s| topology.region(&s.primary).map(|r| r.index))
        .unwrap_or(topology.primary)
}

/// The agent's flags under `georep up`: the pod's, with ports from the local port map and peer
/// endpoints pointing at the WAN emulator.
fn agent_flags(topology: &Topology, layout: &Layout, i: RegionId) -> AgentFlags {
    let name = &topology.regions[i].name;
    let ports = topology.local.ports(i.index());
    let source =
        std::fs::canonicalize(&topology.source).unwrap_or_else(|_| topology.source.clone());
    AgentFlags {
        topology: source.display().to_string(),
        region: name.clone(),
        redis: Some(format!("127.0.0.1:{}", ports.redis)),
        redis_socket: layout.redis_socket(name).map(|p| p.display().to_string()),
        keys: vec![layout.tunnel_key().display().to_string()],
        credentials: Some(layout.secrets().display().to_string()),
        tunnel_listen: Some(format!("[127.0.0.1]:{}", ports.tunnel)),
        http: Some(format!("127.0.0.1:{}", ports.http)),
        control: Some(format!("127.0.0.1:{}", ports.control)),
        operator_token_files: vec![layout.operator_token().display().to_string()],
        peer_port_base: Some(ports.peer_base),
        announce_port_base: Some(topology.local.ports(topology.primary.index()).peer_base),
        state_dir: Some(layout.region(name).display().to_string()),
        primary_endpoint: Some(format!("127.0.0.1:{}", ports.primary_endpoint)),
        sentinel: Some(format!("127.0.0.1:{}", ports.sentinel)),
        relay_listen: topology.relay.map(|_| format!("127.0.0.1:{}", ports.relay)),
        relay_tunnel_listen: topology
            .relay
            .map(|_| format!("[127.0.0.1]:{}", ports.relay_tunnel)),
        relay_peer_endpoints: match topology.relay {
            None => Vec::new(),
            Some(_) => topology
                .regions
                .iter()
                .filter(|r| r.index != i)
                .map(|r| {
                    let wan = topology
                        .local
                        .relay_wan_listener(i.index(), r.index.index());
                    (r.name.clone(), format!("[127.0.0.1]:{wan}"))
                })
                .collect(),
        },
        peer_endpoints: topology
            .regions
            .iter()
            .filter(|r| r.index != i)
            .map(|r| {
                let wan = topology.local.wan_listener(i.index(), r.index.index());
                (r.name.clone(), format!("[127.0.0.1]:{wan}"))
            })
            .collect(),
        // No announce flags: applications run on this host and dial the 127.0.0.1 ports.
        ..AgentFlags::default()
    }
}

fn agent_spec(layout: &Layout, georep: &std::path::Path, flags: &AgentFlags) -> Spec {
    Spec {
        name: format!("agent {}", flags.region),
        program: georep.to_owned(),
        args: flags.args(),
        log: layout.region(&flags.region).join("agent.log"),
        record: layout.region(&flags.region).join("agent.pid.json"),
    }
}

async fn wait_redis_ready(
    topology: &Topology,
    layout: &Layout,
    passwords: &Passwords,
    i: RegionId,
) -> Result<(), UpError> {
    let addr = redis_addr(topology, i);
    let name = &topology.regions[i].name;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match resp::Conn::connect(addr, Some(&passwords.admin_login()), Duration::from_secs(1))
            .await
        {
            Ok(mut c) => match c.cmd(&["PING"]).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(UpError::RedisNotReady {
        region: name.clone(),
        why: last,
        log: layout.region(name).join("redis.log"),
    })
}

/// Restarts any process that exits while the cluster runs.
async fn supervise(
    topology: Arc<Topology>,
    layout: Layout,
    passwords: Passwords,
    redis_server: PathBuf,
    regions: Arc<Mutex<Vec<RegionProcs>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let mut regions = regions.lock().await;
        for (i, r) in regions.iter_mut().enumerate() {
            let name = &topology.regions[i].name;
            if r.held {
                continue;
            }
            if let Some(how) = r.redis.exited() {
                tracing::warn!(region = %name, exit = %how, "redis-server exited; restarting it");
                match redis_spec(
                    &topology,
                    &layout,
                    &passwords,
                    &redis_server,
                    RegionId::new(i),
                ) {
                    Ok(spec) => r.redis.set_spec(spec),
                    Err(e) => {
                        tracing::error!(region = %name, error = %e, "cannot prepare redis.conf")
                    }
                }
                if let Err(e) = r.redis.restart().await {
                    tracing::error!(region = %name, error = %e, "cannot restart redis-server");
                }
            }
            if let Some(how) = r.agent.exited() {
                tracing::warn!(region = %name, exit = %how, "agent exited; restarting it");
                if let Err(e) = r.agent.restart().await {
                    tracing::error!(region = %name, error = %e, "cannot restart the agent");
                }
            }
        }
    }
}
