//! A small tmpfs for disk-full tests (needs root: `mount` fails otherwise, and callers skip).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a directory; unmounted (lazily: a server may still hold a file) on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `4m`) on `dir`, created if missing. The error
    /// is mount's own message, for the caller's `SKIPPED` line.
    pub fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(dir.to_owned()))
    }

    /// Fills what is left with a file, up to the last byte (ENOSPC); returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.0.join("ballast");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5a; 64 << 10];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("ballast: {e}"),
            }
        }
        // Down to the byte: a short write leaves a page partly free.
        while f.write(&[0x5a]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
