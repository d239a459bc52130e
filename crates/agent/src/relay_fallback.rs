//! Replicating past a relay that cannot store (issue #12).
//!
//! A relay whose disk is full keeps what it stored and serves it, but receives nothing more: its
//! downstreams sit at a stale prefix. While that lasts, whatever replicates from it is pointed at
//! the relay's own upstream instead, and back once the relay stores again and holds what they
//! have:
//!
//! ```text
//!  replica region, its relay full:   redis ──► (our relay's upstream: the primary region's relay)
//!  primary region, its relay full:   other regions' relays ──► the primary's Redis (Redis tunnel)
//! ```
//!
//! Why the relay's upstream and not always the primary's Redis: the primary region's relay holds
//! hours of stream on disk, the primary's Redis only its in-memory backlog, so a replica region
//! whose relay was full for long still resumes with `+CONTINUE`. Every move is a `PSYNC` with the
//! replication ID and offset the follower already has, against a server holding the same stream,
//! so it continues (`+CONTINUE`): no full resync, nothing rewritten. A follower that arrives ahead
//! of what the server holds is told `-NOMASTERLINK` and retries; nothing is ever served past a
//! gap.
//!
//! How the other regions learn that the primary region's relay is full: the agents already read
//! each other's Redis through the tunnels every round (`georep:meta`), and that is the only
//! channel between regions. The primary's agent sets a lease in its Redis, [`LEASE`]
//! (`<epoch> <region>`, with a time to live of a few rounds, refreshed every round), and the other
//! agents read it with the metadata. A lease from an agent that died expires by itself; one left
//! in the data by an older epoch or another region is ignored. Following the primary's Redis
//! directly is the topology without relays, so fencing is unchanged: the lease is only written on
//! an unfenced primary, and the agents only follow the primary the epoch names.
//!
//! The way back waits for the relay to have stored without a failure for [`HOLD`] and to hold at
//! least what its downstream has (our Redis's offset; in the primary region, the primary's offset
//! seen at the start of the round), so a disk with a few bytes left does not flap the followers.

use std::time::{Duration, Instant};

use topology::RegionId;

use crate::cluster_view::Known;
use crate::shared::Shared;

/// The key holding the primary region's lease (`<epoch> <region>`).
pub(crate) const LEASE: &str = "georep:relay-bypass";

/// How long a relay must store without a failure before what bypassed it comes back.
pub(crate) const HOLD: Duration = Duration::from_secs(2);

/// Who is pointed past which relay, as the control round last decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fallback {
    /// Our relay cannot store and what replicates from it is pointed past it: in a replica
    /// region our Redis follows our relay's upstream; in the primary region the lease tells the
    /// other regions' relays to follow our Redis.
    pub(crate) bypassed: bool,
    /// The primary region's relay is bypassed (its lease is live): our relay follows the
    /// primary's Redis through our Redis tunnel.
    pub(crate) primary_relay_bypassed: bool,
}

/// The relay as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelayState {
    /// Its last write to the store failed for want of space.
    pub(crate) disk_full: bool,
    /// A write to the store failed within the last [`HOLD`].
    pub(crate) failed_recently: bool,
    /// Streaming from its upstream.
    pub(crate) streaming: bool,
    /// The last offset it holds.
    pub(crate) offset: u64,
}

/// Whether what replicates from the relay is pointed past it this round. `bypassed`: last
/// round's answer; `downstream`: the offset what would come back has (`None`: unknown, stay).
pub(crate) fn bypass(bypassed: bool, relay: RelayState, downstream: Option<u64>) -> bool {
    if relay.disk_full {
        return true;
    }
    if !bypassed {
        return false;
    }
    let caught_up = relay.streaming
        && !relay.failed_recently
        && downstream.is_some_and(|offset| relay.offset >= offset);
    !caught_up
}

/// The lease as read from a region's Redis: valid only for the primary and epoch it names.
pub(crate) fn lease_is_live(lease: Option<&str>, known: Known, primary_name: &str) -> bool {
    let Some((epoch, region)) = lease.and_then(|l| l.split_once(' ')) else {
        return false;
    };
    epoch.parse() == Ok(known.epoch) && region == primary_name
}

/// The lease value for `known`.
pub(crate) fn lease_value(known: Known, primary_name: &str) -> String {
    format!("{} {primary_name}", known.epoch)
}

/// The lease's time to live: a few control rounds, and never under 5 s.
pub(crate) fn lease_ttl(reconcile_every: Duration) -> Duration {
    (reconcile_every * 5).max(Duration::from_secs(5))
}

/// What the control round remembers between rounds.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    disk_errors: u64,
    last_error: Option<Instant>,
    /// We wrote the lease into our Redis (and must delete it once the relay is back).
    pub(crate) lease_written: bool,
}

/// What one control round saw, for [`step`].
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// The epoch and primary decided this round.
    pub(crate) known: Known,
    /// Our Redis is the unfenced primary the epoch names.
    pub(crate) serving_primary: bool,
    /// Our Redis's offset at the start of the round.
    pub(crate) redis_offset: Option<u64>,
    /// The primary region's lease, when its Redis was read this round: (the region read, its
    /// value).
    pub(crate) lease: Option<(RegionId, Option<String>)>,
}

/// Decides this round's [`Fallback`], publishes it (the relay's follower task and
/// [`Shared::desired_role`] act on it), logs each switch and sets the gauges.
pub(crate) fn step(shared: &Shared, memory: &mut Memory, facts: &Facts) -> Fallback {
    let Some(h) = shared.relay.get() else {
        return Fallback::default();
    };
    let c = &shared.config;
    let here = facts.known.primary == c.region;
    let errors = h.metrics.disk_errors.get();
    if errors != memory.disk_errors {
        memory.disk_errors = errors;
        memory.last_error = Some(Instant::now());
    }
    let relay = RelayState {
        disk_full: h.upstream.disk_full(),
        failed_recently: memory.last_error.is_some_and(|t| t.elapsed() < HOLD),
        streaming: h.metrics.upstream_connected.get() == 1,
        offset: h.metrics.upstream_offset.get().max(0) as u64,
    };
    let before = *shared.fallback.borrow();
    // A primary's relay replicates only once the fence is lifted: an idle relay has nothing to
    // be bypassed for (and a fenced primary takes no lease).
    let active = !here || facts.serving_primary;
    let primary_name = &c.topology.regions[facts.known.primary].name;
    let now = Fallback {
        bypassed: active && bypass(before.bypassed, relay, facts.redis_offset),
        primary_relay_bypassed: !here
            && match &facts.lease {
                Some((from, lease)) if *from == facts.known.primary => {
                    lease_is_live(lease.as_deref(), facts.known, primary_name)
                }
                // Not read this round (unreachable): keep what we knew.
                _ => before.primary_relay_bypassed,
            },
    };
    log_switches(shared, before, now, here, relay, facts.redis_offset);
    h.gauges.bypassed.set(i64::from(now.bypassed));
    h.gauges.disk_full.set(i64::from(relay.disk_full));
    shared.fallback.send_if_modified(|f| {
        let changed = *f != now;
        *f = now;
        changed
    });
    now
}

fn log_switches(
    shared: &Shared,
    before: Fallback,
    now: Fallback,
    here: bool,
    relay: RelayState,
    redis_offset: Option<u64>,
) {
    let c = &shared.config;
    let primary = &c.topology.regions[shared.known().primary].name;
    match (before.bypassed, now.bypassed, here) {
        (false, true, false) => tracing::warn!(
            relay_offset = relay.offset,
            "relay cannot store (disk full): the local Redis follows the relay's upstream \
             ({primary}'s relay) directly until the relay stores again and has caught up"
        ),
        (false, true, true) => tracing::warn!(
            relay_offset = relay.offset,
            "relay cannot store (disk full): the other regions' relays follow this region's \
             Redis directly until the relay stores again and has caught up"
        ),
        (true, false, false) => tracing::info!(
            relay_offset = relay.offset,
            redis_offset,
            "relay stores again and holds what the local Redis has: the local Redis follows the \
             relay again"
        ),
        (true, false, true) => tracing::info!(
            relay_offset = relay.offset,
            redis_offset,
            "relay stores again and has caught up with this region's Redis: the other regions' \
             relays follow it again"
        ),
        _ => {}
    }
    match (before.primary_relay_bypassed, now.primary_relay_bypassed) {
        (false, true) => tracing::warn!(
            "{primary}'s relay cannot store (disk full): our relay follows {primary}'s Redis \
             directly until it stores again"
        ),
        (true, false) => {
            tracing::info!("{primary}'s relay stores again: our relay follows it again")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(disk_full: bool, failed_recently: bool, streaming: bool, offset: u64) -> RelayState {
        RelayState {
            disk_full,
            failed_recently,
            streaming,
            offset,
        }
    }

    #[test]
    fn a_full_relay_is_bypassed_until_it_stores_streams_and_has_caught_up() {
        // Storing: nothing to do, whatever the offsets.
        assert!(!bypass(false, relay(false, false, true, 10), Some(20)));
        // Full: bypassed at once.
        assert!(bypass(false, relay(true, true, false, 10), Some(20)));
        assert!(bypass(true, relay(true, true, true, 10), Some(5)));
        // Stores again, but failed within the hold, is not streaming, or is behind: stay.
        assert!(bypass(true, relay(false, true, true, 30), Some(20)));
        assert!(bypass(true, relay(false, false, false, 30), Some(20)));
        assert!(bypass(true, relay(false, false, true, 19), Some(20)));
        assert!(bypass(true, relay(false, false, true, 30), None));
        // Holds what the downstream has: back.
        assert!(!bypass(true, relay(false, false, true, 20), Some(20)));
    }

    #[test]
    fn only_the_lease_of_the_known_primary_and_epoch_counts() {
        let known = Known {
            epoch: 4,
            primary: RegionId::new(0),
        };
        let live = lease_value(known, "us-east-1");
        assert_eq!(live, "4 us-east-1");
        assert!(lease_is_live(Some(&live), known, "us-east-1"));
        assert!(!lease_is_live(None, known, "us-east-1"));
        assert!(!lease_is_live(Some("3 us-east-1"), known, "us-east-1"));
        assert!(!lease_is_live(Some("4 eu-central-1"), known, "us-east-1"));
        assert!(!lease_is_live(Some("garbage"), known, "us-east-1"));
        assert_eq!(
            lease_ttl(Duration::from_secs(1)),
            Duration::from_secs(5),
            "a few rounds"
        );
        assert_eq!(lease_ttl(Duration::from_secs(2)), Duration::from_secs(10));
    }
}
