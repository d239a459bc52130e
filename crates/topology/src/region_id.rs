//! [`RegionId`]: which region, as a type rather than a bare `usize`.

use std::fmt;
use std::ops::Index;

use serde::{Deserialize, Serialize};

use crate::Region;

/// A region of a topology: its position in the file, from 0.
///
/// Only [`crate::Topology`] hands these out (`Region::index`, `Topology::primary`), so an id
/// never names a region the topology lacks; [`RegionId::new`] exists for loops over positions and
/// for tests. Port arithmetic needs the number: [`RegionId::index`] says so where it happens.
/// Serialises as the bare number, so JSON and state files look as they did with a `usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionId(usize);

impl RegionId {
    /// The region at position `index` in the topology file.
    pub const fn new(index: usize) -> Self {
        Self(index)
    }

    /// Its position in the topology file, for the port map and per-region tables.
    pub const fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// `topology.regions[id]`.
impl Index<RegionId> for [Region] {
    type Output = Region;

    fn index(&self, id: RegionId) -> &Region {
        &self[id.0]
    }
}

/// `topology.regions[id]`.
impl Index<RegionId> for Vec<Region> {
    type Output = Region;

    fn index(&self, id: RegionId) -> &Region {
        &self[id.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_the_bare_number() {
        let id = RegionId::new(3);
        assert_eq!(serde_json::to_string(&id).unwrap(), "3");
        assert_eq!(serde_json::from_str::<RegionId>("3").unwrap(), id);
        assert_eq!(id.to_string(), "3");
    }
}
