//! The tokio driver: accepts connections, feeds each one's bytes to its [`Session`], and pushes
//! `+switch-master` to subscribers when the [`View`] changes. No protocol decisions here.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::metrics::SentinelMetrics;
use crate::session::{CloseReason, Credentials, Flow, Note, Session, SessionLimits, ViewChanges};
use crate::view::View;

/// Connection-level bounds of the Sentinel port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once; beyond it a client gets Redis's
    /// `-ERR max number of clients reached` and is closed.
    pub max_connections: usize,
    /// Per-connection bounds (request size, subscriptions).
    pub session: SessionLimits,
    /// A connection with no subscription that sends nothing for this long is closed (Sentinel
    /// clients ask and hang up, or keep a subscription open).
    pub idle_timeout: Duration,
    /// A client that does not read its replies for this long is closed.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            session: SessionLimits::default(),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
        }
    }
}

struct Shared {
    view: watch::Receiver<View>,
    auth: Option<Arc<Credentials>>,
    limits: Limits,
    metrics: SentinelMetrics,
    next_id: AtomicU64,
}

/// Serves the Sentinel protocol on `listener` until `shutdown` turns true, answering from the
/// latest `view`. With `auth`, clients must `AUTH` (or `HELLO … AUTH`) first.
///
/// Returns once every connection has closed (at shutdown they are closed at once: Sentinel
/// clients reconnect on their own).
pub async fn serve(
    listener: TcpListener,
    view: watch::Receiver<View>,
    auth: Option<Credentials>,
    limits: Limits,
    metrics: SentinelMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        view,
        auth: auth.map(Arc::new),
        limits,
        metrics,
        next_id: AtomicU64::new(1),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on the error.
                tracing::warn!(error = %e, "sentinel: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.metrics.refuse("max_clients");
            tracing::warn!(%peer, limit = limits.max_connections, "sentinel: connection limit reached");
            tasks.spawn(refuse(stream, limits.write_timeout));
            continue;
        };
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            shared.metrics.opened();
            let reason = connection(stream, &shared, shutdown).await;
            shared.metrics.ended();
            if let Some(reason) = reason {
                shared.metrics.close(reason);
                tracing::debug!(%peer, reason, "sentinel: connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn refuse(mut stream: TcpStream, timeout: Duration) {
    let reply = b"-ERR max number of clients reached\r\n";
    if let Ok(Ok(())) = tokio::time::timeout(timeout, stream.write_all(reply)).await {
        close_after_reply(&mut stream).await;
    }
}

/// Runs one connection; returns why the server closed it, or `None` when the client left.
async fn connection(
    mut stream: TcpStream,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> Option<&'static str> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let limits = shared.limits;
    let mut session = Session::new(id, shared.auth.clone(), limits.session);
    let mut view = shared.view.clone();
    let mut changes = ViewChanges::new(&view.borrow_and_update());
    let mut watching = true;
    let mut input = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        // Subscribers legitimately stay silent for as long as they live.
        let idle = if session.is_subscribed() {
            Duration::MAX
        } else {
            limits.idle_timeout
        };
        let mut flow = Flow::Continue;
        tokio::select! {
            read = tokio::time::timeout(idle, stream.read(&mut chunk)) => match read {
                Err(_) => return Some("idle"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => {
                    input.extend_from_slice(&chunk[..n]);
                    flow = session.feed(&mut input, &view.borrow(), &mut out);
                    count_notes(&mut session, &shared.metrics);
                }
            },
            changed = view.changed(), if watching => match changed {
                // The agent dropped the view: keep answering from the last one.
                Err(_) => watching = false,
                Ok(()) => {
                    let event = changes.update(&view.borrow_and_update());
                    if let Some(event) = event {
                        let before = out.len();
                        session.publish(&event, &mut out);
                        if out.len() > before {
                            shared.metrics.switch_master_sent();
                        }
                    }
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => return Some("shutdown"),
        }
        if !out.is_empty() {
            let write = tokio::time::timeout(limits.write_timeout, stream.write_all(&out)).await;
            match write {
                Err(_) => return Some("write_timeout"),
                Ok(Err(_)) => return None,
                Ok(Ok(())) => out.clear(),
            }
        }
        match flow {
            Flow::Continue => {}
            Flow::Close(CloseReason::Quit) => {
                let _ = stream.shutdown().await;
                return None;
            }
            Flow::Close(CloseReason::Protocol(e)) => {
                tracing::info!(reason = e.reason(), "sentinel: malformed request; closing");
                close_after_reply(&mut stream).await;
                return Some("protocol_error");
            }
        }
    }
}

/// Closes after an error reply. The client's unread bytes are drained for a moment first:
/// closing a socket with unread data sends a reset, which can destroy the reply before the client
/// reads it.
async fn close_after_reply(stream: &mut TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

fn count_notes(session: &mut Session, metrics: &SentinelMetrics) {
    for note in session.take_notes() {
        metrics.reject(match note {
            Note::AuthFailed => "auth_failed",
            Note::NoAuth => "noauth",
            Note::UnknownCommand => "unknown_command",
        });
    }
}
