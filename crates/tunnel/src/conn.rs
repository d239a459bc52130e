//! One tunnelled connection, from accept to close.

use std::sync::Arc;

use spiped_proto::Role;

use crate::config::{Mode, TunnelConfig};
use crate::handshake::{self, HandshakeFailure};
use crate::metrics::TunnelMetrics;
use crate::net::{self, Dial, Halves, Stream};
use crate::pending::{Evicted, PendingSlot};
use crate::pump::{self, PumpError};

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: TunnelConfig,
    pub(crate) dial: Dial,
    pub(crate) metrics: TunnelMetrics,
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("cannot connect to target {target}: {source}")]
    Target {
        target: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to target {target}")]
    TargetTimeout { target: String },
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeFailure),
    #[error(transparent)]
    Evicted(#[from] Evicted),
    #[error(transparent)]
    Pump(#[from] PumpError),
}

/// Serves one accepted connection; `pending` is its place among the unauthenticated ones, on a
/// decrypting endpoint with a handshake limit.
pub(crate) async fn serve(
    accepted: Stream,
    peer: String,
    pending: Option<PendingSlot>,
    shared: Arc<Shared>,
) {
    let metrics = &shared.metrics;
    metrics.connection_opened();
    let result = match shared.config.mode {
        Mode::Encrypt => encrypt(accepted, &peer, &shared).await,
        Mode::Decrypt => decrypt(accepted, &peer, pending, &shared).await,
    };
    metrics.connection_closed();
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        // Counted and logged (rate-limited) by the accept loop: one line per connection would
        // let a flood flood the logs.
        Err(ConnError::Evicted(e)) => tracing::debug!(%peer, error = %e, "connection closed"),
        Err(ConnError::Handshake(e)) => {
            metrics.handshake_failed(e.reason());
            metrics.failed(e.reason(), format!("handshake with {peer} failed: {e}"));
            tracing::warn!(%peer, reason = e.reason(), error = %e, "handshake failed");
        }
        Err(ConnError::Pump(e)) => {
            metrics.stream_error(e.reason());
            metrics.failed(e.reason(), format!("connection from {peer} dropped: {e}"));
            tracing::warn!(%peer, reason = e.reason(), error = %e, "connection dropped");
        }
        Err(e) => {
            metrics.stream_error("target_unreachable");
            metrics.failed("target_unreachable", e.to_string());
            tracing::warn!(%peer, error = %e, "connection dropped");
        }
    }
}

/// `-e`: connect to the target first (so a dead target fails fast), then handshake as client.
async fn encrypt(accepted: Stream, peer: &str, shared: &Shared) -> Result<(), ConnError> {
    let mut wire = dial(shared).await?.into_halves();
    let session = handshake(&mut wire, Role::Client, peer, shared).await?;
    let coalesce = shared.config.coalesce;
    pump::pump(
        accepted.into_halves(),
        wire,
        session,
        coalesce,
        &shared.metrics,
    )
    .await?;
    Ok(())
}

/// `-d`: authenticate the peer before opening anything towards the target, so an unauthenticated
/// client can never make us connect to Redis (C spiped dials in parallel with the handshake).
async fn decrypt(
    accepted: Stream,
    peer: &str,
    pending: Option<PendingSlot>,
    shared: &Shared,
) -> Result<(), ConnError> {
    let mut wire = accepted.into_halves();
    let session = match pending {
        None => handshake(&mut wire, Role::Server, peer, shared).await?,
        Some(mut slot) => {
            let session = slot
                .run(handshake(&mut wire, Role::Server, peer, shared))
                .await??;
            slot.authenticated()?;
            session
        }
    };
    let plain = dial(shared).await?.into_halves();
    let coalesce = shared.config.coalesce;
    pump::pump(plain, wire, session, coalesce, &shared.metrics).await?;
    Ok(())
}

async fn handshake(
    wire: &mut Halves,
    role: Role,
    peer: &str,
    shared: &Shared,
) -> Result<spiped_proto::Session, HandshakeFailure> {
    let c = &shared.config;
    let session = handshake::run(wire, role, c.keys.clone(), c.forward_secrecy, c.timeout).await?;
    shared.metrics.handshake_ok(session.key_index);
    let key_id = c.keys[session.key_index].fingerprint();
    let (index, fs) = (session.key_index, session.forward_secret);
    if c.keys.len() > 1 {
        // During a key rotation, which key each peer still uses is what the operator watches.
        tracing::info!(%peer, key_index = index, %key_id, forward_secret = fs, "handshake complete");
    } else {
        tracing::debug!(%peer, key_index = index, %key_id, forward_secret = fs, "handshake complete");
    }
    Ok(session)
}

async fn dial(shared: &Shared) -> Result<Stream, ConnError> {
    let c = &shared.config;
    let target = || c.target.to_string();
    match tokio::time::timeout(c.timeout, net::connect(&shared.dial, c.bind, c.keepalive)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(source)) => Err(ConnError::Target {
            target: target(),
            source,
        }),
        Err(_) => Err(ConnError::TargetTimeout { target: target() }),
    }
}
