//! Keeps the target's addresses fresh (spiped's `-r` / `-R`).
//!
//! A host name is resolved at start-up, then again every interval in the background; a failed
//! lookup keeps the last good list, so a DNS hiccup never takes the tunnel down.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::addr::Address;
use crate::net::Dial;

/// Resolves `target` now and, for host names with an interval, keeps re-resolving until
/// `shutdown`.
pub(crate) async fn start(
    target: &Address,
    every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<Dial> {
    let Some(first) = target.resolve().await else {
        let Address::Unix(path) = target else {
            unreachable!("only UNIX paths skip resolution")
        };
        return Ok(Dial::Unix(path.clone()));
    };
    let first = first?;
    if first.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{target} resolved to no address"),
        ));
    }
    let (tx, rx) = watch::channel(Arc::new(first));
    if let (Address::Name { .. }, Some(every)) = (target, every) {
        let target = target.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                match target.resolve().await {
                    Some(Ok(addrs)) if !addrs.is_empty() => {
                        if **tx.borrow() != addrs {
                            tracing::info!(%target, ?addrs, "target re-resolved to new addresses");
                        }
                        tx.send_replace(Arc::new(addrs));
                    }
                    Some(Ok(_)) => {
                        tracing::warn!(%target, "re-resolution found no address; keeping the last ones")
                    }
                    Some(Err(e)) => {
                        tracing::warn!(%target, error = %e, "re-resolution failed; keeping the last addresses")
                    }
                    None => return,
                }
            }
        });
    }
    Ok(Dial::Tcp(rx))
}
