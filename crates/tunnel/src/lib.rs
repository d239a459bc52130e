//! The spiped-compatible tunnel: sockets, timeouts, limits and metrics around `spiped-proto`.
//!
//! ```text
//!   -e (Mode::Encrypt)                               -d (Mode::Decrypt)
//!   app ──plain──► listener ─► dial target ─► handshake (client) ══wire══►
//!                             listener ─► handshake (server) ─► dial target ──plain──► redis
//! ```
//!
//! [`run`] takes an already bound [`Listener`] and a shutdown signal, so the `georep tunnel`
//! command, the agent and tests all drive the same code. This crate makes no protocol decisions;
//! those live in `spiped-proto`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod coalesce;
mod config;
mod conn;
mod handshake;
pub mod keyfile;
mod low_water;
pub mod metrics;
mod net;
mod pending;
mod pump;
mod resolve;

use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::pending::PendingHandshakes;

pub use addr::{Address, AddressError};
pub use config::{default_handshake_limit, Mode, TunnelConfig, DEFAULT_COALESCE};
pub use handshake::HandshakeFailure;
pub use metrics::TunnelMetrics;
pub use net::{Listener, Stream};
pub use pump::{PumpError, Side};
pub use spiped_proto::{ForwardSecrecy, Key};

/// Why a tunnel could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The target could not be resolved at start-up.
    #[error("cannot resolve target {target}: {source}")]
    Resolve {
        /// The target address.
        target: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Serves connections from `listener` until `shutdown` turns true, then stops accepting and lets
/// open connections finish for up to `config.shutdown_grace`.
pub async fn run(
    config: TunnelConfig,
    listener: Listener,
    metrics: TunnelMetrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), TunnelError> {
    assert!(!config.keys.is_empty(), "a tunnel needs at least one key");
    let dial = resolve::start(&config.target, config.resolve_every, shutdown.clone())
        .await
        .map_err(|source| TunnelError::Resolve {
            target: config.target.to_string(),
            source,
        })?;
    let limit = config.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    let grace = config.shutdown_grace;
    let keepalive = config.keepalive;
    let shared = Arc::new(conn::Shared {
        config,
        dial,
        metrics,
    });
    let tasks = TaskTracker::new();

    accept_loop(&listener, limit, keepalive, &shared, &tasks, shutdown).await;

    drop(listener);
    tasks.close();
    let open = tasks.len();
    if open > 0 {
        tracing::info!(
            open,
            ?grace,
            "stopped accepting; waiting for open connections"
        );
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                open = tasks.len(),
                "grace period over; closing remaining connections"
            );
        }
    }
    Ok(())
}

async fn accept_loop(
    listener: &Listener,
    limit: Option<Arc<Semaphore>>,
    keepalive: bool,
    shared: &Arc<conn::Shared>,
    tasks: &TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let stopping = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    // Only a decrypting endpoint has peers to authenticate; an encrypting one accepts local
    // plaintext clients, as trusted as they will ever be.
    let pending = match shared.config.mode {
        Mode::Decrypt => shared.config.handshake_limit.map(PendingHandshakes::new),
        Mode::Encrypt => None,
    };
    let mut drops = DropLog::default();
    loop {
        let no_pending = pending.as_ref().is_none_or(|p| p.is_empty());
        // Every slot held by an authenticated connection: like spiped, stop accepting, so
        // further clients wait in the listen backlog.
        let mut permit = None;
        if let Some(sem) = limit
            .as_ref()
            .filter(|s| s.available_permits() == 0 && no_pending)
        {
            limit_reached(shared);
            tokio::select! {
                p = sem.clone().acquire_owned() => permit = Some(p.expect("semaphore never closed")),
                () = &mut stopping => return,
            }
        }
        let accepted = tokio::select! {
            r = listener.accept(keepalive) => r,
            () = &mut stopping => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Room for the newcomer is made at the expense of the oldest unauthenticated connection,
        // never of an authenticated one.
        let no_slot =
            permit.is_none() && limit.as_ref().is_some_and(|s| s.available_permits() == 0);
        let evicted = match &pending {
            Some(p) if (no_slot || p.is_full()) && p.evict_oldest() => {
                drops.dropped(shared, p.limit());
                true
            }
            _ => false,
        };
        if no_slot && !evicted {
            // Those still in the handshake when we accepted have authenticated meanwhile.
            limit_reached(shared);
        }
        if let (None, Some(sem)) = (&permit, &limit) {
            tokio::select! {
                p = sem.clone().acquire_owned() => permit = Some(p.expect("semaphore never closed")),
                () = &mut stopping => return,
            }
        }
        let slot = pending.as_ref().map(PendingHandshakes::admit);
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            conn::serve(stream, peer, slot, shared).await;
            drop(permit);
        });
    }
}

/// Logs handshake-limit evictions at most once per [`DropLog::EVERY`]: a flood must not flood the
/// logs as well. The metric counts every one.
#[derive(Default)]
struct DropLog {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl DropLog {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn dropped(&mut self, shared: &conn::Shared, limit: usize) {
        shared.metrics.handshake_limit_drop();
        self.unlogged += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            tracing::warn!(
                handshake_limit = limit,
                closed = self.unlogged,
                "handshake limit reached: closing the oldest unauthenticated connections \
                 (a peer that does not complete its handshake, or a flood)"
            );
            self.last = Some(std::time::Instant::now());
            self.unlogged = 0;
        }
    }
}

fn limit_reached(shared: &conn::Shared) {
    shared.metrics.limit_reached();
    tracing::warn!(
        limit = shared.config.max_connections.unwrap_or(0),
        "connection limit reached; not accepting until a connection closes"
    );
}
