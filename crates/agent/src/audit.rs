//! The audit trail of changes of primary: every attempt that passed the operator-token gate,
//! refused ones too, is one structured log line naming who asked (peer address, token
//! fingerprint — never the token) and an entry of the audit ring, the last [`KEPT`] attempts
//! kept in the state file and served on `/status` as `changes`.

use httpd::auth::Operator;
use httpd::Peer;

use crate::change::ChangeError;
use crate::shared::Shared;
use crate::state::State;
use crate::status::{ChangeAttempt, PrimaryChange};

/// How many attempts the audit ring keeps.
pub(crate) const KEPT: usize = 20;

/// Logs one attempted change of primary and appends it to the audit ring.
pub(crate) fn record(
    shared: &Shared,
    peer: Peer,
    operator: &Operator,
    action: &'static str,
    target: &str,
    result: &Result<PrimaryChange, ChangeError>,
) {
    let epoch = match result {
        Ok(change) => Some(change.epoch),
        Err(_) => Some(shared.view().known.epoch),
    };
    let outcome = match result {
        Ok(_) => "done".to_owned(),
        Err(e) => format!("refused: {e}"),
    };
    tracing::info!(
        target: "georep::audit",
        %peer,
        token = %operator.fingerprint,
        action,
        region = target,
        result = %outcome,
        epoch = ?epoch,
        "change of primary attempted"
    );
    let attempt = ChangeAttempt {
        at_ms: crate::now_ms(),
        peer: peer.to_string(),
        token: operator.fingerprint.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        result: if result.is_ok() { "done" } else { "refused" }.to_owned(),
        error: result.as_ref().err().map(ToString::to_string),
        epoch,
    };
    let c = &shared.config;
    let saved = crate::state::update(&c.state_dir, |s| {
        let mut s = s.unwrap_or_else(|| {
            let known = shared.known();
            State {
                epoch: known.epoch,
                primary: c.topology.regions[known.primary].name.clone(),
                changes: Vec::new(),
            }
        });
        push(&mut s.changes, attempt);
        s
    });
    if let Err(e) = saved {
        tracing::warn!(error = %e, dir = %c.state_dir.display(), "cannot write the audit ring to the state file");
    }
}

/// The audit ring as the state file holds it (empty without a readable file).
pub(crate) fn ring(shared: &Shared) -> Vec<ChangeAttempt> {
    crate::state::load(&shared.config.state_dir)
        .map(|s| s.changes)
        .unwrap_or_default()
}

/// Appends `attempt`, dropping the oldest beyond [`KEPT`].
fn push(ring: &mut Vec<ChangeAttempt>, attempt: ChangeAttempt) {
    ring.push(attempt);
    let excess = ring.len().saturating_sub(KEPT);
    ring.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_twenty_oldest_first() {
        let mut ring = Vec::new();
        for i in 0..25 {
            let attempt = ChangeAttempt {
                at_ms: i,
                ..ChangeAttempt::default()
            };
            push(&mut ring, attempt);
        }
        let kept: Vec<u64> = ring.iter().map(|a| a.at_ms).collect();
        assert_eq!(kept, (5..25).collect::<Vec<_>>());
    }
}
