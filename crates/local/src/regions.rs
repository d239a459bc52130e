//! The processes and WAN links of a running `georep up`, shared by the cluster (which starts
//! and supervises them) and the control API (which reports and changes them).

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;
use topology::Topology;
use wan::LinkHandle;

use crate::process::Supervised;
use crate::wan_links::Stream;

/// One emulated WAN link: the traffic of region `from` towards region `to`, for one stream.
pub(crate) struct WanLink {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) stream: Stream,
    pub(crate) handle: LinkHandle,
}

/// The emulated links, Redis streams first.
pub(crate) type Links = Arc<Vec<WanLink>>;

pub(crate) struct RegionProcs {
    pub(crate) redis: Supervised,
    pub(crate) agent: Supervised,
    /// Killed on purpose (`Cluster::kill_region`): not restarted until `Cluster::start_region`.
    pub(crate) held: bool,
}

/// Process ids of one region, as served on the control API.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Pids {
    /// Region name.
    pub region: String,
    /// Its redis-server.
    pub redis: Option<u32>,
    /// Its agent.
    pub agent: Option<u32>,
}

pub(crate) fn set_cut(links: &[WanLink], a: usize, b: usize, cut: bool) {
    for WanLink {
        from: f,
        to: t,
        handle: l,
        ..
    } in links
    {
        if (*f, *t) == (a, b) || (*f, *t) == (b, a) {
            if cut {
                l.cut();
            } else {
                l.heal();
            }
        }
    }
}

/// Shared access to the processes for the control API.
#[derive(Clone)]
pub(crate) struct Procs(Arc<Mutex<Vec<RegionProcs>>>);

impl From<Arc<Mutex<Vec<RegionProcs>>>> for Procs {
    fn from(p: Arc<Mutex<Vec<RegionProcs>>>) -> Self {
        Self(p)
    }
}

impl Procs {
    pub(crate) async fn pids(&self, topology: &Topology) -> Vec<Pids> {
        pids(topology, &self.0).await
    }
}

pub(crate) async fn pids(topology: &Topology, regions: &Mutex<Vec<RegionProcs>>) -> Vec<Pids> {
    let regions = regions.lock().await;
    topology
        .regions
        .iter()
        .zip(regions.iter())
        .map(|(r, p)| Pids {
            region: r.name.clone(),
            redis: p.redis.pid(),
            agent: p.agent.pid(),
        })
        .collect()
}
