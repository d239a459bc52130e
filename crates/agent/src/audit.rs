//! The audit trail of changes of primary: every attempt, refused ones too, is one structured
//! log line naming who asked (peer address, token fingerprint — never the token).

use httpd::auth::Operator;
use httpd::Peer;

use crate::change::ChangeError;
use crate::shared::Shared;
use crate::status::PrimaryChange;

/// Logs one attempted change of primary.
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
}
