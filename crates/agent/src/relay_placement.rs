//! The region's replication relay (`[relay]` in the topology), run inside the agent.
//!
//! ```text
//!  primary region                               replica region
//!  redis ──► relay ◄── relay tunnel server ◄══ WAN ══ tunnel client ◄── relay ◄── redis (replicaof)
//! ```
//!
//! In the primary region the relay replicates from the local Redis; in every other region it
//! replicates, through a tunnel client of its own, from the primary region's relay, and the local
//! Redis replicates from the local relay. One WAN replication stream per region, held on disk at
//! both ends, so a cut longer than Redis's in-memory backlog heals with a partial resync.
//!
//! Why in the agent and not a process of its own: the agent is the one that knows the primary,
//! and it must re-point the relay at every change of it, at the moment it records the new epoch;
//! in the same process that is a `watch` channel ([`follow`]), with no second control API, no
//! process to supervise and no second place to configure credentials.
//!
//! Fencing is unchanged: a fenced primary accepts writes only with a replica attached, and its
//! relay is such a replica, so the relay follows the local Redis only once the agent has lifted
//! the fence (an isolated old primary's relay stays idle, and the old primary stays read-only).
//!
//! A relay that cannot store (disk full) is bypassed until it stores again: see
//! [`crate::relay_fallback`]. Its followers are re-pointed by [`RelayHandle::route`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tunnel::{Address, Listener, Mode, TunnelConfig, TunnelMetrics};

use crate::config::AgentConfig;
use crate::credentials::REPLICATION_USER;
use crate::relay_fallback::Fallback;
use crate::shared::{ClusterView, Shared};
use crate::shutdown::Shutdown;
use crate::status::{Link, RegionStatus};
use topology::RegionId;

/// Segment size of the embedded relay's store: retention deletes whole segments.
const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Where the region's relay listens and how it reaches the other regions' relays.
#[derive(Debug, Clone)]
pub struct RelayPlacement {
    /// The relay's listener: our Redis (when a replica) and our relay tunnel server connect here.
    pub listen: SocketAddr,
    /// Where the relay's tunnel server listens (other regions' relays dial it).
    pub tunnel_listen: Address,
    /// Where to dial each region's relay tunnel server, by region index (ours unused).
    pub peer_endpoints: Vec<Address>,
    /// The store's directory.
    pub dir: PathBuf,
    /// How much stream to keep (the topology's `relay.retention`).
    pub retention: relay::Retention,
    /// The stream between relays (the topology's `relay.compression`).
    pub compression: relay::Compression,
}

impl RelayPlacement {
    /// `relay.retention` as the relay takes it.
    pub fn retention_of(settings: &topology::RelaySettings) -> relay::Retention {
        match settings.retention {
            topology::RelayRetention::Age(d) => relay::Retention::Age(d),
            topology::RelayRetention::Bytes(b) => relay::Retention::Bytes(b),
        }
    }

    /// `relay.compression` as the relay takes it.
    pub fn compression_of(settings: &topology::RelaySettings) -> relay::Compression {
        match settings.compression {
            topology::RelayCompression::None => relay::Compression::None,
            topology::RelayCompression::Zstd => relay::Compression::Zstd,
        }
    }
}

/// The running relay, as the rest of the agent sees it.
#[derive(Debug, Clone)]
pub(crate) struct RelayHandle {
    pub(crate) upstream: relay::UpstreamHandle,
    pub(crate) metrics: relay::RelayMetrics,
    pub(crate) gauges: FallbackGauges,
    /// Our region and our Redis (the primary region's relay follows it).
    me: RegionId,
    redis: SocketAddr,
    /// Our relay tunnel client towards region `i`'s relay listens here.
    via: Vec<Option<SocketAddr>>,
    /// Our Redis tunnel client towards region `i`'s Redis: where our relay follows the primary's
    /// Redis while the primary region's relay is bypassed.
    direct: Vec<SocketAddr>,
    retention: relay::Retention,
    compression: relay::Compression,
}

/// `georep_relay_bypassed` and `georep_relay_disk_full`, set by the control round.
#[derive(Debug, Clone, Default)]
pub(crate) struct FallbackGauges {
    pub(crate) bypassed: prometheus_client::metrics::gauge::Gauge,
    pub(crate) disk_full: prometheus_client::metrics::gauge::Gauge,
}

impl RelayHandle {
    /// Where our relay replicates from, given the view and the fallback: the local Redis (an
    /// unfenced primary only), else the primary region's relay through our relay tunnel client,
    /// or the primary's Redis through our Redis tunnel client while that relay is bypassed. In a
    /// replica region, also where our Redis goes while our own relay is bypassed.
    pub(crate) fn route(&self, view: &ClusterView, fallback: Fallback) -> Option<SocketAddr> {
        upstream_for(view, self.me, self.redis, &self.via, &self.direct, fallback)
    }
}

/// The relay as `/status` reports it: what it follows and the outage it can still absorb.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RelayStatus {
    /// `redis` (the local primary), the region whose relay it follows, or `<region>/redis` while
    /// that region's relay is bypassed and it follows that region's Redis; `none` while idle.
    pub upstream: String,
    /// Whether it is streaming from its upstream.
    pub upstream_connected: bool,
    /// Last replication offset stored.
    pub offset: u64,
    /// Oldest replication offset still held: a replica at or past it resumes with a partial
    /// resync.
    pub oldest_offset: u64,
    /// Age of the oldest byte held, seconds: the outage a replica of this relay can still absorb
    /// without a full resync.
    pub horizon_seconds: u64,
    /// Bytes of stream (and RDB) held on disk.
    pub disk_bytes: u64,
    /// The configured retention, in seconds (`21600s`) or bytes (`2147483648B`).
    pub retention: String,
    /// The configured compression between relays (`none`, `zstd`).
    #[serde(default)]
    pub compression: String,
    /// Uncompressed / wire bytes over this relay's compressed links so far; `None` before any.
    #[serde(default)]
    pub compression_ratio: Option<f64>,
    /// The relay cannot store: its last write failed for want of space.
    #[serde(default)]
    pub disk_full: bool,
    /// What replicates from this relay is pointed past it (it cannot store): in a replica
    /// region, the local Redis follows the relay's upstream; in the primary region, the other
    /// regions' relays follow the primary's Redis.
    #[serde(default)]
    pub bypassed: bool,
}

/// What was bound at start, before any task runs.
pub(crate) struct Bound {
    relay: relay::Relay,
    tunnel_server: Listener,
    clients: Vec<(RegionId, Listener)>,
}

/// Binds the relay, its tunnel server and one loopback tunnel client per other region.
pub(crate) async fn bind(
    config: &AgentConfig,
    placement: &RelayPlacement,
    registry: &mut Registry,
) -> Result<(Bound, RelayHandle), crate::AgentError> {
    let bind = |what: &'static str, addr: String| {
        move |source| crate::AgentError::Bind { what, addr, source }
    };
    let password = config.passwords.replication.expose().to_owned();
    let replication = Some((REPLICATION_USER.to_owned(), password.clone()));
    let relay_config = relay::Config {
        upstream: None,
        upstream_auth: replication.clone(),
        listen: placement.listen,
        credential: Some(relay::downstream::Credential {
            user: REPLICATION_USER.to_owned(),
            password,
        }),
        dir: placement.dir.clone(),
        retention: placement.retention,
        segment_size: SEGMENT_SIZE,
        compression: placement.compression,
        // Fresh RDBs come from our own Redis (the upstream when we are the primary region, the
        // relay's replica otherwise): no WAN traffic, one fork of it per refresh. The same text
        // as the upstream `follow` sets in the primary region, which is how the relay tells
        // the two cases apart.
        local_redis: Some(relay::LocalRedis {
            addr: config.redis.to_string(),
            auth: replication,
        }),
    };
    std::fs::create_dir_all(&placement.dir).map_err(bind(
        "relay store directory",
        placement.dir.display().to_string(),
    ))?;
    let metrics = relay::RelayMetrics::register(registry.sub_registry_with_prefix("relay"));
    let gauges = FallbackGauges::default();
    registry.register(
        "relay_bypassed",
        "1 while this region's relay cannot store and what replicates from it is pointed past it \
         (a replica region's Redis at the relay's upstream; the other regions' relays at the \
         primary's Redis)",
        gauges.bypassed.clone(),
    );
    registry.register(
        "relay_disk_full",
        "1 while this region's relay cannot store: its last write failed for want of space",
        gauges.disk_full.clone(),
    );
    let relay = relay::Relay::bind(relay_config, metrics.clone())
        .await
        .map_err(|e| crate::AgentError::Bind {
            what: "relay",
            addr: placement.listen.to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let tunnel_server = Listener::bind(&placement.tunnel_listen)
        .await
        .map_err(bind("relay tunnel", placement.tunnel_listen.to_string()))?;
    let (clients, via) = bind_clients(config).await?;
    let handle = RelayHandle {
        upstream: relay.upstream(),
        metrics,
        gauges,
        me: config.region,
        redis: config.redis,
        direct: config
            .topology
            .regions
            .iter()
            .map(|r| config.peer_addr(r.index))
            .collect(),
        via,
        retention: placement.retention,
        compression: placement.compression,
    };
    Ok((
        Bound {
            relay,
            tunnel_server,
            clients,
        },
        handle,
    ))
}

/// One loopback tunnel client per other region, and where each listens, by region index (`None`
/// for ours).
async fn bind_clients(
    config: &AgentConfig,
) -> Result<(Vec<(RegionId, Listener)>, Vec<Option<SocketAddr>>), crate::AgentError> {
    let mut clients = Vec::new();
    let mut via = vec![None; config.topology.regions.len()];
    for i in config.other_regions() {
        // In-process only (our relay dials it): any free loopback port.
        let addr = Address::Ip(SocketAddr::from(([127, 0, 0, 1], 0)));
        let l = Listener::bind(&addr)
            .await
            .map_err(|source| crate::AgentError::Bind {
                what: "relay peer",
                addr: addr.to_string(),
                source,
            })?;
        via[i.index()] = l.local_addr().ok().and_then(|a| a.parse().ok());
        clients.push((i, l));
    }
    Ok((clients, via))
}

/// Spawns the relay, its tunnels and the task that re-points it at every change of the view.
pub(crate) fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    bound: Bound,
    shared: &Arc<Shared>,
    tunnel_metrics: &TunnelMetrics,
    shutdown: &Shutdown,
) {
    let c = &shared.config;
    let Some(placement) = &c.relay else { return };
    let Bound {
        relay,
        tunnel_server,
        clients,
    } = bound;
    tracing::info!(
        listen = %placement.listen,
        tunnel = %placement.tunnel_listen,
        dir = %placement.dir.display(),
        retention = %placement.retention,
        "replication relay ready"
    );
    let mut inbound =
        TunnelConfig::new(Mode::Decrypt, Address::Ip(placement.listen), c.keys.clone());
    inbound.max_connections = None;
    inbound.shutdown_grace = Duration::from_secs(1);
    tasks.spawn(crate::keep_tunnel(
        inbound,
        tunnel_server,
        tunnel_metrics.for_link("relay-inbound"),
        shutdown.clone(),
    ));
    for (i, listener) in clients {
        let mut out = TunnelConfig::new(
            Mode::Encrypt,
            placement.peer_endpoints[i.index()].clone(),
            c.keys.clone(),
        );
        out.max_connections = None;
        out.shutdown_grace = Duration::from_secs(1);
        let name = format!("relay-{}", c.topology.regions[i].name);
        tasks.spawn(crate::keep_tunnel(
            out,
            listener,
            tunnel_metrics.for_link(&name),
            shutdown.clone(),
        ));
    }
    tasks.spawn(relay.run(shutdown.receiver()));
    if let Some(handle) = shared.relay.get().cloned() {
        tasks.spawn(follow(
            handle,
            shared.watch_view(),
            shared.fallback.subscribe(),
            shutdown.clone(),
        ));
    }
}

/// Where the relay should replicate from, given the view and the fallback.
fn upstream_for(
    view: &ClusterView,
    me: RegionId,
    redis: SocketAddr,
    via: &[Option<SocketAddr>],
    direct: &[SocketAddr],
    fallback: Fallback,
) -> Option<SocketAddr> {
    let primary = view.known.primary.index();
    if view.known.primary == me {
        // Only an unfenced primary: the relay would otherwise be the replica that lets a fenced
        // Redis take writes.
        view.fenced.is_none().then_some(redis)
    } else if fallback.primary_relay_bypassed {
        // What a Redis replica does without relays: follow the primary's Redis (through our
        // Redis tunnel, the primary region's relay being full).
        direct.get(primary).copied()
    } else {
        via.get(primary).copied().flatten()
    }
}

/// Re-points the relay at every change of primary or fence, the moment the view changes (a
/// planned switchover changes it when it records the new epoch, before the old primary demotes),
/// and at every change of the fallback (the primary region's relay full, then storing again).
async fn follow(
    handle: RelayHandle,
    mut view: watch::Receiver<ClusterView>,
    mut fallback: watch::Receiver<Fallback>,
    mut shutdown: Shutdown,
) {
    loop {
        let upstream = handle.route(&view.borrow_and_update(), *fallback.borrow_and_update());
        handle.upstream.set(upstream.map(|a| a.to_string()));
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            changed = fallback.changed() => if changed.is_err() { return },
            _ = shutdown.wait() => return,
        }
    }
}

/// Adds the relay to a round's status; in a replica region, a relay cut off from the primary
/// region's relay is the region's replication link being down (our Redis's own link, to the
/// local relay, stays up).
pub(crate) fn report(shared: &Shared, status: &mut RegionStatus) {
    let Some(h) = shared.relay.get() else { return };
    let c = &shared.config;
    let view = shared.view();
    let fallback = *shared.fallback.borrow();
    let primary = &c.topology.regions[view.known.primary].name;
    let upstream = match h.upstream.get() {
        None => "none".to_owned(),
        Some(_) if view.known.primary == c.region => "redis".to_owned(),
        Some(_) if fallback.primary_relay_bypassed => format!("{primary}/redis"),
        Some(_) => primary.clone(),
    };
    let m = &h.metrics;
    let gauge = |g: &prometheus_client::metrics::gauge::Gauge| g.get().max(0) as u64;
    let connected = m.upstream_connected.get() == 1;
    // While our Redis bypasses the relay, its own link is the region's link.
    let through_relay = !fallback.bypassed;
    if view.known.primary != c.region && through_relay && !connected && status.link == Link::Up {
        status.link = Link::Down;
        status.link_error = Some(format!(
            "relay: not streaming from {upstream}'s relay (the local Redis follows the local relay)"
        ));
    }
    status.relay = Some(RelayStatus {
        upstream,
        upstream_connected: connected,
        offset: gauge(&m.upstream_offset),
        oldest_offset: gauge(&m.oldest_offset),
        horizon_seconds: gauge(&m.oldest_age_seconds),
        disk_bytes: gauge(&m.disk_bytes),
        retention: h.retention.to_string(),
        compression: h.compression.to_string(),
        compression_ratio: m.compression_ratio(),
        disk_full: h.upstream.disk_full(),
        bypassed: fallback.bypassed,
    });
}

/// The relays' lines of `georep status` (empty without relays): what each follows, whether it
/// streams, its horizon (the age of the oldest byte it holds: in the primary region, how long a
/// replica region can be cut off and still resume without a full resync) and what it holds.
pub(crate) fn table(rows: &[crate::client::Row]) -> String {
    let relays: Vec<(&str, &RelayStatus)> = rows
        .iter()
        .filter_map(|r| Some((r.name.as_str(), r.status.as_ref().ok()?.relay.as_ref()?)))
        .collect();
    if relays.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n{:<16} {:<24} {:<9} {:<15} {:>10} {:>12} {:<10} {}\n",
        "RELAY", "UPSTREAM", "STREAMING", "STORE", "HORIZON", "HELD", "RETENTION", "WAN"
    );
    for (name, r) in relays {
        out.push_str(&format!(
            "{:<16} {:<24} {:<9} {:<15} {:>10} {:>12} {:<10} {}\n",
            name,
            r.upstream,
            if r.upstream_connected { "yes" } else { "no" },
            match (r.disk_full, r.bypassed) {
                (true, true) => "full, bypassed",
                // Stores again, still bypassed until it holds what its followers have.
                (false, true) => "bypassed",
                (true, false) => "full",
                (false, false) => "ok",
            },
            human_duration(r.horizon_seconds),
            human_bytes(r.disk_bytes),
            match r.retention.parse::<relay::Retention>() {
                Ok(relay::Retention::Age(d)) => human_duration(d.as_secs()),
                Ok(relay::Retention::Bytes(b)) => human_bytes(b),
                Err(_) => r.retention.clone(),
            },
            match (r.compression.as_str(), r.compression_ratio) {
                ("zstd", Some(ratio)) => format!("zstd {ratio:.1}x"),
                ("zstd", None) => "zstd".to_owned(),
                _ => "plain".to_owned(),
            },
        ));
    }
    out
}

fn human_duration(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_view::Known;

    fn view(primary: RegionId, fenced: bool) -> ClusterView {
        ClusterView {
            known: Known { epoch: 2, primary },
            fenced: fenced.then(|| "starting".to_owned()),
            changing: false,
        }
    }

    const DIRECT: [&str; 3] = ["127.0.0.1:30000", "127.0.0.1:30001", "127.0.0.1:30002"];

    /// Region 0's relay's upstream when `primary` is the primary.
    fn upstream(primary: usize, fenced: bool, fallback: Fallback) -> Option<String> {
        let redis: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let via = [
            None,
            Some("127.0.0.1:40001".parse().unwrap()),
            Some("127.0.0.1:40002".parse().unwrap()),
        ];
        let direct: Vec<SocketAddr> = DIRECT.iter().map(|a| a.parse().unwrap()).collect();
        let v = view(RegionId::new(primary), fenced);
        upstream_for(&v, RegionId::new(0), redis, &via, &direct, fallback).map(|a| a.to_string())
    }

    #[test]
    fn the_relay_follows_the_local_primary_or_the_primary_regions_relay() {
        let normal = Fallback::default();
        assert_eq!(
            upstream(0, false, normal).as_deref(),
            Some("127.0.0.1:7000")
        );
        assert_eq!(
            upstream(2, false, normal).as_deref(),
            Some("127.0.0.1:40002")
        );
        // A fenced replica region still pulls (the fence concerns the primary's writes).
        assert_eq!(
            upstream(1, true, normal).as_deref(),
            Some("127.0.0.1:40001")
        );
    }

    #[test]
    fn past_a_full_primary_region_relay_the_relay_follows_the_primarys_redis() {
        let past = Fallback {
            bypassed: false,
            primary_relay_bypassed: true,
        };
        assert_eq!(upstream(2, false, past).as_deref(), Some(DIRECT[2]));
        // Our own relay being bypassed changes nothing for the relay itself.
        let ours = Fallback {
            bypassed: true,
            primary_relay_bypassed: false,
        };
        assert_eq!(upstream(2, false, ours).as_deref(), Some("127.0.0.1:40002"));
        // The primary region's relay follows its Redis, and only unfenced.
        assert_eq!(upstream(0, false, past).as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(upstream(0, true, past), None);
    }

    #[test]
    fn the_status_table_lists_relays_only_when_there_are_some() {
        use crate::client::Row;
        let mut status = RegionStatus {
            name: "eu".into(),
            ..RegionStatus::default()
        };
        let row = |s: &RegionStatus| Row {
            name: s.name.clone(),
            status: Ok(s.clone()),
        };
        assert_eq!(table(&[row(&status)]), "");
        status.relay = Some(RelayStatus {
            upstream: "us".into(),
            upstream_connected: true,
            horizon_seconds: 3725,
            disk_bytes: 3 << 30,
            retention: "21600s".into(),
            compression: "zstd".into(),
            compression_ratio: Some(6.96),
            ..RelayStatus::default()
        });
        let t = table(&[row(&status)]);
        let line = t.lines().last().unwrap();
        assert!(line.starts_with("eu "), "{t}");
        for part in [
            "us",
            "yes",
            " ok ",
            "62m05s",
            "3.0GiB",
            "6h00m",
            "zstd 7.0x",
        ] {
            assert!(line.contains(part), "{part} missing: {t}");
        }
        let relay = status.relay.as_mut().unwrap();
        relay.disk_full = true;
        relay.bypassed = true;
        relay.upstream_connected = false;
        let t = table(&[row(&status)]);
        assert!(
            t.lines()
                .last()
                .unwrap()
                .contains(" no        full, bypassed "),
            "{t}"
        );
        let relay = status.relay.as_mut().unwrap();
        relay.disk_full = false;
        relay.upstream = "us/redis".into();
        let t = table(&[row(&status)]);
        let line = t.lines().last().unwrap();
        assert!(
            line.contains(" us/redis ") && line.contains(" bypassed "),
            "{t}"
        );
    }

    #[test]
    fn a_fenced_primary_has_an_idle_relay() {
        assert_eq!(upstream(0, true, Fallback::default()), None);
    }
}
