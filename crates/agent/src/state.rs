//! The agent's state file: the highest (epoch, primary) it has learned, kept next to the Redis
//! data so that a restarted agent (or `georep up` writing redis.conf) remembers it even when no
//! other region is reachable; and the audit ring, the last attempted changes of primary.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::status::ChangeAttempt;

/// The file name inside `--state-dir`.
pub const FILE: &str = "georep-state.json";

/// What the agent knows about the cluster's primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The cluster epoch: incremented by every change of primary.
    pub epoch: u64,
    /// The primary region's name at that epoch.
    pub primary: String,
    /// The audit ring: the last 20 attempted changes of primary, oldest
    /// first. Absent from files written before it existed: empty.
    #[serde(default)]
    pub changes: Vec<ChangeAttempt>,
}

/// Serialises [`update`]s: the control round (a new epoch) and a control request (an audit
/// entry) each rewrite the file, and neither may lose what the other wrote.
static WRITE: Mutex<()> = Mutex::new(());

/// The state file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the state file; `None` if it is missing or unreadable.
pub fn load(dir: &Path) -> Option<State> {
    let text = std::fs::read_to_string(path(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Rewrites the state file with `change` applied to what it holds (`None`: missing or
/// unreadable), one writer at a time.
pub fn update(dir: &Path, change: impl FnOnce(Option<State>) -> State) -> std::io::Result<()> {
    let _one_writer = WRITE.lock().unwrap_or_else(PoisonError::into_inner);
    save(dir, &change(load(dir)))
}

/// Writes the state file atomically (temporary file, fsync, rename).
pub fn save(dir: &Path, state: &State) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(
        serde_json::to_string(state)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    f.sync_all()?;
    std::fs::rename(tmp, path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        let s = State {
            epoch: 7,
            primary: "eu-central-1".into(),
            changes: vec![ChangeAttempt {
                at_ms: 1_700_000_000_000,
                peer: "127.0.0.1:51000".into(),
                token: "sha256:0011aabb".into(),
                action: "failover".into(),
                target: "us-east-1".into(),
                result: "refused".into(),
                error: Some("already primary".into()),
                epoch: Some(7),
            }],
        };
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()), Some(s));
    }

    #[test]
    fn a_file_from_before_the_audit_ring_loads_with_no_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), r#"{"epoch":4,"primary":"us-east-1"}"#).unwrap();
        let s = load(dir.path()).unwrap();
        assert_eq!((s.epoch, s.primary.as_str()), (4, "us-east-1"));
        assert!(s.changes.is_empty());
    }

    #[test]
    fn an_update_keeps_what_it_does_not_change() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = |s: Option<State>| {
            s.unwrap_or_else(|| State {
                epoch: 1,
                primary: "us-east-1".into(),
                changes: Vec::new(),
            })
        };
        update(dir.path(), |s| {
            let mut s = fresh(s);
            s.changes.push(ChangeAttempt::default());
            s
        })
        .unwrap();
        update(dir.path(), |s| State {
            epoch: 2,
            primary: "eu-central-1".into(),
            ..fresh(s)
        })
        .unwrap();
        let s = load(dir.path()).unwrap();
        assert_eq!((s.epoch, s.changes.len()), (2, 1));
    }
}
