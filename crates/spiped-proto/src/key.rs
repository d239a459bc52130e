//! The shared secret `K = SHA256(key file)`.

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The 256-bit pre-shared secret both peers derive from the same key file.
///
/// spiped hashes the whole file, whatever its length, so a key is any byte string; the caller
/// decides how short a file it tolerates. `Debug` never prints the secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    /// Derives `K` from the complete contents of a key file.
    pub fn from_file_contents(contents: &[u8]) -> Self {
        Self(Sha256::digest(contents).into())
    }

    /// A short public fingerprint: the first 8 hex digits of `SHA256("georep key id" ‖ K)`.
    ///
    /// Safe to log: it identifies which key of a rotation a peer used without revealing `K`.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"georep key id");
        h.update(self.0);
        h.finalize()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(MASKED, id {})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let k = Key::from_file_contents(b"secret");
        let shown = format!("{k:?}");
        assert!(shown.contains("MASKED"));
        let hex: String = k.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex[..8]));
    }

    #[test]
    fn key_is_sha256_of_the_file() {
        // SHA-256 of the empty string: spiped's own tests use `-k /dev/null`.
        let k = Key::from_file_contents(b"");
        assert_eq!(k.as_bytes()[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }
}
