//! SIGTERM and SIGINT become one shutdown signal for every long-lived loop.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Returns a receiver that turns true on the first SIGTERM (Kubernetes' graceful stop) or SIGINT.
pub(crate) fn shutdown_on_signals() -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        tx.send_replace(true);
    });
    Ok(rx)
}
