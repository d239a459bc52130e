//! Key files: loading (with a minimum size) and generating.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use spiped_proto::Key;

/// Key files shorter than this are refused unless explicitly allowed: 256 bits of entropy is the
/// least the protocol's security argument assumes.
pub const MIN_KEY_FILE_LEN: usize = 32;

/// How large a freshly generated key is.
pub const GENERATED_KEY_LEN: usize = 32;

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
    let unreadable = |source| KeyFileError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let mut contents = zeroize::Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut contents)
            .map_err(unreadable)?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut contents))
            .map_err(unreadable)?;
    }
    if contents.len() < MIN_KEY_FILE_LEN && !allow_short {
        return Err(KeyFileError::TooShort {
            path: path.to_owned(),
            len: contents.len(),
        });
    }
    Ok(Key::from_file_contents(&contents))
}

/// Writes [`GENERATED_KEY_LEN`] random bytes to a new file with mode 0400.
pub fn generate(path: &Path) -> Result<(), KeyFileError> {
    let mut key = zeroize::Zeroizing::new([0u8; GENERATED_KEY_LEN]);
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
