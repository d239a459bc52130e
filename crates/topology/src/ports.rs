//! The port map: how regions address each other, in a pod and on one host.
//!
//! **In a Kubernetes pod**, region *i* is reachable from every other region's pod at
//! `127.0.0.1:(16000 + i)` ([`POD_PEER_PORT_BASE`] + *i*): the local listener of the agent's
//! tunnel client towards region *i*. One address means "region *i*'s Redis" everywhere, so
//! replicas announce themselves in terms the primary can dial back and a change of primary only
//! re-points `replicaof`.
//!
//! **On one host** (`georep up`) every region gets a block of [`LOCAL_PORT_BLOCK`] ports
//! starting at `base_port + 100 * i`:
//!
//! | port in region *i*'s block | what listens there |
//! | --- | --- |
//! | `+0` | Redis |
//! | `+1` | tunnel server (decrypts, forwards to `+0`); the WAN emulator forwards here |
//! | `+2` | agent HTTP (`/metrics`, `/healthz`, `/readyz`) |
//! | `+3` | agent control API (`/status`, `/failover`, `/promote`; operator token) |
//! | `+4` | the agent's primary endpoint (forwards to the current primary) |
//! | `+5` | the agent's Sentinel-compatible port |
//! | `+6` | the agent's replication relay (`[relay]` only): local Redis replicas and the relay tunnel |
//! | `+7` | the relay's tunnel server (decrypts, forwards to `+6`); the WAN emulator forwards here |
//! | `+10 + j` | the agent's tunnel-client listener for region *j*: its "peer port base" is `+10` |
//! | `+50 + j` | WAN-emulator listener carrying region *i*'s traffic towards region *j* |
//! | `+90 + j` | WAN-emulator listener carrying region *i*'s relay traffic towards region *j* (`[relay]` only, *j* < 9) |
//! | `+99` of region 0's block | control port of `georep up` |
//!
//! A replication connection from region *i* to region *j* therefore runs
//! `redis(i) → +10+j of block i (tunnel client) → +50+j of block i (WAN emulator, delays)
//! → +1 of block j (tunnel server) → +0 of block j (redis(j))`.

/// In a pod, region *i*'s peer listener is `127.0.0.1:(POD_PEER_PORT_BASE + i)`.
pub const POD_PEER_PORT_BASE: u16 = 16000;

/// How many regions a topology may have: one port per peer fits in each local block's
/// `+10..+49` range (and again in `+50..+89`).
pub const MAX_REGIONS: usize = 40;

/// Ports per region on one host.
pub const LOCAL_PORT_BLOCK: u16 = 100;

/// Default first port of the local port map.
pub const DEFAULT_BASE_PORT: u16 = 17000;

/// The lowest allowed `base_port`: ports below 1024 need privileges.
pub const MIN_BASE_PORT: u16 = 1024;

pub(crate) const REDIS_OFFSET: u16 = 0;
pub(crate) const TUNNEL_OFFSET: u16 = 1;
pub(crate) const HTTP_OFFSET: u16 = 2;
pub(crate) const PRIMARY_ENDPOINT_OFFSET: u16 = 4;
pub(crate) const SENTINEL_OFFSET: u16 = 5;
pub(crate) const AGENT_CONTROL_OFFSET: u16 = 3;
pub(crate) const RELAY_OFFSET: u16 = 6;
pub(crate) const RELAY_TUNNEL_OFFSET: u16 = 7;
pub(crate) const PEER_OFFSET: u16 = 10;
pub(crate) const WAN_OFFSET: u16 = 50;
pub(crate) const RELAY_WAN_OFFSET: u16 = 90;

/// How many regions a topology with `[relay]` may have: the relay's WAN listeners take
/// `+90..+98` of each local block (`+99` of region 0's block is `georep up`'s control port).
pub const MAX_RELAY_REGIONS: usize = 9;
pub(crate) const CONTROL_OFFSET: u16 = 99;

/// The port through which, inside any region's pod, region `region_index` is reached
/// (`127.0.0.1:(16000 + i)`).
///
/// # Panics
///
/// If `region_index >= MAX_REGIONS`, which no region of a parsed topology has.
pub fn pod_peer_port(region_index: usize) -> u16 {
    assert!(
        region_index < MAX_REGIONS,
        "region index {region_index} out of range"
    );
    POD_PEER_PORT_BASE + region_index as u16
}

/// The highest `base_port` that leaves room for `regions` full blocks below 65536.
pub(crate) fn max_base_port(regions: usize) -> u32 {
    65_536 - u32::from(LOCAL_PORT_BLOCK) * regions as u32
}

/// One region's own ports on the local host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalPorts {
    /// Redis (`block + 0`).
    pub redis: u16,
    /// The tunnel server (`block + 1`): decrypts and forwards to Redis.
    pub tunnel: u16,
    /// The agent's HTTP metrics and probes (`block + 2`).
    pub http: u16,
    /// The agent's primary endpoint (`block + 4`).
    pub primary_endpoint: u16,
    /// The agent's Sentinel-compatible port (`block + 5`).
    pub sentinel: u16,
    /// The agent's control API (`block + 3`).
    pub control: u16,
    /// The agent's replication relay (`block + 6`; used with `[relay]` only).
    pub relay: u16,
    /// The relay's tunnel server (`block + 7`; used with `[relay]` only): decrypts and forwards
    /// to `relay`.
    pub relay_tunnel: u16,
    /// The agent's tunnel-client listener for region 0 (`block + 10`); region *j*'s is
    /// `peer_base + j`.
    pub peer_base: u16,
}

impl LocalPorts {
    /// The listener through which this region reaches region `j` (`peer_base + j`).
    ///
    /// # Panics
    ///
    /// If `j >= MAX_REGIONS`.
    pub fn peer(&self, j: usize) -> u16 {
        assert!(j < MAX_REGIONS, "region index {j} out of range");
        self.peer_base + j as u16
    }
}

/// `base + 100 * region + offset`, as a port.
///
/// # Panics
///
/// If the port does not fit, which validation rules out for the regions of a parsed topology.
pub(crate) fn local_port(base: u16, region: usize, offset: u16) -> u16 {
    assert!(region < MAX_REGIONS, "region index {region} out of range");
    let port = u32::from(base) + u32::from(LOCAL_PORT_BLOCK) * region as u32 + u32::from(offset);
    u16::try_from(port).unwrap_or_else(|_| {
        panic!("port {port} for region {region} is out of range (base_port {base})")
    })
}
