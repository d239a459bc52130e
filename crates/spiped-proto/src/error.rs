//! Errors from data the peer sent. Each one ends the connection.

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's Diffie-Hellman MAC did not verify under any configured key: a wrong key, or a
    /// message altered in transit.
    #[error("handshake MAC did not verify (wrong key or tampered handshake)")]
    BadMac,
    /// The peer's Diffie-Hellman value is not a valid group element.
    #[error("peer sent an invalid Diffie-Hellman value")]
    BadDhValue,
    /// Forward secrecy is required (`-g`) and the peer skipped Diffie-Hellman (`-f`).
    #[error("peer does not offer forward secrecy, which is required")]
    ForwardSecrecyRequired,
}

impl HandshakeError {
    /// A short stable name, for metric labels and structured logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadMac => "bad_mac",
            Self::BadDhValue => "bad_dh_value",
            Self::ForwardSecrecyRequired => "forward_secrecy_required",
        }
    }
}

/// Why a data packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The packet's MAC did not verify: it was altered, replayed, reordered or dropped.
    #[error("packet MAC did not verify (tampered, replayed or reordered packet)")]
    BadMac,
    /// The authenticated length field is 0 or above 1,024.
    #[error("packet declares an invalid payload length {0}")]
    BadLength(u32),
    /// 2^64 packets were sent under one key: the protocol cannot number another.
    #[error("packet counter exhausted")]
    CounterExhausted,
}

impl OpenError {
    /// A short stable name, for metric labels and structured logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadMac => "bad_mac",
            Self::BadLength(_) => "bad_length",
            Self::CounterExhausted => "counter_exhausted",
        }
    }
}
