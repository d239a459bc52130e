//! One `georep up` per data directory: an exclusive `flock` on `up.pid`, held while `up` runs.
//!
//! The kernel arbitrates: of two `up`s started at the same instant exactly one gets the lock, and
//! the lock goes away with its holder however that ends (a `kill -9` included), so a stale file
//! never blocks a start. The file also carries the holder's pid, for the refusal message. The
//! file is never deleted: a second `up` that opened the old file while the first removed it could
//! otherwise lock a file nobody else looks at.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why the lock could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another `georep up` holds it.
    #[error("georep up is already running on {dir} (pid {pid}); stop it first")]
    AlreadyRunning {
        /// The data directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it (`?` if it had not yet).
        pid: String,
    },
    /// The lock file could not be opened or locked.
    #[error("lock file {path}: {source}")]
    Io {
        /// `up.pid`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct InstanceLock {
    file: Flock<File>,
}

impl InstanceLock {
    /// Takes the lock on `path` (in data directory `dir`) and writes our pid into it, or says who
    /// holds it.
    pub fn acquire(path: &Path, dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        // Not truncated on open: the holder's pid must stay readable for the loser.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut file) => {
                file.set_len(0).map_err(io)?;
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                file.write_all(format!("{}\n", std::process::id()).as_bytes())
                    .map_err(io)?;
                Ok(Self { file })
            }
            Err((mut file, Errno::EWOULDBLOCK)) => Err(LockError::AlreadyRunning {
                dir: dir.to_owned(),
                pid: holder_pid(&mut file),
            }),
            Err((_, errno)) => Err(io(std::io::Error::from(errno))),
        }
    }

    /// Empties the pid file, so nothing stale is shown once we are gone; the lock itself goes when
    /// this is dropped.
    pub fn release(self) {
        let _ = self.file.set_len(0);
    }
}

/// The pid the holder wrote. It writes right after locking, so a loser that raced it may find
/// the file still empty: wait a little for the pid to appear.
fn holder_pid(file: &mut File) -> String {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        if read.is_ok() {
            if let Ok(pid) = text.trim().parse::<u32>() {
                return pid.to_string();
            }
        }
        if Instant::now() >= deadline {
            return "?".into();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.pid");
        let first = InstanceLock::acquire(&path, dir.path()).unwrap();
        // flock locks belong to the open file description: a second open is a second holder,
        // even in the same process.
        match InstanceLock::acquire(&path, dir.path()) {
            Err(LockError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, std::process::id().to_string())
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        first.release();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let again = InstanceLock::acquire(&path, dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(again);
    }
}
