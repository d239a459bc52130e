//! A pod's redis.conf kept in the region's current role. The Redis container's file lives in a
//! volume shared with the agent: the `redis-conf` init container writes it at pod start, the
//! agent rewrites it whenever it learns a new primary, so a Redis container restarted after a
//! switchover starts as what it is now (the primary fenced with its AOF, or a replica of the
//! primary), never as what the topology said at render time.

use std::io::Write as _;
use std::path::Path;

use std::os::unix::fs::OpenOptionsExt as _;

use topology::{RegionId, Topology};

/// Writes region `region`'s pod redis.conf, given the primary, atomically (temporary file in
/// the same directory, fsync, rename) with mode 0644: it holds no secret, and Redis runs as
/// another user than the agent.
pub fn write(
    path: &Path,
    topology: &Topology,
    region: RegionId,
    primary: RegionId,
) -> std::io::Result<()> {
    let text = region_spec::pod::redis_conf(topology, region, primary);
    let tmp = path.with_extension("conf.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The primary region's index as `state_dir`'s state file names it; `None` without a state
/// file. An unreadable or unparsable file, or a region the topology does not have, is an error:
/// guessing the role from the topology then could start a demoted primary writable.
pub fn believed_primary(
    topology: &Topology,
    state_dir: &Path,
) -> std::io::Result<Option<RegionId>> {
    let path = crate::state::path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let state: crate::state::State = serde_json::from_str(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    match topology.region(&state.primary) {
        Some(r) => Ok(Some(r.index)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} names primary {:?}, which the topology does not have",
                path.display(),
                state.primary
            ),
        )),
    }
}
