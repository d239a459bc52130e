//! The agent's state file: the highest (epoch, primary) it has learned, kept next to the Redis
//! data so that a restarted agent (or `georep up` writing redis.conf) remembers it even when no
//! other region is reachable.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file name inside `--state-dir`.
pub const FILE: &str = "georep-state.json";

/// What the agent knows about the cluster's primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The cluster epoch: incremented by every change of primary.
    pub epoch: u64,
    /// The primary region's name at that epoch.
    pub primary: String,
}

/// The state file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the state file; `None` if it is missing or unreadable.
pub fn load(dir: &Path) -> Option<State> {
    let text = std::fs::read_to_string(path(dir)).ok()?;
    serde_json::from_str(&text).ok()
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
        };
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()), Some(s));
    }
}
