//! The georep topology file: one TOML file that describes a cluster for every form it runs in.
//!
//! It names the cluster, lists the regions in a fixed order (a region's index is its position,
//! and the [port map](crate::ports) is built on it), says which region is primary and where each
//! region's tunnel endpoint is, and carries the Redis, local (`georep up`) and Kubernetes
//! (`georep render k8s`) settings. [`Topology::load`] turns the file into checked types or into a
//! [`TopologyError`] that names the file, line, column and field:
//!
//! ```text
//! examples/bad.toml:12:1: local.link[0].latncy: unknown field, expected one of between, latency, jitter, bandwidth
//! ```
//!
//! A [`Topology`] is always valid: every cross-reference resolved to an index, every quantity
//! converted to a number, every port of the local port map inside `1024..=65535`.
//!
//! What this crate is **not**: it starts nothing, renders nothing and opens no socket. It reads
//! the topology file and checks that the key file is readable and long enough, but does not keep
//! the key (the tunnel loads it). It does not resolve endpoints or check that images exist. The
//! schema is documented in `docs/topology.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod ports;
mod raw;
mod region_id;
mod settings;
mod syntax;
mod units;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

pub use error::TopologyError;
pub use ports::{
    pod_peer_port, LocalPorts, DEFAULT_BASE_PORT, LOCAL_PORT_BLOCK, MAX_REGIONS, MAX_RELAY_REGIONS,
    MIN_BASE_PORT, POD_PEER_PORT_BASE,
};
pub use region_id::RegionId;
pub use settings::{
    KubernetesSettings, Link, LinkParams, LocalSettings, RedisSettings, RelayCompression,
    RelayRetention, RelaySettings, DEFAULT_OUTAGE_BUDGET, DEFAULT_WRITE_RATE_BYTES_PER_SEC,
    MIN_REPL_BACKLOG_BYTES,
};
pub use units::{parse_duration, DurationError};

use error::{Invalid, Reporter};
use raw::{RawKubernetes, RawLink, RawLocal, RawRedis, RawRegion, RawRelay, RawTopology, Strings};

/// Longest cluster name: it prefixes Kubernetes object names, which are limited to 63.
pub const MAX_CLUSTER_NAME_LEN: usize = 40;

/// Longest region name (a DNS label).
pub const MAX_REGION_NAME_LEN: usize = 63;

/// Shortest key file accepted, in bytes (256 bits).
pub const MIN_KEY_FILE_LEN: u64 = 32;

/// A checked topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Topology {
    /// Cluster name, a DNS label of at most 40 characters.
    pub name: String,
    /// The primary region (at epoch 1: the agents may have moved it since).
    pub primary: RegionId,
    /// The regions in file order; `regions[i].index == RegionId::new(i)`. At least 2, at most 40.
    pub regions: Vec<Region>,
    /// The tunnel key file, resolved against the topology file's directory (absolute if the
    /// topology file was named by an absolute path). Checked to be readable, 32 bytes or more.
    pub key_file: Option<PathBuf>,
    /// `[redis]`.
    pub redis: RedisSettings,
    /// `[local]`, for `georep up`.
    pub local: LocalSettings,
    /// `[kubernetes]`, for `georep render k8s`.
    pub kubernetes: KubernetesSettings,
    /// `[relay]`: a replication relay in every region; `None` (no section): Redis replicates
    /// directly through the tunnels.
    pub relay: Option<RelaySettings>,
    /// The file this was read from, as it was named.
    pub source: PathBuf,
}

/// One `[[region]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Region {
    /// Region name, a DNS label, unique in the topology.
    pub name: String,
    /// Position in the file, from 0: the region's place in the port map.
    pub index: RegionId,
    /// Public tunnel endpoint, as written: `host:port`, `[v4]:port` or `[v6]:port`.
    pub endpoint: String,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TopologyError> {
        let path = path.as_ref();
        let whole_file = |message: String| TopologyError {
            path: path.to_owned(),
            line: 0,
            column: 0,
            field: String::new(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| whole_file(format!("cannot read: {e}")))?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let valid = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
                let rep = Reporter { path, text: &valid };
                return Err(rep.at(at, "", "not valid UTF-8 (a TOML file must be UTF-8)"));
            }
        };
        Self::parse(&text, path)
    }

    /// Checks a topology given as text. `origin` names it in errors and is the base of a relative
    /// `key_file`.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, TopologyError> {
        let rep = Reporter { path: origin, text };
        let raw: RawTopology = toml::from_str(text).map_err(|e| rep.toml_error(&e))?;
        build(raw, &rep)
    }

    /// The region called `name`.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The primary region.
    pub fn primary_region(&self) -> &Region {
        &self.regions[self.primary]
    }

    /// Every region but the primary, in file order.
    pub fn replicas(&self) -> impl Iterator<Item = &Region> + '_ {
        self.regions.iter().filter(move |r| r.index != self.primary)
    }
}

fn build(raw: RawTopology, rep: &Reporter<'_>) -> Result<Topology, TopologyError> {
    syntax::dns_label(raw.name.get_ref(), MAX_CLUSTER_NAME_LEN)
        .map_err(|why| rep.spanned(&raw.name, "name", why))?;

    let regions = regions(&raw.region, rep)?;
    let primary = find(&regions, &raw.primary, "primary", rep)?;

    let key_file = match &raw.key_file {
        None => None,
        Some(k) => Some(key_file(k, rep)?),
    };

    let redis = redis(raw.redis, rep)?;
    let local = local(raw.local, &regions, rep)?;
    let kubernetes = kubernetes(raw.kubernetes, rep)?;
    let relay = match raw.relay {
        None => None,
        Some(r) => Some(relay(r, regions.len(), rep)?),
    };

    Ok(Topology {
        name: raw.name.into_inner(),
        primary,
        regions,
        key_file,
        redis,
        local,
        kubernetes,
        relay,
        source: rep.path.to_owned(),
    })
}

fn regions(
    raw: &Spanned<Vec<Spanned<RawRegion>>>,
    rep: &Reporter<'_>,
) -> Result<Vec<Region>, TopologyError> {
    let list = raw.get_ref();
    if list.len() < 2 {
        let msg = format!(
            "at least 2 regions are required (a replica needs a primary), found {}",
            list.len()
        );
        return Err(rep.spanned(raw, "region", msg));
    }
    if let Some(extra) = list.get(MAX_REGIONS) {
        let msg = format!(
            "at most {MAX_REGIONS} regions are supported, found {}",
            list.len()
        );
        return Err(rep.spanned(extra, format!("region[{MAX_REGIONS}]"), msg));
    }
    let mut by_name: HashMap<&str, &Spanned<String>> = HashMap::new();
    let mut by_endpoint: HashMap<String, usize> = HashMap::new();
    let mut regions = Vec::with_capacity(list.len());
    for (index, region) in list.iter().enumerate() {
        let RawRegion { name, endpoint } = region.get_ref();
        let field = |f: &str| format!("region[{index}].{f}");
        syntax::dns_label(name.get_ref(), MAX_REGION_NAME_LEN)
            .map_err(|why| rep.spanned(name, field("name"), why))?;
        if let Some(first) = by_name.insert(name.get_ref(), name) {
            let msg = format!(
                "duplicate region name {:?} (first at line {})",
                name.get_ref(),
                rep.line_of(first)
            );
            return Err(rep.spanned(name, field("name"), msg));
        }
        syntax::endpoint(endpoint.get_ref())
            .map_err(|why| rep.spanned(endpoint, field("endpoint"), why))?;
        if let Some(first) = by_endpoint.insert(endpoint.get_ref().to_ascii_lowercase(), index) {
            let first = list[first].get_ref();
            let msg = format!(
                "duplicate endpoint {:?}: region {:?} (line {}) already uses it; each region \
                 needs its own",
                endpoint.get_ref(),
                first.name.get_ref(),
                rep.line_of(&first.endpoint)
            );
            return Err(rep.spanned(endpoint, field("endpoint"), msg));
        }
        regions.push(Region {
            name: name.get_ref().clone(),
            index: RegionId::new(index),
            endpoint: endpoint.get_ref().clone(),
        });
    }
    Ok(regions)
}

/// The region a field names.
fn find(
    regions: &[Region],
    name: &Spanned<String>,
    field: &str,
    rep: &Reporter<'_>,
) -> Result<RegionId, TopologyError> {
    regions
        .iter()
        .find(|r| r.name == *name.get_ref())
        .map(|r| r.index)
        .ok_or_else(|| {
            let names: Vec<_> = regions.iter().map(|r| r.name.as_str()).collect();
            let msg = format!(
                "{:?} is not a region (regions: {})",
                name.get_ref(),
                names.join(", ")
            );
            rep.spanned(name, field, msg)
        })
}

fn key_file(raw: &Spanned<String>, rep: &Reporter<'_>) -> Result<PathBuf, TopologyError> {
    let fail = |why: String| rep.spanned(raw, "key_file", why);
    if raw.get_ref().is_empty() {
        return Err(fail(
            "must not be empty (remove the line to run without a key file)".into(),
        ));
    }
    let path = match rep.path.parent() {
        Some(dir) => dir.join(raw.get_ref()),
        None => PathBuf::from(raw.get_ref()),
    };
    let shown = path.display();
    let len =
        read_len(&path, MIN_KEY_FILE_LEN).map_err(|e| fail(format!("cannot read {shown}: {e}")))?;
    if len < MIN_KEY_FILE_LEN {
        return Err(fail(format!(
            "too short: {shown} holds {len} bytes, a tunnel key needs at least \
             {MIN_KEY_FILE_LEN} (create one with `georep keygen`)"
        )));
    }
    Ok(path)
}

/// `value`, unless it is zero.
/// The allowed `base_port`s for `regions` regions, in words.
pub(crate) fn base_port_range(regions: usize) -> String {
    let regions = regions.max(2);
    let block = LOCAL_PORT_BLOCK as usize * regions;
    format!(
        "base_port must be between {MIN_BASE_PORT} and {max} for {regions} regions (ports \
         below {MIN_BASE_PORT} need privileges; the port map takes {block} ports from base_port, \
         and the last port is 65535)",
        max = ports::max_base_port(regions),
    )
}

fn nonzero<T: Default + PartialEq>(written: &str, value: T) -> Result<T, Invalid> {
    if value == T::default() {
        Err(Invalid::Zero {
            text: written.to_owned(),
        })
    } else {
        Ok(value)
    }
}

/// How many bytes of `path` can be read, reading no more than `limit`.
fn read_len(path: &Path, limit: u64) -> std::io::Result<u64> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut buf)?;
    // Key material: do not leave it lying around longer than needed.
    buf.iter_mut().for_each(|b| *b = 0);
    Ok(buf.len() as u64)
}

fn redis(raw: Option<RawRedis>, rep: &Reporter<'_>) -> Result<RedisSettings, TopologyError> {
    let mut out = RedisSettings::default();
    let Some(raw) = raw else { return Ok(out) };
    if let Some(rate) = &raw.write_rate {
        out.write_rate_bytes_per_sec = units::byte_rate(rate.get_ref())
            .and_then(|v| nonzero(rate.get_ref(), v))
            .map_err(|why| rep.spanned(rate, "redis.write_rate", why))?;
    }
    if let Some(budget) = &raw.outage_budget {
        out.outage_budget = units::duration(budget.get_ref())
            .and_then(|d| nonzero(budget.get_ref(), d))
            .map_err(|why| rep.spanned(budget, "redis.outage_budget", why))?;
    }
    if settings::backlog_bytes(out.write_rate_bytes_per_sec, out.outage_budget).is_none() {
        let (at, field) = match (&raw.outage_budget, &raw.write_rate) {
            (Some(b), _) => (b, "redis.outage_budget"),
            (None, Some(r)) => (r, "redis.write_rate"),
            (None, None) => unreachable!("the defaults fit"),
        };
        return Err(rep.spanned(
            at,
            field,
            "write_rate × outage_budget × 1.5 is too large for a replication backlog",
        ));
    }
    if let Some(mem) = raw.maxmemory {
        units::redis_memory(mem.get_ref())
            .map_err(|why| rep.spanned(&mem, "redis.maxmemory", why))?;
        out.maxmemory = Some(mem.into_inner());
    }
    Ok(out)
}

fn local(
    raw: Option<RawLocal>,
    regions: &[Region],
    rep: &Reporter<'_>,
) -> Result<LocalSettings, TopologyError> {
    let mut out = LocalSettings::default();
    let Some(raw) = raw else { return Ok(out) };
    if let Some(port) = &raw.base_port {
        let p = port.get_ref().0;
        let max = ports::max_base_port(regions.len());
        let Some(p) = u16::try_from(p)
            .ok()
            .filter(|p| (MIN_BASE_PORT..).contains(p) && u32::from(*p) <= max)
        else {
            // As written (the text, not the number: a value past 128 bits has none).
            let written = rep.text[port.span()].trim();
            let why = format!(
                "{written} is out of range: {}",
                base_port_range(regions.len())
            );
            return Err(rep.spanned(port, "local.base_port", why));
        };
        out.base_port = p;
    }
    if let Some(dir) = raw.data_dir {
        if dir.get_ref().is_empty() {
            return Err(rep.spanned(&dir, "local.data_dir", "must not be empty"));
        }
        out.data_dir = PathBuf::from(dir.into_inner());
    }
    let mut seen: HashMap<(RegionId, RegionId), &Strings> = HashMap::new();
    for (i, link) in raw.link.iter().enumerate() {
        let RawLink {
            between,
            latency,
            jitter,
            bandwidth,
        } = link.get_ref();
        let field = |f: &str| format!("local.link[{i}].{f}");
        let [first, second] = between.get_ref().as_slice() else {
            let msg = format!("expected 2 region names, found {}", between.get_ref().len());
            return Err(rep.spanned(between, field("between"), msg));
        };
        let a = find(regions, first, &field("between[0]"), rep)?;
        let b = find(regions, second, &field("between[1]"), rep)?;
        if a == b {
            let msg = format!(
                "a link joins two different regions, not {:?} to itself",
                first.get_ref()
            );
            return Err(rep.spanned(second, field("between[1]"), msg));
        }
        if let Some(earlier) = seen.insert((a.min(b), a.max(b)), between) {
            let msg = format!(
                "duplicate link between {:?} and {:?} (first at line {})",
                first.get_ref(),
                second.get_ref(),
                rep.line_of(earlier)
            );
            return Err(rep.spanned(between, field("between"), msg));
        }
        let duration = |v: &Spanned<String>, f: &str| {
            units::duration(v.get_ref()).map_err(|why| rep.spanned(v, field(f), why))
        };
        let latency_d = duration(latency, "latency")?;
        let jitter_d = match jitter {
            None => Duration::ZERO,
            Some(j) => {
                let d = duration(j, "jitter")?;
                if d > latency_d {
                    let msg = format!(
                        "{:?} is more than the latency ({:?}); jitter must not exceed latency",
                        j.get_ref(),
                        latency.get_ref()
                    );
                    return Err(rep.spanned(j, field("jitter"), msg));
                }
                d
            }
        };
        let bandwidth = match bandwidth {
            None => None,
            Some(bw) => Some(
                units::bandwidth(bw.get_ref())
                    .and_then(|v| nonzero(bw.get_ref(), v))
                    .map_err(|why| rep.spanned(bw, field("bandwidth"), why))?,
            ),
        };
        out.links.push(Link {
            a,
            b,
            latency: latency_d,
            jitter: jitter_d,
            bandwidth_bytes_per_sec: bandwidth,
        });
    }
    Ok(out)
}

fn relay(
    raw: Spanned<RawRelay>,
    regions: usize,
    rep: &Reporter<'_>,
) -> Result<RelaySettings, TopologyError> {
    if regions > MAX_RELAY_REGIONS {
        let msg = format!(
            "a topology with [relay] has at most {MAX_RELAY_REGIONS} regions (georep up's port \
             block holds relay links to {MAX_RELAY_REGIONS}), found {regions}"
        );
        return Err(rep.spanned(&raw, "relay", msg));
    }
    let mut out = RelaySettings::default();
    if let Some(r) = &raw.get_ref().retention {
        out.retention =
            units::retention(r.get_ref()).map_err(|why| rep.spanned(r, "relay.retention", why))?;
    }
    if let Some(c) = &raw.get_ref().compression {
        out.compression = match c.get_ref().as_str() {
            "none" => RelayCompression::None,
            "zstd" => RelayCompression::Zstd,
            other => {
                let why = format!("unknown compression {other:?} (expected \"none\" or \"zstd\")");
                return Err(rep.spanned(c, "relay.compression", why));
            }
        };
    }
    Ok(out)
}

fn kubernetes(
    raw: Option<RawKubernetes>,
    rep: &Reporter<'_>,
) -> Result<KubernetesSettings, TopologyError> {
    let mut out = KubernetesSettings::default();
    let Some(raw) = raw else { return Ok(out) };
    type Check = fn(&str) -> Result<(), Invalid>;
    let scalar = |value: Option<Spanned<String>>, field: &str, check: Check, slot: &mut String| {
        if let Some(v) = value {
            check(v.get_ref())
                .map_err(|why| rep.spanned(&v, format!("kubernetes.{field}"), why))?;
            *slot = v.into_inner();
        }
        Ok::<_, TopologyError>(())
    };
    scalar(raw.image, "image", syntax::image, &mut out.image)?;
    scalar(
        raw.redis_image,
        "redis_image",
        syntax::image,
        &mut out.redis_image,
    )?;
    scalar(
        raw.storage_class,
        "storage_class",
        syntax::storage_class,
        &mut out.storage_class,
    )?;
    scalar(
        raw.storage_size,
        "storage_size",
        units::k8s_storage,
        &mut out.storage_size,
    )?;
    scalar(
        raw.namespace,
        "namespace",
        syntax::namespace,
        &mut out.namespace,
    )?;

    let list = |value: Option<Strings>, field: &str, check: Check, slot: &mut Vec<String>| {
        let Some(v) = value else { return Ok(()) };
        let mut items = Vec::new();
        for (i, item) in v.get_ref().iter().enumerate() {
            check(item.get_ref())
                .map_err(|why| rep.spanned(item, format!("kubernetes.{field}[{i}]"), why))?;
            if items.contains(item.get_ref()) {
                let msg = format!("{:?} is listed twice", item.get_ref());
                return Err(rep.spanned(item, format!("kubernetes.{field}[{i}]"), msg));
            }
            items.push(item.get_ref().clone());
        }
        *slot = items;
        Ok::<_, TopologyError>(())
    };
    list(
        raw.app_namespaces,
        "app_namespaces",
        syntax::namespace,
        &mut out.app_namespaces,
    )?;
    if let Some(ranges) = &raw.tunnel_source_ranges {
        if ranges.get_ref().is_empty() {
            let msg = "must list at least one CIDR (\"0.0.0.0/0\" allows any source)";
            return Err(rep.spanned(ranges, "kubernetes.tunnel_source_ranges", msg));
        }
    }
    list(
        raw.tunnel_source_ranges,
        "tunnel_source_ranges",
        syntax::cidr,
        &mut out.tunnel_source_ranges,
    )?;
    Ok(out)
}
