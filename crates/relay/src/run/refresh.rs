//! Fresh RDBs from the region's own Redis, before retention passes the stored one.
//!
//! Once a second the task asks the store whether a refresh is due ([`Store::refresh_due`]: the
//! stream after the RDB has passed half the retention, or there is no servable RDB). Then it
//! connects to the local Redis as a replica would (`AUTH`, `REPLCONF`, `PSYNC ? -1`), receives
//! `+FULLRESYNC <replid> <offset>` and the RDB into a checksummed file, closes the connection
//! and offers the RDB to the store, which places it at its offset inside the history held
//! ([`Store::offer_rdb`]). Nothing crosses the WAN: in the primary region the local Redis is the
//! upstream; elsewhere it is this relay's own replica, which answers with its master's ID (ours)
//! and its own offset, or `-NOMASTERLINK` while its link to us is down (retried later).
//!
//! Never while the relay is idle (no upstream): in the primary region that is a fenced primary,
//! and a replica attached to it, even ours for a moment, would let it take writes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LinkError, LocalRedis, Shared, LINK_TIMEOUT, REFRESH_RETRY};

/// Longest wait between refreshes that keep failing or being refused: each try may fork Redis.
const MAX_REFRESH_RETRY: Duration = Duration::from_secs(300);
use crate::compress::Compression;
use crate::store::{RdbWriter, Refreshed, Store};
use crate::upstream::{Event, Replica, Settings, UpstreamError};

pub(super) async fn refresh_loop(shared: Arc<Shared>, local: LocalRedis, listening_port: u16) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut not_before = Instant::now();
    let mut retry = REFRESH_RETRY;
    loop {
        tick.tick().await;
        if Instant::now() < not_before || !allowed(&shared, &local) {
            continue;
        }
        let due = (shared.store()).refresh_due(shared.config.retention, SystemTime::now());
        if !due {
            continue;
        }
        tracing::info!(redis = %local.addr, "taking a fresh RDB from the local Redis before retention passes the stored one");
        let started = Instant::now();
        match take(&shared, &local, listening_port).await {
            Ok(outcome) => {
                tracing::debug!(took = ?started.elapsed(), "RDB refresh done");
                log_refresh(&shared, &outcome);
                if matches!(outcome, Refreshed::Refused(_)) {
                    not_before = Instant::now() + retry;
                    retry = (retry * 2).min(MAX_REFRESH_RETRY);
                } else {
                    retry = REFRESH_RETRY;
                }
            }
            Err(e) => {
                shared.metrics.refreshed("failed");
                if let LinkError::Store(_) = e {
                    shared.metrics.disk_errors.inc();
                }
                match e {
                    LinkError::Protocol(UpstreamError::NotReady(_)) => {
                        tracing::info!(redis = %local.addr, error = %e, "local Redis cannot give an RDB now; retrying later")
                    }
                    _ => {
                        tracing::warn!(redis = %local.addr, error = %e, "RDB refresh failed; retrying later")
                    }
                }
                not_before = Instant::now() + retry;
                retry = (retry * 2).min(MAX_REFRESH_RETRY);
            }
        }
    }
}

/// Only while the relay follows an upstream: in the primary region (the local Redis is the
/// upstream) only while streaming from it, since the stream must reach the RDB's offset anyway
/// and an idle relay there means a fenced primary.
fn allowed(shared: &Shared, local: &LocalRedis) -> bool {
    match &*shared.upstream.borrow() {
        None => false,
        Some(up) if *up == local.addr => shared.metrics.upstream_connected.get() == 1,
        Some(_) => true,
    }
}

pub(super) fn log_refresh(shared: &Shared, outcome: &Refreshed) {
    let m = &shared.metrics;
    match outcome {
        Refreshed::Installed { offset } => {
            m.refreshed("installed");
            tracing::info!(
                offset,
                "fresh RDB installed inside the stream held; retention may now delete the old one"
            );
        }
        Refreshed::Held { offset } => {
            m.refreshed("held");
            tracing::info!(
                offset,
                "fresh RDB ahead of the stream held: kept until the stream reaches it"
            );
        }
        Refreshed::Refused(why) => {
            m.refreshed("refused");
            tracing::warn!(reason = %why, "fresh RDB from the local Redis refused; retrying later");
        }
    }
}

/// One `PSYNC ? -1` on a connection of its own: the RDB is stored and offered, then the
/// connection is closed before the stream (nothing is acknowledged, so Redis never counts it as
/// a replica in sync).
async fn take(
    shared: &Shared,
    local: &LocalRedis,
    listening_port: u16,
) -> Result<Refreshed, LinkError> {
    let addr = local.addr.clone();
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr)).await;
    let mut sock = match connect {
        Err(_) => return Err(LinkError::Timeout(addr, Duration::from_secs(5))),
        Ok(r) => r.map_err(|e| LinkError::Io(addr.clone(), e))?,
    };
    let settings = Settings {
        auth: local.auth.clone(),
        listening_port,
        compression: Compression::None,
    };
    let mut replica = Replica::new(settings, None);
    let mut writer: Option<RdbWriter> = None;
    let result = receive(shared, &mut sock, &addr, &mut replica, &mut writer).await;
    if let Some(w) = writer.take() {
        w.discard();
    }
    result
}

async fn receive(
    shared: &Shared,
    sock: &mut TcpStream,
    addr: &str,
    replica: &mut Replica,
    writer: &mut Option<RdbWriter>,
) -> Result<Refreshed, LinkError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        replica.take_outgoing(&mut out);
        if !out.is_empty() {
            sock.write_all(&out)
                .await
                .map_err(|e| LinkError::Io(addr.to_owned(), e))?;
            out.clear();
        }
        let n = match tokio::time::timeout(LINK_TIMEOUT, sock.read(&mut buf)).await {
            Err(_) => return Err(LinkError::Timeout(addr.to_owned(), LINK_TIMEOUT)),
            Ok(r) => r.map_err(|e| LinkError::Io(addr.to_owned(), e))?,
        };
        if n == 0 {
            return Err(LinkError::Closed(addr.to_owned()));
        }
        for event in replica.handle(&buf[..n])? {
            match event {
                Event::FullResync { replid, offset } => {
                    tracing::info!(%replid, offset, "local Redis sends a fresh RDB");
                    let path = shared.store().refresh_path();
                    *writer = Some(RdbWriter::create(path, replid, offset)?);
                }
                Event::Rdb(bytes) => match writer {
                    Some(w) => w.write(&bytes)?,
                    None => {
                        return Err(UpstreamError::Malformed("RDB bytes before +FULLRESYNC").into())
                    }
                },
                Event::RdbEnd => {
                    let Some(w) = writer.take() else {
                        return Err(UpstreamError::Malformed("RDB end before +FULLRESYNC").into());
                    };
                    let fresh = w.finish()?;
                    let store: &mut Store = &mut shared.store();
                    return Ok(store.offer_rdb(fresh)?);
                }
                Event::Continue { .. } | Event::Stream { .. } => {
                    return Err(UpstreamError::Malformed("no RDB in reply to PSYNC ? -1").into())
                }
            }
        }
    }
}
