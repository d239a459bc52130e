//! Replication IDs: 40 lowercase hexadecimal characters, as Redis makes them.

use std::fmt;

/// A replication ID (`master_replid`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplId([u8; 40]);

/// Text that is not a replication ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a replication ID (40 hex characters): {0:?}")]
pub struct ReplIdError(pub String);

impl ReplId {
    /// Parses 40 hexadecimal characters.
    pub fn parse(text: &[u8]) -> Result<Self, ReplIdError> {
        let bad = || ReplIdError(String::from_utf8_lossy(text).chars().take(48).collect());
        let bytes: [u8; 40] = text.try_into().map_err(|_| bad())?;
        if !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        Ok(Self(bytes.map(|b| b.to_ascii_lowercase())))
    }

    /// A fresh random ID (for the relay's own EOF marks).
    pub fn random() -> Self {
        let mut raw = [0u8; 20];
        // A failing OS RNG leaves zeros: the only use is an EOF mark, where that is still valid.
        let _ = getrandom::getrandom(&mut raw);
        let mut out = [0u8; 40];
        for (i, b) in raw.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        Self(out)
    }

    /// The 40 ASCII bytes.
    pub fn as_bytes(&self) -> &[u8; 40] {
        &self.0
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("validated as ASCII hex")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for ReplId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ReplId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_forty_hex_characters() {
        let id = ReplId::parse(b"8AC81ab0e0e1bd2b3d6b1f1e8d9d3a1c2b4e5f60").unwrap();
        assert_eq!(id.as_str(), "8ac81ab0e0e1bd2b3d6b1f1e8d9d3a1c2b4e5f60");
        assert!(ReplId::parse(b"?").is_err());
        assert!(ReplId::parse(b"8ac81ab0e0e1bd2b3d6b1f1e8d9d3a1c2b4e5f6z").is_err());
        assert_ne!(ReplId::random(), ReplId::random());
        assert!(ReplId::parse(ReplId::random().as_bytes()).is_ok());
    }
}
