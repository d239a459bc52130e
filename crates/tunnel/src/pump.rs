//! Moves bytes both ways through an established session.
//!
//! Each direction reads a large batch, seals or opens it, and writes the whole result before
//! reading again, so a slow writer pushes back on its reader and memory stays bounded (about
//! 64 KiB per direction). End of stream travels as a TCP half-close, as in spiped: when one side
//! stops sending, the other still receives everything. Any error drops both directions at once.

use std::io;
use std::time::Duration;

use bytes::BufMut;
use spiped_proto::{Decryptor, Encryptor, OpenError, Session, MAX_PAYLOAD, PACKET_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::coalesce::Coalescer;
use crate::low_water::{Drained, Mark};
use crate::metrics::{Direction, TunnelMetrics};
use crate::net::{BoxWrite, Halves, ReadHalf};

/// Packets sealed or opened per batch: 64 KiB of plaintext.
const BATCH_PACKETS: usize = 64;

/// The side of the tunnel an I/O error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The unencrypted connection (the application or Redis).
    Plaintext,
    /// The encrypted connection (the peer tunnel).
    Wire,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "plaintext",
            Self::Wire => "encrypted",
        })
    }
}

/// Why an established connection was dropped.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// The peer sent a packet that does not authenticate.
    #[error("dropped at packet from peer: {0}")]
    Packet(#[from] OpenError),
    /// The peer closed in the middle of a packet.
    #[error("peer closed the encrypted connection mid-packet ({0} bytes of a partial packet)")]
    Truncated(usize),
    /// Reading or writing one of the sockets failed.
    #[error("{side} connection failed: {source}")]
    Io {
        /// Which connection.
        side: Side,
        /// The error.
        source: io::Error,
    },
}

impl PumpError {
    /// A short stable name, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Packet(e) => e.reason(),
            Self::Truncated(_) => "truncated",
            Self::Io {
                side: Side::Plaintext,
                ..
            } => "plaintext_io",
            Self::Io {
                side: Side::Wire, ..
            } => "encrypted_io",
        }
    }
}

fn io_err(side: Side) -> impl FnOnce(io::Error) -> PumpError {
    move |source| PumpError::Io { side, source }
}

/// Runs both directions until both have seen end of stream, or either fails.
pub(crate) async fn pump(
    plain: Halves,
    wire: Halves,
    session: Session,
    coalesce: Duration,
    metrics: &TunnelMetrics,
) -> Result<(), PumpError> {
    let outbound = seal(
        plain.read,
        wire.write,
        Encryptor::new(session.sealer),
        coalesce,
        metrics,
    );
    let inbound = open(
        wire.read,
        plain.write,
        Decryptor::new(session.opener),
        metrics,
    );
    tokio::try_join!(outbound, inbound).map(|_| ())
}

/// Plaintext → packets.
async fn seal(
    mut from: ReadHalf,
    mut to: BoxWrite,
    mut encryptor: Encryptor,
    coalesce: Duration,
    metrics: &TunnelMetrics,
) -> Result<(), PumpError> {
    let batch = BATCH_PACKETS * MAX_PAYLOAD;
    let mut coalescer = Coalescer::new(coalesce);
    let mut pending = Vec::with_capacity(batch + MAX_PAYLOAD);
    let mut wire = Vec::with_capacity((BATCH_PACKETS + 2) * PACKET_LEN);
    // Set while a partial packet is held back hoping for more bytes.
    let mut hold: Option<Instant> = None;
    // While holding, the socket wakes us only once the packet can be completed.
    let mut mark = Mark::new();
    loop {
        let space = batch + MAX_PAYLOAD - pending.len();
        let read = match hold {
            None => {
                mark.lower(&from).map_err(io_err(Side::Plaintext))?;
                Some(from.read_buf(&mut (&mut pending).limit(space)).await)
            }
            Some(deadline) => {
                mark.raise(&from, MAX_PAYLOAD - pending.len() % MAX_PAYLOAD);
                tokio::time::timeout_at(deadline, from.read_buf(&mut (&mut pending).limit(space)))
                    .await
                    .ok()
            }
        };
        let eof = match read {
            Some(Ok(n)) => n == 0,
            Some(Err(e)) => return Err(io_err(Side::Plaintext)(e)),
            // The hold is over: what arrived below the mark goes into this packet too.
            None => match mark.lower_and_drain(&from, &mut pending, space) {
                Ok(drained) => drained == Drained::Eof,
                Err(e) => return Err(io_err(Side::Plaintext)(e)),
            },
        };
        let now = Instant::now();
        let full = pending.len() / MAX_PAYLOAD * MAX_PAYLOAD;
        let seal_len = if eof || read.is_none() || full == pending.len() {
            hold = None;
            pending.len()
        } else {
            if full > 0 {
                // The tail is all from the read that just arrived: give it a fresh window.
                coalescer.flushed(now);
                hold = None;
            }
            if hold.is_none() {
                hold = coalescer.hold_until(now);
            }
            if hold.is_some() {
                full
            } else {
                pending.len()
            }
        };
        if seal_len > 0 {
            encryptor.seal(&pending[..seal_len], &mut wire);
            pending.drain(..seal_len);
            to.write_all(&wire).await.map_err(io_err(Side::Wire))?;
            metrics.carried(Direction::Outbound, seal_len, wire.len() / PACKET_LEN);
            wire.clear();
            coalescer.flushed(now);
        }
        if eof {
            return to.shutdown().await.map_err(io_err(Side::Wire));
        }
    }
}

/// Packets → plaintext.
async fn open(
    mut from: ReadHalf,
    mut to: BoxWrite,
    mut decryptor: Decryptor,
    metrics: &TunnelMetrics,
) -> Result<(), PumpError> {
    let capacity = BATCH_PACKETS * PACKET_LEN;
    let mut wire = Vec::with_capacity(capacity);
    let mut plain = Vec::with_capacity(BATCH_PACKETS * MAX_PAYLOAD);
    loop {
        let space = capacity - wire.len();
        let n = from
            .read_buf(&mut (&mut wire).limit(space))
            .await
            .map_err(io_err(Side::Wire))?;
        if n == 0 {
            if !wire.is_empty() {
                return Err(PumpError::Truncated(wire.len()));
            }
            return to.shutdown().await.map_err(io_err(Side::Plaintext));
        }
        let before = decryptor.packets();
        let opened = decryptor.open(&mut wire, &mut plain);
        // Deliver every packet that authenticated before acting on a bad one, so the receiver
        // gets an exact prefix of what was sent and nothing else.
        if !plain.is_empty() {
            to.write_all(&plain)
                .await
                .map_err(io_err(Side::Plaintext))?;
            let packets = (decryptor.packets() - before) as usize;
            metrics.carried(Direction::Inbound, plain.len(), packets);
            plain.clear();
        }
        wire.drain(..opened?);
    }
}
