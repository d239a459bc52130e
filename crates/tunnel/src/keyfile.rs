//! Key files: loading (with a minimum and a maximum size) and generating; and the bounded,
//! permission-checked read that every secret file of georep goes through.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use spiped_proto::Key;
use zeroize::Zeroizing;

/// Key files shorter than this are refused unless explicitly allowed: 256 bits of entropy is the
/// least the protocol's security argument assumes.
pub const MIN_KEY_FILE_LEN: usize = 32;

/// The most bytes read from a key or password file. spiped hashes the whole file, so any size
/// is a valid key, but reading without a bound turns `-k /dev/zero` into an out-of-memory kill;
/// 1 MiB is 32,768 times a generated key and more than any real key file.
pub const MAX_SECRET_FILE_LEN: usize = 1 << 20;

/// How large a freshly generated key is.
pub const GENERATED_KEY_LEN: usize = 32;

/// A secret file (key or password) that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFileError {
    /// Opening or reading failed.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds more than [`MAX_SECRET_FILE_LEN`] bytes.
    #[error(
        "{path} holds more than {MAX_SECRET_FILE_LEN} bytes (1 MiB); no key or password file \
         is that large: is it the right file?"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("key file: {0}")]
    Read(#[from] SecretFileError),
    /// The file holds fewer than [`MIN_KEY_FILE_LEN`] bytes.
    #[error(
        "key file {path} is {len} bytes; at least {MIN_KEY_FILE_LEN} are required \
         (create one with `georep keygen`, or pass --allow-short-key to accept it)"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: usize,
    },
    /// `keygen` would overwrite an existing file.
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Writing a new key failed.
    #[error("cannot write key file {path}: {source}")]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads a key file (`-` is standard input, as in spiped) and derives its key.
pub fn load(path: &Path, allow_short: bool) -> Result<Key, KeyFileError> {
    let contents = if path == Path::new("-") {
        read_bounded(std::io::stdin().lock(), path)?
    } else {
        read_secret_file(path, "key")?
    };
    if contents.len() < MIN_KEY_FILE_LEN && !allow_short {
        return Err(KeyFileError::TooShort {
            path: path.to_owned(),
            len: contents.len(),
        });
    }
    Ok(Key::from_file_contents(&contents))
}

/// Reads a secret file (`what` names it in logs: "key", "password"), at most
/// [`MAX_SECRET_FILE_LEN`] bytes, and warns if users other than its reader may read it too.
pub fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let file = std::fs::File::open(path).map_err(|source| SecretFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(meta) = file.metadata() {
        warn_if_exposed(path, what, &meta);
    }
    read_bounded(file, path)
}

fn read_bounded(reader: impl Read, path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let mut contents = Zeroizing::new(Vec::new());
    // One byte more than allowed tells "exactly the limit" from "larger".
    reader
        .take(MAX_SECRET_FILE_LEN as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(|source| SecretFileError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
    if contents.len() > MAX_SECRET_FILE_LEN {
        return Err(SecretFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(contents)
}

/// World-readable is always a warning. Group-readable is one too, unless the group is how this
/// process reads the file: Kubernetes mounts Secrets `0440` for the pod's `fsGroup`, owned by
/// root, and that sharing is deliberate.
fn warn_if_exposed(path: &Path, what: &str, meta: &std::fs::Metadata) {
    if !meta.is_file() {
        return; // a device or pipe (`/dev/stdin`): its mode says nothing about the secret
    }
    let mode = meta.mode() & 0o7777;
    let euid = nix::unistd::geteuid().as_raw();
    let readers = if mode & 0o004 != 0 {
        "every user"
    } else if mode & 0o040 != 0 && (euid == meta.uid() || euid == 0) {
        "its group"
    } else {
        return;
    };
    tracing::warn!(
        path = %path.display(),
        mode = format_args!("{mode:04o}"),
        "{what} file is readable by {readers}; restrict it: chmod 0400 (0440 for a group \
         that only the reading service is in)"
    );
}

/// Writes [`GENERATED_KEY_LEN`] random bytes to a new file with mode 0400.
pub fn generate(path: &Path) -> Result<(), KeyFileError> {
    let mut key = Zeroizing::new([0u8; GENERATED_KEY_LEN]);
    getrandom::getrandom(&mut *key).map_err(|e| KeyFileError::Unwritable {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                path: path.to_owned(),
            },
            _ => KeyFileError::Unwritable {
                path: path.to_owned(),
                source,
            },
        })?;
    file.write_all(&*key)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyFileError::Unwritable {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_after_the_bound() {
        let e = load(Path::new("/dev/zero"), false).unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("1 MiB"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = load(Path::new("/nonexistent/k"), false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("key file: cannot read /nonexistent/k"), "{e}");
    }
}
