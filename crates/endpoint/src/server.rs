//! Accepts client connections, waits for a route, connects and forwards; closes connections
//! whose route is gone.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::busy_poll::{self, Activity};
use crate::forward::{relay, Upstream};
use crate::metrics::{EndpointMetrics, Refusal};
use crate::route::{Route, Target};

/// The error code of a refusal.
///
/// `LOADING` ("the server is not ready yet, try again") is the code client libraries treat as
/// transient: redis-py raises `BusyLoadingError`, a `ConnectionError`, which its `Retry` retries
/// and which makes it reconnect; go-redis retries it in `shouldRetry`; Lettuce and Jedis surface
/// it as a distinct loading exception. `TRYAGAIN` and `MASTERDOWN` are retried by go-redis only.
pub const REFUSAL_CODE: &str = "LOADING";

/// Bounds of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most client connections at once; beyond it a client gets Redis's
    /// `-ERR max number of clients reached` and is closed.
    pub max_connections: usize,
    /// How long a new client waits for a primary (none known, or not yet reachable) before it
    /// is refused. Covers a planned switchover, so clients that connect during one succeed.
    pub hold: Duration,
    /// Longest wait for one connection attempt to the primary.
    pub connect_timeout: Duration,
    /// Longest the forwarding thread keeps polling its sockets after traffic before it sleeps
    /// (adaptive, see `busy_poll`); zero, the default, sleeps at once. Polling saves the
    /// wake-ups that dominate a request's added latency, for CPU time while traffic is dense.
    pub busy_poll: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            hold: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            busy_poll: Duration::ZERO,
        }
    }
}

/// Forwards every connection accepted on `listener` to the current `route` until `shutdown`
/// turns true; then closes every connection and returns.
///
/// The forwarding runs on a thread of its own with a single-threaded runtime, not on the
/// caller's: there it shared the agent's workers with the tunnel server, which encrypts the
/// replication stream while clients write, and the apps bench measured pipelined SET through
/// the endpoint at 0.71× direct on the agent's runtime against 0.85–0.86× on its own thread
/// (two cores; GET 0.79× against 0.77–0.87×, within the noise). One thread carries thousands of
/// connections; it ends when `shutdown` turns true, even if the returned future is dropped first.
pub async fn serve(
    listener: TcpListener,
    route: watch::Receiver<Route>,
    limits: Limits,
    metrics: EndpointMetrics,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let listener = listener.into_std()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("georep-endpoint".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async {
                        let listener = TcpListener::from_std(listener)?;
                        serve_here(listener, route, limits, metrics, shutdown).await
                    })
                });
            let _ = done.send(result);
        })?;
    finished
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the endpoint's thread panicked")))
}

async fn serve_here(
    listener: TcpListener,
    route: watch::Receiver<Route>,
    limits: Limits,
    metrics: EndpointMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = TaskTracker::new();
    // Only when polling: otherwise the write path stamps nothing.
    let activity = (!limits.busy_poll.is_zero()).then(|| Arc::new(Activity::new()));
    if let Some(activity) = activity.clone() {
        let shutdown = shutdown.clone();
        tasks.spawn(async move { busy_poll::run(&activity, limits.busy_poll, shutdown).await });
    }
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (client, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on the error.
                tracing::warn!(error = %e, "endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.refuse(Refusal::MaxClients);
            tracing::warn!(%peer, limit = limits.max_connections, "endpoint: connection limit reached");
            tasks.spawn(refuse(
                client,
                "ERR max number of clients reached".to_owned(),
            ));
            continue;
        };
        let (route, metrics, mut shutdown) = (route.clone(), metrics.clone(), shutdown.clone());
        let activity = activity.clone();
        tasks.spawn(async move {
            metrics.opened();
            tokio::select! {
                () = connection(client, peer, route, limits, &metrics, activity.as_deref()) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
            metrics.ended();
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn connection(
    mut client: TcpStream,
    peer: SocketAddr,
    mut route: watch::Receiver<Route>,
    limits: Limits,
    metrics: &EndpointMetrics,
    activity: Option<&Activity>,
) {
    let deadline = Instant::now() + limits.hold;
    let (mut primary, current) = match connect(&mut route, deadline, limits.connect_timeout).await {
        Ok(connected) => connected,
        Err(refusal) => {
            metrics.refuse(refusal.kind);
            tracing::info!(%peer, reason = refusal.kind.label(), "endpoint: refusing client: {}", refusal.message);
            refuse(
                client,
                format!("{REFUSAL_CODE} georep: {}", refusal.message),
            )
            .await;
            return;
        }
    };
    metrics.forward();
    tokio::select! {
        result = relay(&mut client, &mut primary, metrics, activity) => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "endpoint: connection ended with an error");
            }
        }
        () = route_changed(&mut route, &current) => {
            metrics.route_close();
            tracing::info!(%peer, "endpoint: route changed; closing connection to the old primary");
        }
    }
    // Both sockets close here, after the close was counted: whoever sees the end of stream sees
    // the metric too.
}

struct Refused {
    kind: Refusal,
    message: String,
}

/// Waits for a route and connects to it, retrying until `deadline`. An attempt already under way
/// at the deadline may finish (each is bounded by `connect_timeout`), so a client is refused with
/// the real reason rather than "out of time".
async fn connect(
    route: &mut watch::Receiver<Route>,
    deadline: Instant,
    connect_timeout: Duration,
) -> Result<(Upstream, Route), Refused> {
    loop {
        let current = route.borrow_and_update().clone();
        let failure = match &current {
            Route::Unavailable { reason } => Refused {
                kind: Refusal::NoPrimary,
                message: format!("no primary known ({reason})"),
            },
            Route::Primary { target, epoch } => {
                match tokio::time::timeout(connect_timeout, dial(target)).await {
                    Ok(Ok(stream)) => return Ok((stream, current)),
                    Ok(Err(e)) => Refused {
                        kind: Refusal::Unreachable,
                        message: format!("primary {target} (epoch {epoch}) unreachable: {e}"),
                    },
                    Err(_) => Refused {
                        kind: Refusal::Unreachable,
                        message: format!(
                            "primary {target} (epoch {epoch}) did not accept within {connect_timeout:?}"
                        ),
                    },
                }
            }
        };
        if Instant::now() >= deadline {
            return Err(failure);
        }
        // Wait for a new route; an unreachable primary is retried after a short pause.
        let retry = match current {
            Route::Primary { .. } => Instant::now() + Duration::from_millis(100),
            Route::Unavailable { .. } => deadline,
        };
        tokio::select! {
            changed = route.changed() => if changed.is_err() { return Err(failure) },
            () = tokio::time::sleep_until(retry.min(deadline)) => {
                if Instant::now() >= deadline {
                    return Err(failure);
                }
            }
        }
    }
}

/// One connection attempt. A Unix socket that is missing (`ENOENT`) or not listened on
/// (`ECONNREFUSED`) fails at once, like a closed TCP port.
async fn dial(target: &Target) -> io::Result<Upstream> {
    match target {
        Target::Tcp(addr) => {
            let stream = TcpStream::connect(*addr).await?;
            let _ = stream.set_nodelay(true);
            Ok(Upstream::Tcp(stream))
        }
        Target::Unix(path) => UnixStream::connect(path).await.map(Upstream::Unix),
    }
}

/// Resolves when the route is no longer `current` (or its publisher is gone).
async fn route_changed(route: &mut watch::Receiver<Route>, current: &Route) {
    let _ = route.wait_for(|r| r != current).await;
}

/// Answers with one error reply and closes. The client's unread bytes are drained for a moment
/// first: closing a socket with unread data sends a reset, which could destroy the reply before
/// the client reads it.
async fn refuse(mut client: TcpStream, error: String) {
    let reply = format!("-{}\r\n", error.replace(['\r', '\n'], " "));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        client.write_all(reply.as_bytes()).await?;
        client.shutdown().await?;
        let mut sink = [0u8; 1024];
        while client.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}
