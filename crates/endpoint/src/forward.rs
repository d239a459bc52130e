//! Byte-for-byte forwarding, both ways at once.
//!
//! Each direction reads a batch and writes all of it before reading again, so a slow reader
//! pushes back on its writer and memory stays bounded. End of stream travels as a half-close:
//! when the client stops sending (EOF), the primary's write side is shut down and its remaining
//! replies still reach the client. An error in either direction ends both at once.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::busy_poll::Activity;
use crate::metrics::{Direction, EndpointMetrics};

/// Big enough for `redis-benchmark -P 16` batches in one read.
const BATCH: usize = 32 * 1024;

/// A connection to a primary, over either kind of [`crate::Target`].
#[derive(Debug)]
pub(crate) enum Upstream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Forwards until both directions reached end of stream, or either failed. The sockets stay the
/// caller's, so it decides when they close (after counting why).
pub(crate) async fn relay(
    client: &mut TcpStream,
    primary: &mut Upstream,
    metrics: &EndpointMetrics,
    activity: Option<&Activity>,
) -> io::Result<()> {
    // Each stream's own borrowed halves: no lock between the two directions, unlike
    // `tokio::io::split`.
    let (client_read, client_write) = client.split();
    match primary {
        Upstream::Tcp(s) => {
            let (r, w) = s.split();
            both_ways(client_read, client_write, r, w, metrics, activity).await
        }
        Upstream::Unix(s) => {
            let (r, w) = s.split();
            both_ways(client_read, client_write, r, w, metrics, activity).await
        }
    }
}

async fn both_ways(
    client_read: impl AsyncRead + Unpin,
    client_write: impl AsyncWrite + Unpin,
    primary_read: impl AsyncRead + Unpin,
    primary_write: impl AsyncWrite + Unpin,
    metrics: &EndpointMetrics,
    activity: Option<&Activity>,
) -> io::Result<()> {
    let up = pump(
        client_read,
        primary_write,
        Direction::ToPrimary,
        metrics,
        activity,
    );
    let down = pump(
        primary_read,
        client_write,
        Direction::ToClient,
        metrics,
        activity,
    );
    tokio::try_join!(up, down).map(drop)
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    direction: Direction,
    metrics: &EndpointMetrics,
    activity: Option<&Activity>,
) -> io::Result<()> {
    let mut buf = vec![0u8; BATCH];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        metrics.carried(direction, n);
        if let Some(activity) = activity {
            activity.touch();
        }
    }
}
