//! The accept loop and per-connection limits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// What one listener lets its clients hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once. One more is accepted and closed at once (and counted), so a
    /// flood costs file descriptors only for the moment it takes to close them.
    pub max_connections: usize,
    /// Time a client has to send its whole request head after connecting.
    pub header_timeout: Duration,
    /// Time the whole exchange may take, handler included: a bound for clients that never read
    /// the response. Handlers that wait longer (a switchover) must be bounded below this.
    pub exchange_timeout: Duration,
    /// Largest request head accepted (hyper answers 431 above it).
    pub max_head_bytes: usize,
    /// How long in-flight exchanges may finish once shutdown begins.
    pub shutdown_grace: Duration,
    /// Counts connections closed at accept because `max_connections` were in use.
    pub refused: Counter,
}

impl Limits {
    /// Limits for a listener scraped by Prometheus and probed by the kubelet: many clients at
    /// once is legitimate, none needs more than a few seconds to send a GET.
    ///
    /// The connection bound leaves most of a typical 20,000-descriptor limit to the tunnels.
    pub fn open() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(5),
            exchange_timeout: Duration::from_secs(30),
            max_head_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(1),
            refused: Counter::default(),
        }
    }

    /// Limits for an operator's control surface: few clients, but a change of primary may take
    /// as long as its own timeout (bounded by the handler, at most a minute).
    pub fn control() -> Self {
        Self {
            max_connections: 256,
            exchange_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(5),
            ..Self::open()
        }
    }
}

/// The address of the client that sent a request; every request served by [`serve`] carries it
/// as an extension (`axum::Extension<Peer>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets in-flight
/// exchanges finish for `limits.shutdown_grace`.
///
/// Accept errors (a descriptor limit reached by the rest of the process) are logged and retried
/// after a short pause rather than ending the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .max_buf_size(limits.max_head_bytes.max(8192));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept an HTTP connection; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            limits.refused.inc();
            tracing::debug!(%peer, "HTTP connection refused: connection limit reached");
            drop(stream);
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let exchange_timeout = limits.exchange_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(exchange_timeout, connection).await {
                Ok(Ok(())) => {}
                // Slow or malformed clients: hyper has answered them (408/431/400) if it could.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTP connection ended"),
                Err(_) => tracing::debug!(%peer, "HTTP exchange timed out"),
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP exchanges still running at shutdown were cut");
    }
    Ok(())
}
