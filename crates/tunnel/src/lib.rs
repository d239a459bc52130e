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
pub mod metrics;
mod net;
mod pump;
mod resolve;

use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

pub use addr::{Address, AddressError};
pub use config::{Mode, TunnelConfig, DEFAULT_COALESCE};
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
    loop {
        // Like spiped, stop accepting at the limit: further clients wait in the listen backlog.
        let permit = match &limit {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    shared.metrics.limit_reached();
                    tracing::warn!(
                        limit = sem_limit(shared),
                        "connection limit reached; not accepting until a connection closes"
                    );
                    tokio::select! {
                        p = sem.clone().acquire_owned() => Some(p.expect("semaphore never closed")),
                        () = &mut stopping => return,
                    }
                }
            },
        };
        let accepted = tokio::select! {
            r = listener.accept(keepalive) => r,
            () = &mut stopping => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = Arc::clone(shared);
                tasks.spawn(async move {
                    conn::serve(stream, peer, shared).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn sem_limit(shared: &conn::Shared) -> usize {
    shared.config.max_connections.unwrap_or(0)
}
