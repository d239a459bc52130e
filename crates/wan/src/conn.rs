//! Accepting, refusing during a cut, and one task per relayed connection.

use std::future::pending;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::pipe::{pipe, ConnCtx};
use crate::shared::{OpenGuard, Shared};
use crate::Direction;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// End of stream was delivered both ways.
    Clean,
    /// The link shut down.
    Shutdown,
    /// The link was cut.
    Cut,
    /// An error on either side, now due on the other.
    Reset,
    /// The upstream could not be reached.
    NoUpstream,
}

/// Completes when `shutdown` turns true or its sender is dropped.
async fn stopping(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Makes the kernel answer with RST instead of FIN when `stream` is dropped.
fn abort_on_drop(stream: &TcpStream) {
    if let Err(e) = SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "cannot set SO_LINGER 0; closing with FIN");
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = stopping(shutdown.clone());
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            r = listener.accept() => r,
        };
        let (client, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(link = %shared.name, error = %e, "accept failed");
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let control = *shared.control.borrow();
        if control.cut {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(link = %shared.name, %peer, "link is cut: connection refused");
            abort_on_drop(&client);
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(link = %shared.name, conn = id, %peer, "connection accepted");
        let open = OpenGuard::new(&shared);
        let task = serve(
            client,
            Arc::clone(&shared),
            id,
            control.cuts,
            shutdown.clone(),
            open,
        );
        shared.tracker.spawn(task);
    }
    tracing::debug!(link = %shared.name, "link stopped accepting");
}

/// Relays one connection until it ends, is cut, or the link shuts down.
async fn serve(
    mut client: TcpStream,
    shared: Arc<Shared>,
    id: u64,
    cuts: u64,
    shutdown: watch::Receiver<bool>,
    _open: OpenGuard,
) {
    let mut control = shared.control.subscribe();
    let cut = async move {
        // The sender lives in `shared`, which outlives this task.
        if control.wait_for(|c| c.cuts != cuts).await.is_err() {
            pending::<()>().await;
        }
    };
    let mut upstream = None;
    let end = tokio::select! {
        biased;
        () = cut => End::Cut,
        () = stopping(shutdown) => End::Shutdown,
        end = relay(&mut client, &mut upstream, &shared, id) => end,
    };
    tracing::debug!(link = %shared.name, conn = id, ?end, "connection closed");
    match end {
        End::Clean | End::Shutdown => {}
        End::Cut | End::Reset | End::NoUpstream => {
            if end != End::NoUpstream {
                shared.counters.resets.fetch_add(1, Ordering::Relaxed);
            }
            abort_on_drop(&client);
            if let Some(upstream) = &upstream {
                abort_on_drop(upstream);
            }
        }
    }
}

/// Connects upstream (into `slot`, so the caller can reset it) and runs both directions.
async fn relay(
    client: &mut TcpStream,
    slot: &mut Option<TcpStream>,
    shared: &Shared,
    id: u64,
) -> End {
    let upstream = match TcpStream::connect(shared.upstream).await {
        Ok(s) => slot.insert(s),
        Err(e) => {
            shared
                .counters
                .upstream_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                link = %shared.name, conn = id, upstream = %shared.upstream, error = %e,
                "cannot reach upstream; resetting the client"
            );
            return End::NoUpstream;
        }
    };
    // Chunks are already timed; the kernel must not hold them back for coalescing.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let ctx = ConnCtx::new(shared, id);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let both = async {
        match tokio::join!(
            pipe(client_read, upstream_write, Direction::Up, &ctx),
            pipe(upstream_read, client_write, Direction::Down, &ctx),
        ) {
            (Ok(()), Ok(())) => End::Clean,
            // A reset is scheduled; the other branch fires when it is due.
            _ => pending().await,
        }
    };
    tokio::select! {
        end = both => end,
        () = ctx.reset_due() => End::Reset,
    }
}
