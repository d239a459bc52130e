//! The secret files of a credentials directory: the tunnel key, the three ACL users' passwords
//! and the operator token. The same set serves `georep up`'s `secrets/` and the Kubernetes
//! tree's `DIR/secrets/` (`georep secrets init`); [`write_private`] writes the files made from
//! them (the ACL file of `georep acl-file` and `up`).
//!
//! Files are made only where none exists, never overwritten: regenerating a password of a
//! running cluster would lock its agents out. Each new file appears whole or not at all
//! (written to a temporary name, then linked into place, which fails if the name was taken
//! meanwhile), readable by its owner only.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

pub use region_spec::credentials::OPERATOR_TOKEN_FILE;

use crate::Passwords;

/// The tunnel key's file name.
pub const TUNNEL_KEY_FILE: &str = "tunnel.key";

/// Random bytes in each password and in the token (written as twice as many hex digits).
const SECRET_BYTES: usize = 32;

/// One file of the set, and whether this run made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Where it is.
    pub path: PathBuf,
    /// What it is, for people: `tunnel key (32 random bytes)`.
    pub what: &'static str,
    /// Its mode when made.
    pub mode: u32,
    /// Made now (`true`) or already there and kept (`false`).
    pub created: bool,
}

/// Makes every missing secret file in `dir` (created, mode 0700, if missing); keeps the others.
pub fn init(dir: &Path) -> std::io::Result<Vec<SecretFile>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut out = Vec::new();

    let key = dir.join(TUNNEL_KEY_FILE);
    let created = match tunnel::keyfile::generate(&key) {
        Ok(()) => true,
        Err(tunnel::keyfile::KeyFileError::Exists { .. }) => false,
        Err(e) => return Err(std::io::Error::other(e)),
    };
    out.push(SecretFile {
        path: key,
        what: "tunnel key (32 random bytes)",
        mode: 0o400,
        created,
    });

    let texts = Passwords::FILES
        .iter()
        .map(|f| (*f, "password (64 hex digits)"))
        .chain([(OPERATOR_TOKEN_FILE, "operator token (64 hex digits)")]);
    for (name, what) in texts {
        let path = dir.join(name);
        let created = create_new(&path, || Ok(format!("{}\n", random_hex()?)), 0o600)?;
        out.push(SecretFile {
            path,
            what,
            mode: 0o600,
            created,
        });
    }
    Ok(out)
}

/// Writes a file readable by its owner only, replacing any old one atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

fn random_hex() -> std::io::Result<String> {
    let mut raw = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    getrandom::getrandom(&mut *raw).map_err(std::io::Error::from)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `contents()` to `path` with `mode` unless `path` exists; `Ok(false)` if it did.
fn create_new(
    path: &Path,
    contents: impl FnOnce() -> std::io::Result<String>,
    mode: u32,
) -> std::io::Result<bool> {
    if path.symlink_metadata().is_ok() {
        return Ok(false);
    }
    let contents = zeroize::Zeroizing::new(contents()?);
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    };
    let result = write().and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(true),
        // Made by someone else between our check and our link: theirs stays.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn makes_the_missing_files_private_and_keeps_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        std::fs::write(secrets.join("app.password"), "mine-and-long-enough\n").unwrap();

        let made = init(&secrets).unwrap();
        let names: Vec<_> = made
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "tunnel.key",
                "admin.password",
                "replication.password",
                "app.password",
                "operator-token"
            ]
        );
        for f in &made {
            assert_eq!(f.created, !f.path.ends_with("app.password"), "{f:?}");
        }
        assert_eq!(
            std::fs::read_to_string(secrets.join("app.password")).unwrap(),
            "mine-and-long-enough\n"
        );
        assert_eq!(mode(&secrets.join("tunnel.key")), 0o400);
        assert_eq!(
            std::fs::metadata(secrets.join("tunnel.key")).unwrap().len(),
            32
        );
        assert_eq!(mode(&secrets.join("operator-token")), 0o600);
        let token = std::fs::read_to_string(secrets.join("operator-token")).unwrap();
        assert_eq!(token.trim_end().len(), 64);
        assert!(token.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
        // The passwords pass the agent's own checks.
        Passwords::load(&secrets).unwrap();

        let before: Vec<Vec<u8>> = made
            .iter()
            .map(|f| std::fs::read(&f.path).unwrap())
            .collect();
        let again = init(&secrets).unwrap();
        assert!(again.iter().all(|f| !f.created));
        let after: Vec<Vec<u8>> = again
            .iter()
            .map(|f| std::fs::read(&f.path).unwrap())
            .collect();
        assert_eq!(before, after);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&secrets).unwrap().count(), 5);
    }
}
