//! The Redis ACL users georep manages, and their passwords.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use region_spec::credentials::{ADMIN_USER, APP_USER, REPLICATION_USER};

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
            let text = std::fs::read_to_string(&path).map_err(|e| CredentialsError {
                path: path.clone(),
                why: e.to_string(),
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
    pub fn acl_file(&self) -> String {
        format!(
            "user default off resetkeys resetchannels -@all\n\
             user {ADMIN_USER} on #{} ~* &* +@all\n\
             user {REPLICATION_USER} on #{} resetkeys resetchannels -@all +psync +replconf +ping\n\
             user {APP_USER} on #{} ~* &* +@all -@admin -@dangerous\n",
            self.admin.sha256_hex(),
            self.replication.sha256_hex(),
            self.app.sha256_hex(),
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
