//! The Redis ACL users georep manages, and their passwords.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use region_spec::credentials::{ADMIN_USER, APP_USER, REPLICATION_USER};

/// Every key georep writes (cluster metadata, heartbeats) starts with this; [`APP_USER`] can
/// neither read nor write such keys.
pub const GEOREP_KEY_PREFIX: &str = "georep:";

/// What the agent never sends and would let whoever holds its password destroy data, run code,
/// copy the dataset, grant rights, or move the primary behind the epoch's back (`FAILOVER`).
const ADMIN_DENIED: &str = "-debug -module -monitor -sync -psync -failover -flushall -flushdb \
                            -swapdb -migrate -restore -client|kill -acl|setuser -acl|deluser -acl|save";

/// ACL key patterns matching every key except those starting with `prefix` (no glob characters
/// in it). Patterns can only allow, so "not `georep:`…" is the union of "differs from the prefix
/// at character i" for each i, plus each proper prefix itself. The empty key name is not covered.
fn keys_outside(prefix: &str) -> String {
    let mut differs = Vec::new();
    let mut shorter = Vec::new();
    for (i, c) in prefix.char_indices() {
        differs.push(format!("~{}[^{c}]*", &prefix[..i]));
        if i > 0 {
            shorter.push(format!("~{}", &prefix[..i]));
        }
    }
    differs.extend(shorter);
    differs.join(" ")
}

/// A password; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The password itself, for AUTH and CONFIG SET only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn sha256_hex(&self) -> String {
        Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MASKED")
    }
}

/// The three passwords, read from a credentials directory (a mounted Secret in Kubernetes).
#[derive(Debug, Clone)]
pub struct Passwords {
    /// For [`ADMIN_USER`].
    pub admin: Secret,
    /// For [`REPLICATION_USER`].
    pub replication: Secret,
    /// For [`APP_USER`].
    pub app: Secret,
}

/// A credentials directory that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("credentials file {path}: {why}")]
pub struct CredentialsError {
    path: PathBuf,
    why: String,
}

impl Passwords {
    /// File names inside the credentials directory, one password per file.
    pub const FILES: [&'static str; 3] = region_spec::credentials::FILES;

    /// Reads `admin.password`, `replication.password` and `app.password` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, CredentialsError> {
        let read = |name: &str| -> Result<Secret, CredentialsError> {
            let path = dir.join(name);
            // Bounded, and warned about when others can read it, like a tunnel key.
            let bytes = tunnel::keyfile::read_secret_file(&path, "password").map_err(|e| {
                CredentialsError {
                    path: path.clone(),
                    why: e.to_string(),
                }
            })?;
            let text = std::str::from_utf8(&bytes).map_err(|_| CredentialsError {
                path: path.clone(),
                why: "is not UTF-8 text".into(),
            })?;
            let password = text.trim_end_matches(['\n', '\r']).to_owned();
            if password.len() < 16
                || password
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(CredentialsError {
                    path,
                    why: "must hold one password of at least 16 characters, no spaces".into(),
                });
            }
            Ok(Secret(password))
        };
        Ok(Self {
            admin: read(Self::FILES[0])?,
            replication: read(Self::FILES[1])?,
            app: read(Self::FILES[2])?,
        })
    }

    /// The Redis ACL file for these users. Passwords appear only as SHA-256 hashes, and the
    /// default (password-less) user is off, so Redis starts locked.
    ///
    /// What each user can run is pinned by `crates/cli/tests/acl_privileges.rs`.
    pub fn acl_file(&self) -> String {
        format!(
            "user default off resetkeys resetchannels -@all\n\
             user {ADMIN_USER} on #{} ~* &* +@all {ADMIN_DENIED}\n\
             user {REPLICATION_USER} on #{} resetkeys resetchannels -@all +psync +replconf +ping\n\
             user {APP_USER} on #{} {} &* +@all -@admin -@dangerous\n",
            self.admin.sha256_hex(),
            self.replication.sha256_hex(),
            self.app.sha256_hex(),
            keys_outside(GEOREP_KEY_PREFIX),
        )
    }

    /// Admin credentials for [`resp::Conn::connect`].
    pub fn admin_login(&self) -> resp::Credentials {
        resp::Credentials {
            user: ADMIN_USER.into(),
            password: self.admin.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_file_holds_hashes_not_passwords() {
        let p = Passwords {
            admin: Secret("admin-password-123456".into()),
            replication: Secret("replication-password-1".into()),
            app: Secret("application-password-1".into()),
        };
        let acl = p.acl_file();
        assert!(!acl.contains("password"), "{acl}");
        assert!(acl.contains("user default off"));
        assert!(acl.contains("+psync +replconf +ping"));
        assert!(acl.contains("-@admin -@dangerous"));
        assert_eq!(
            keys_outside("ab:"),
            "~[^a]* ~a[^b]* ~ab[^:]* ~a ~ab",
            "every key but ab:…"
        );
        assert_eq!(format!("{p:?}").matches("MASKED").count(), 3);
    }

    #[test]
    fn short_or_missing_passwords_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Passwords::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("admin.password"), "{e}");
        for f in Passwords::FILES {
            std::fs::write(dir.path().join(f), "short\n").unwrap();
        }
        let e = Passwords::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
    }
}
