//! A tunnel's settings, already parsed and checked.

use std::net::SocketAddr;
use std::time::Duration;

use spiped_proto::{ForwardSecrecy, Key};

use crate::addr::Address;

/// spiped's `-e` / `-d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accept plaintext, send encrypted (the protocol client).
    Encrypt,
    /// Accept encrypted, send plaintext (the protocol server).
    Decrypt,
}

/// Everything one tunnel endpoint needs, besides its listening socket.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// Which way this endpoint converts.
    pub mode: Mode,
    /// Where accepted connections are forwarded.
    pub target: Address,
    /// Keys in order: an encrypting endpoint uses the first, a decrypting one accepts any.
    pub keys: Vec<Key>,
    /// `-f` / `-g`.
    pub forward_secrecy: ForwardSecrecy,
    /// Most connections open at once (`-n`); `None` is unlimited.
    pub max_connections: Option<usize>,
    /// Most connections still in the handshake at once, on a decrypting endpoint
    /// (`--handshake-limit`); `None` is unlimited. See [`default_handshake_limit`].
    pub handshake_limit: Option<usize>,
    /// Bound on connecting to the target and, separately, on the handshake (`-o`).
    pub timeout: Duration,
    /// SO_KEEPALIVE on both sockets (off with `-j`).
    pub keepalive: bool,
    /// How often to re-resolve a target host name (`-r`); `None` resolves once (`-R`).
    pub resolve_every: Option<Duration>,
    /// Source address for outgoing connections (`-b`).
    pub bind: Option<SocketAddr>,
    /// How long a partial packet may wait for more plaintext; zero sends every read at once.
    pub coalesce: Duration,
    /// After shutdown starts, how long open connections may take to finish.
    pub shutdown_grace: Duration,
}

impl TunnelConfig {
    /// spiped's defaults for everything but the mode, target and keys.
    pub fn new(mode: Mode, target: Address, keys: Vec<Key>) -> Self {
        Self {
            mode,
            target,
            keys,
            forward_secrecy: ForwardSecrecy::Offer,
            max_connections: Some(100),
            handshake_limit: Some(default_handshake_limit(Some(100))),
            timeout: Duration::from_secs(5),
            keepalive: true,
            resolve_every: Some(Duration::from_secs(60)),
            bind: None,
            coalesce: DEFAULT_COALESCE,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Default hold-back for partial packets; see `docs/benchmarks.md` for the measurement behind it.
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(1);

/// The unauthenticated connections a decrypting endpoint allows when `--handshake-limit` is not
/// given: a quarter of `-n` (25 with spiped's 100), at least 1; 25 when `-n` is unlimited.
///
/// Honest peers need few: one handshake per replica connection, more only in the reconnect burst
/// after a WAN cut heals. A new connection evicts the oldest unauthenticated one, so the limit is
/// also how many connections a flood must open within one honest handshake (about one round
/// trip) to starve it: 25 within 100 ms is 250 connections a second, kept up for as long as the
/// attack lasts, and even that never touches an established connection.
pub fn default_handshake_limit(max_connections: Option<usize>) -> usize {
    max_connections.map_or(25, |n| (n / 4).max(1))
}
