//! Drives a [`spiped_proto::Handshake`] over a connection, under a deadline.

use std::time::Duration;

use spiped_proto::{ForwardSecrecy, Handshake, HandshakeError, Key, Role, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Halves;

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    /// The peer's messages were refused.
    #[error(transparent)]
    Refused(#[from] HandshakeError),
    /// The peer did not finish within `-o`.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection mid-handshake.
    #[error("peer closed the connection during the handshake (wrong key, or it requires forward secrecy?)")]
    Closed,
    /// A socket error.
    #[error("handshake I/O failed: {0}")]
    Io(std::io::Error),
}

impl HandshakeFailure {
    /// A short stable name, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused(e) => e.reason(),
            Self::Timeout(_) => "timeout",
            Self::Closed => "closed",
            Self::Io(_) => "io",
        }
    }
}

impl From<std::io::Error> for HandshakeFailure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Self::Closed
        } else {
            Self::Io(e)
        }
    }
}

/// Runs the handshake on `conn`, giving up after `timeout`.
pub(crate) async fn run(
    conn: &mut Halves,
    role: Role,
    keys: Vec<Key>,
    forward_secrecy: ForwardSecrecy,
    timeout: Duration,
) -> Result<Session, HandshakeFailure> {
    tokio::time::timeout(timeout, exchange(conn, role, keys, forward_secrecy))
        .await
        .map_err(|_| HandshakeFailure::Timeout(timeout))?
}

async fn exchange(
    conn: &mut Halves,
    role: Role,
    keys: Vec<Key>,
    forward_secrecy: ForwardSecrecy,
) -> Result<Session, HandshakeFailure> {
    let mut random = zeroize::Zeroizing::new([0u8; 64]);
    getrandom::getrandom(&mut *random)
        .map_err(|e| HandshakeFailure::Io(std::io::Error::other(e)))?;
    let nonce = random[..32].try_into().expect("32 bytes");
    let exponent = random[32..].try_into().expect("32 bytes");
    let mut hs = Handshake::new(role, keys, forward_secrecy, nonce, exponent);
    let mut out = Vec::new();
    loop {
        hs.take_outgoing(&mut out);
        if !out.is_empty() {
            conn.write.write_all(&out).await?;
            out.clear();
        }
        if hs.is_established() {
            return Ok(hs.into_session().expect("established"));
        }
        // Messages have fixed sizes: read exactly one, so no data bytes are swallowed.
        let mut msg = vec![0u8; hs.wants()];
        conn.read.read_exact(&mut msg).await?;
        // The Diffie-Hellman steps cost a few milliseconds of CPU: keep them off the IO threads.
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = hs.handle(&msg);
            (hs, result)
        })
        .await
        .map_err(|e| HandshakeFailure::Io(std::io::Error::other(e)))?;
        hs = back;
        result?;
    }
}
