//! The `[redis]`, `[local]` and `[kubernetes]` sections, as checked values.

use std::path::PathBuf;
use std::time::Duration;

use crate::ports::{
    local_port, LocalPorts, AGENT_CONTROL_OFFSET, CONTROL_OFFSET, DEFAULT_BASE_PORT, HTTP_OFFSET,
    PEER_OFFSET, PRIMARY_ENDPOINT_OFFSET, REDIS_OFFSET, RELAY_OFFSET, RELAY_TUNNEL_OFFSET,
    RELAY_WAN_OFFSET, SENTINEL_OFFSET, TUNNEL_OFFSET, WAN_OFFSET,
};
use crate::RegionId;

const MIB: u64 = 1024 * 1024;

/// The smallest replication backlog georep configures.
pub const MIN_REPL_BACKLOG_BYTES: u64 = 16 * MIB;

/// Default `redis.write_rate`: 1 MB/s.
pub const DEFAULT_WRITE_RATE_BYTES_PER_SEC: u64 = 1_000_000;

/// Default `redis.outage_budget`: 60 s.
pub const DEFAULT_OUTAGE_BUDGET: Duration = Duration::from_secs(60);

/// `[redis]`: what the replication settings are derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSettings {
    /// Expected peak write rate on the primary, bytes per second (`write_rate`, default 1MB/s).
    pub write_rate_bytes_per_sec: u64,
    /// A link outage this long must not force a full resync (`outage_budget`, default 60s).
    pub outage_budget: Duration,
    /// `maxmemory` for `redis.conf`, as written (`512mb`); `None` leaves Redis's default.
    pub maxmemory: Option<String>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            write_rate_bytes_per_sec: DEFAULT_WRITE_RATE_BYTES_PER_SEC,
            outage_budget: DEFAULT_OUTAGE_BUDGET,
            maxmemory: None,
        }
    }
}

impl RedisSettings {
    /// `repl-backlog-size` for every Redis of the cluster, in bytes:
    /// `write_rate × outage_budget × 1.5`, rounded up to a whole MiB, at least 16 MiB.
    ///
    /// Why: a replica that reconnects after an outage resumes with a partial resync (`PSYNC`)
    /// only if everything written meanwhile is still in the primary's backlog; otherwise it
    /// takes a full resync, an RDB snapshot shipped across the WAN, during which it serves stale
    /// data and the primary forks. The backlog holds the replication stream, which is larger
    /// than the payload written (RESP framing, `MULTI`/`EXEC`, expiries propagated as `DEL`), and
    /// rates are estimates: hence the 1.5 margin. Whole MiB keeps `redis.conf` readable
    /// (`repl-backlog-size 86mb`). The 16 MiB floor (Redis's default is 1 MiB) costs little
    /// memory and covers a short blip even when the write rate was underestimated. Every region
    /// gets the same size because any replica can become the primary.
    pub fn repl_backlog_bytes(&self) -> u64 {
        backlog_bytes(self.write_rate_bytes_per_sec, self.outage_budget).unwrap_or(u64::MAX)
    }
}

/// The backlog rule, `None` if it does not fit in a `u64` (rejected when parsing).
pub(crate) fn backlog_bytes(rate: u64, budget: Duration) -> Option<u64> {
    let numerator = u128::from(rate) * budget.as_nanos() * 3;
    let bytes = numerator.div_ceil(2 * 1_000_000_000);
    let mib = bytes.div_ceil(u128::from(MIB));
    let bytes = (mib * u128::from(MIB)).max(u128::from(MIN_REPL_BACKLOG_BYTES));
    u64::try_from(bytes).ok()
}

/// One direction's conditions on an emulated WAN link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkParams {
    /// One-way delay added to every byte.
    pub latency: Duration,
    /// Maximum random deviation from `latency` (never more than `latency`).
    pub jitter: Duration,
    /// Bytes per second, or `None` for unlimited.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

/// A `[[local.link]]`: the conditions between two regions, the same in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Link {
    /// The first region named in `between`.
    pub a: RegionId,
    /// The second region named in `between` (never equal to `a`).
    pub b: RegionId,
    /// One-way delay.
    pub latency: Duration,
    /// Maximum random deviation from `latency`; zero if not given.
    pub jitter: Duration,
    /// Bytes per second in each direction, or `None` for unlimited.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

impl Link {
    /// The conditions each direction of this link gets.
    pub fn params(&self) -> LinkParams {
        LinkParams {
            latency: self.latency,
            jitter: self.jitter,
            bandwidth_bytes_per_sec: self.bandwidth_bytes_per_sec,
        }
    }
}

/// `[local]`: settings used only by `georep up`, where every region runs on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalSettings {
    /// First port of the port map (default 17000); see [`crate::ports`].
    pub base_port: u16,
    /// Where the regions' data lives, as written (default `georep-data`); relative paths are
    /// relative to the current directory of `georep up`.
    pub data_dir: PathBuf,
    /// The links that were described; pairs not listed are perfect.
    pub links: Vec<Link>,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            base_port: DEFAULT_BASE_PORT,
            data_dir: PathBuf::from("georep-data"),
            links: Vec::new(),
        }
    }
}

impl LocalSettings {
    /// The conditions between regions `a` and `b`, in either order: zero latency, no jitter and
    /// unlimited bandwidth unless a link was described.
    pub fn link(&self, a: RegionId, b: RegionId) -> LinkParams {
        self.links
            .iter()
            .find(|l| (l.a, l.b) == (a, b) || (l.a, l.b) == (b, a))
            .map(Link::params)
            .unwrap_or_default()
    }

    /// Region `region_index`'s own ports.
    ///
    /// # Panics
    ///
    /// If `region_index` is not the index of a region of the topology these settings came from.
    pub fn ports(&self, region_index: usize) -> LocalPorts {
        LocalPorts {
            redis: local_port(self.base_port, region_index, REDIS_OFFSET),
            tunnel: local_port(self.base_port, region_index, TUNNEL_OFFSET),
            http: local_port(self.base_port, region_index, HTTP_OFFSET),
            control: local_port(self.base_port, region_index, AGENT_CONTROL_OFFSET),
            primary_endpoint: local_port(self.base_port, region_index, PRIMARY_ENDPOINT_OFFSET),
            sentinel: local_port(self.base_port, region_index, SENTINEL_OFFSET),
            relay: local_port(self.base_port, region_index, RELAY_OFFSET),
            relay_tunnel: local_port(self.base_port, region_index, RELAY_TUNNEL_OFFSET),
            peer_base: local_port(self.base_port, region_index, PEER_OFFSET),
        }
    }

    /// The WAN emulator's listener carrying region `from`'s traffic towards region `to`
    /// (`block(from) + 50 + to`); it forwards to `ports(to).tunnel`.
    ///
    /// # Panics
    ///
    /// If either index is not that of a region of the topology these settings came from.
    pub fn wan_listener(&self, from: usize, to: usize) -> u16 {
        assert!(to < crate::MAX_REGIONS, "region index {to} out of range");
        local_port(self.base_port, from, WAN_OFFSET + to as u16)
    }

    /// The WAN emulator's listener carrying region `from`'s relay traffic towards region `to`
    /// (`block(from) + 90 + to`); it forwards to `ports(to).relay_tunnel`. Only topologies with
    /// `[relay]` use it, and they have at most [`crate::ports::MAX_RELAY_REGIONS`] regions.
    ///
    /// # Panics
    ///
    /// If `to >= MAX_RELAY_REGIONS`.
    pub fn relay_wan_listener(&self, from: usize, to: usize) -> u16 {
        assert!(
            to < crate::ports::MAX_RELAY_REGIONS,
            "region index {to} out of range for a relay"
        );
        local_port(self.base_port, from, RELAY_WAN_OFFSET + to as u16)
    }

    /// The control port of `georep up` (`base_port + 99`, reserved in region 0's block).
    pub fn control_port(&self) -> u16 {
        local_port(self.base_port, 0, CONTROL_OFFSET)
    }
}

/// `[relay]`: a disk-backed replication relay in every region (docs/relay.md), so a replica
/// region survives a WAN outage longer than Redis's in-memory backlog without a full resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelaySettings {
    /// How much stream history each relay keeps on disk (`retention`, default `6h`).
    pub retention: RelayRetention,
    /// How the stream travels between relays (`compression`, default `none`).
    pub compression: RelayCompression,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            retention: RelayRetention::Age(Duration::from_secs(6 * 3600)),
            compression: RelayCompression::None,
        }
    }
}

/// `relay.compression`: the relay-to-relay stream plain or zstd-compressed (docs/relay.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayCompression {
    /// `"none"`: plain bytes.
    #[default]
    None,
    /// `"zstd"`: zstd frames between relays (Redis replicas still get plain bytes).
    Zstd,
}

/// `relay.retention`: by age of the stream or by bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRetention {
    /// Keep what was written in the last this long (`"90s"`, `"30m"`, `"6h"`, `"2d"`).
    Age(Duration),
    /// Keep at most this many bytes of stream (`"512MiB"`, `"2GiB"`, `"1TB"`).
    Bytes(u64),
}

/// `[kubernetes]`: settings for `georep render k8s`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubernetesSettings {
    /// The georep image (agent and tunnel).
    pub image: String,
    /// The Redis image.
    pub redis_image: String,
    /// StorageClass of the Redis data volume.
    pub storage_class: String,
    /// Size of the Redis data volume, a Kubernetes quantity (`5Gi`).
    pub storage_size: String,
    /// Namespace georep's objects are created in.
    pub namespace: String,
    /// Namespaces whose pods may reach Redis on 6379.
    pub app_namespaces: Vec<String>,
    /// CIDRs allowed to reach the tunnel load balancer.
    pub tunnel_source_ranges: Vec<String>,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            image: concat!("ghcr.io/georep/georep:", env!("CARGO_PKG_VERSION")).to_owned(),
            redis_image: "redis:7.2.5".to_owned(),
            storage_class: "gp3".to_owned(),
            storage_size: "5Gi".to_owned(),
            namespace: "georep".to_owned(),
            app_namespaces: vec!["default".to_owned()],
            tunnel_source_ranges: vec!["0.0.0.0/0".to_owned()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(rate: u64, secs: u64) -> RedisSettings {
        RedisSettings {
            write_rate_bytes_per_sec: rate,
            outage_budget: Duration::from_secs(secs),
            maxmemory: None,
        }
    }

    #[test]
    fn backlog_default_is_86_mib() {
        // 1 MB/s × 60 s × 1.5 = 90,000,000 bytes = 85.8 MiB → 86 MiB.
        assert_eq!(RedisSettings::default().repl_backlog_bytes(), 86 * MIB);
    }

    #[test]
    fn backlog_has_a_16_mib_floor() {
        assert_eq!(redis(1_000, 1).repl_backlog_bytes(), 16 * MIB);
        assert_eq!(redis(1, 0).repl_backlog_bytes(), 16 * MIB);
        // Exactly 16 MiB needed: no rounding beyond it.
        let r = RedisSettings {
            write_rate_bytes_per_sec: 16 * MIB,
            outage_budget: Duration::from_millis(1000) * 2 / 3,
            maxmemory: None,
        };
        assert_eq!(r.repl_backlog_bytes(), 16 * MIB);
    }

    #[test]
    fn backlog_rounds_up_to_whole_mib() {
        // 10 MB/s × 120 s × 1.5 = 1.8e9 bytes = 1716.6 MiB → 1717 MiB.
        assert_eq!(redis(10_000_000, 120).repl_backlog_bytes(), 1717 * MIB);
        // One byte over a MiB boundary rounds up.
        let r = RedisSettings {
            write_rate_bytes_per_sec: 2 * (20 * MIB + 1),
            outage_budget: Duration::from_secs(1) / 3,
            maxmemory: None,
        };
        assert_eq!(r.repl_backlog_bytes(), 21 * MIB);
    }

    #[test]
    fn backlog_overflow_is_detected() {
        assert_eq!(backlog_bytes(u64::MAX, Duration::from_secs(60)), None);
        assert_eq!(redis(u64::MAX, 60).repl_backlog_bytes(), u64::MAX);
    }

    #[test]
    fn link_lookup_is_symmetric_with_a_perfect_default() {
        let local = LocalSettings {
            links: vec![Link {
                a: RegionId::new(2),
                b: RegionId::new(0),
                latency: Duration::from_millis(110),
                jitter: Duration::from_millis(3),
                bandwidth_bytes_per_sec: Some(12_500_000),
            }],
            ..LocalSettings::default()
        };
        let expected = LinkParams {
            latency: Duration::from_millis(110),
            jitter: Duration::from_millis(3),
            bandwidth_bytes_per_sec: Some(12_500_000),
        };
        assert_eq!(local.link(RegionId::new(0), RegionId::new(2)), expected);
        assert_eq!(local.link(RegionId::new(2), RegionId::new(0)), expected);
        assert_eq!(
            local.link(RegionId::new(0), RegionId::new(1)),
            LinkParams::default()
        );
        assert_eq!(
            local.link(RegionId::new(1), RegionId::new(1)),
            LinkParams::default()
        );
        assert_eq!(LinkParams::default().bandwidth_bytes_per_sec, None);
    }

    #[test]
    fn port_map_blocks() {
        let local = LocalSettings::default();
        let p0 = local.ports(0);
        assert_eq!(
            (p0.redis, p0.tunnel, p0.http, p0.peer_base),
            (17000, 17001, 17002, 17010)
        );
        let p2 = local.ports(2);
        assert_eq!(
            (p2.redis, p2.tunnel, p2.http, p2.peer_base),
            (17200, 17201, 17202, 17210)
        );
        assert_eq!(p2.peer(1), 17211);
        assert_eq!(local.wan_listener(0, 1), 17051);
        assert_eq!(local.wan_listener(2, 0), 17250);
        assert_eq!(local.control_port(), 17099);
        assert_eq!(crate::pod_peer_port(0), 16000);
        assert_eq!(crate::pod_peer_port(39), 16039);
    }

    #[test]
    fn port_map_has_no_collisions_at_the_limits() {
        let regions = crate::MAX_REGIONS;
        let top = crate::ports::max_base_port(regions);
        for base in [crate::MIN_BASE_PORT, u16::try_from(top).unwrap()] {
            let local = LocalSettings {
                base_port: base,
                ..LocalSettings::default()
            };
            let mut seen = std::collections::HashSet::new();
            let mut add = |p: u16, what: String| {
                assert!(p >= crate::MIN_BASE_PORT, "{what}: {p}");
                assert!(seen.insert(p), "{what}: port {p} used twice");
            };
            add(local.control_port(), "control".into());
            for i in 0..regions {
                let p = local.ports(i);
                add(p.redis, format!("redis {i}"));
                add(p.tunnel, format!("tunnel {i}"));
                add(p.http, format!("http {i}"));
                add(p.relay, format!("relay {i}"));
                add(p.relay_tunnel, format!("relay tunnel {i}"));
                for j in 0..crate::ports::MAX_RELAY_REGIONS {
                    add(
                        local.relay_wan_listener(i, j),
                        format!("relay wan {i}->{j}"),
                    );
                }
                for j in 0..regions {
                    add(p.peer(j), format!("peer {i}->{j}"));
                    add(local.wan_listener(i, j), format!("wan {i}->{j}"));
                }
            }
            assert_eq!(
                local.ports(regions - 1).redis as u32 + 99,
                base as u32 + 100 * regions as u32 - 1
            );
        }
        assert_eq!(crate::ports::max_base_port(regions), 61_536);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn ports_beyond_the_map_panic() {
        let local = LocalSettings {
            base_port: 65_000,
            ..LocalSettings::default()
        };
        let _ = local.ports(10);
    }
}
