//! Absurd epochs refused: an epoch observed in any region's `georep:meta` that is implausibly
//! far above the one this agent knows is ignored as absent, logged and counted
//! (`georep_epoch_refused_total`).
//!
//! Only an admin can write `georep:meta` (the ACL keeps every other user off `georep:*`), so
//! such an epoch is a mistake or an attack, never a change of primary: each change adds 1, and
//! changes are operator commands taking hundreds of milliseconds each. A million of them, one
//! per second without pause, would take eleven days; so a jump of more than [`MAX_EPOCH_JUMP`]
//! in one observation is refused, and so is `u64::MAX` (the next change could not count
//! past it). An agent whose state file was lost starts from epoch 1 and still accepts any
//! epoch a real cluster reaches.

use crate::cluster_view::{Known, Peer};
use crate::shared::Shared;
use topology::RegionId;

/// The largest step above the known epoch an observed epoch may take.
pub(crate) const MAX_EPOCH_JUMP: u64 = 1_000_000;

/// Whether `observed` can follow `known` through changes of primary.
pub(crate) fn plausible(known: u64, observed: u64) -> bool {
    observed != u64::MAX && observed <= known.saturating_add(MAX_EPOCH_JUMP)
}

/// Ignores the implausible epochs of one round, our Redis's meta and each reached region's;
/// returns the regions whose epoch was refused.
pub(crate) fn screen(
    shared: &Shared,
    local: &mut Option<Known>,
    peers: &mut [(RegionId, Peer)],
) -> Vec<RegionId> {
    let known = shared.known().epoch;
    let c = &shared.config;
    let mut refused = Vec::new();
    let mut check = |region: RegionId, meta: &mut Option<Known>| {
        if let Some(m) = meta.filter(|m| !plausible(known, m.epoch)) {
            let name = &c.topology.regions[region].name;
            tracing::warn!(
                region = %name,
                epoch = m.epoch,
                known,
                "refusing an implausible epoch in georep:meta: ignored as absent"
            );
            shared
                .metrics
                .epoch_refused
                .get_or_create(&vec![("region".to_owned(), name.clone())])
                .inc();
            *meta = None;
            refused.push(region);
        }
    };
    check(c.region, local);
    for (i, peer) in peers.iter_mut() {
        if let Peer::Reached { meta } = peer {
            check(*i, meta);
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_jump_or_the_largest_epoch_is_refused() {
        assert!(plausible(1, 2));
        assert!(
            plausible(7, 3),
            "a lower epoch is not absurd: it loses anyway"
        );
        assert!(plausible(1, 1 + MAX_EPOCH_JUMP));
        assert!(!plausible(1, 2 + MAX_EPOCH_JUMP));
        assert!(!plausible(1, u64::MAX));
        assert!(!plausible(u64::MAX - 1, u64::MAX));
        assert!(plausible(u64::MAX - 1, u64::MAX - 1));
    }
}
