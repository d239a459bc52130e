//! The tokio driver: one task for the upstream link, one per downstream, one for housekeeping.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::compress::{CompressError, Compression, Compressor};
use crate::downstream::{Credential, Master, Request};
use crate::metrics::RelayMetrics;
use crate::retention::Retention;
use crate::store::{self, Decision, RdbReader, Store, StoreError};
use crate::upstream::{Event, Replica, Resume, Settings, UpstreamError};

mod refresh;
use refresh::{log_refresh, refresh_loop};

/// Like Redis's `repl-timeout`: a link silent for this long is dropped.
const LINK_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest chunk read from the store and written to a downstream at once.
const SEND_CHUNK: usize = 256 * 1024;
/// Longest wait before reconnecting to the upstream: a healed link is used again within it.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// First wait after a refresh that failed or was refused before trying again, doubling while
/// they keep failing (each try may fork Redis).
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// Everything a relay needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The upstream: a Redis primary (or replica) or another relay, `host:port`; `None`: none
    /// yet (the relay serves what it holds and waits). Changed at run time with
    /// [`Relay::upstream`].
    pub upstream: Option<String>,
    /// `AUTH user password` for the upstream.
    pub upstream_auth: Option<(String, String)>,
    /// Where downstreams connect.
    pub listen: SocketAddr,
    /// What downstreams must `AUTH` with.
    pub credential: Option<Credential>,
    /// The store's directory.
    pub dir: PathBuf,
    /// How much stream to keep.
    pub retention: Retention,
    /// Size at which a segment is closed and a new one started.
    pub segment_size: u64,
    /// Compress the stream between relays: asked of the upstream, agreed to downstreams that
    /// ask (only relays do). Both ends must say `Zstd` for a link to be compressed.
    pub compression: Compression,
    /// The region's own Redis: fresh RDBs are taken from it before retention passes the stored
    /// one ([`LocalRedis`]). `None`: no refresh; a downstream full sync then waits for the next
    /// RDB from the upstream once retention has passed the stored one.
    pub local_redis: Option<LocalRedis>,
}

/// The region's own Redis, for RDB refreshes: the upstream itself in the primary region, the
/// relay's own replica elsewhere. The relay connects as a replica would (`AUTH`, `REPLCONF`,
/// `PSYNC ? -1`), keeps the RDB and closes: one fork of that Redis, no WAN traffic.
#[derive(Clone)]
pub struct LocalRedis {
    /// `host:port`; in the primary region the same text as [`Config::upstream`].
    pub addr: String,
    /// `AUTH user password` (the replication user).
    pub auth: Option<(String, String)>,
}

impl std::fmt::Debug for LocalRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRedis")
            .field("addr", &self.addr)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listening address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The end of the stream held, and a counter bumped whenever the history changes under the
/// downstreams (a new RDB, a new replication ID, a cut after corruption): they are then
/// disconnected, as Redis disconnects its replicas, and come back with a fresh `PSYNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Tip {
    end: u64,
    generation: u64,
}

struct Shared {
    store: Mutex<Store>,
    tip: watch::Sender<Tip>,
    metrics: RelayMetrics,
    config: Config,
    /// A stream offset found corrupt while serving: the upstream task cuts the store there.
    corrupt_at: Mutex<Option<u64>>,
    /// Where to replicate from now; the upstream task follows every change.
    upstream: watch::Sender<Option<String>>,
    /// Set when a write to the store failed for want of space, cleared by the next write that
    /// succeeds: what the relay's owner reads to replicate past it meanwhile.
    disk_full: AtomicBool,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves a consistent store: every update is one step.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, store: &Store, new_history: bool) {
        let end = store.tip().map_or(0, |(_, e)| e);
        self.tip.send_modify(|t| {
            t.end = end;
            if new_history {
                t.generation += 1;
            }
        });
        self.metrics.upstream_offset.set(end as i64);
    }
}

/// Re-points a running relay: at a change of primary its owner (the agent) moves it to the new
/// primary or the new primary region's relay. The link to the old upstream is dropped at once
/// and the relay resumes from the last byte it holds (`PSYNC <replid> <offset+1>`), so a new
/// primary that inherited the stream answers `+CONTINUE <its new ID>`.
#[derive(Clone)]
pub struct UpstreamHandle(Arc<Shared>);

impl std::fmt::Debug for UpstreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UpstreamHandle")
            .field(&*self.0.upstream.borrow())
            .finish()
    }
}

impl UpstreamHandle {
    /// Replicates from `upstream` from now on (`None`: from nothing); no-op if unchanged.
    pub fn set(&self, upstream: Option<String>) {
        self.0.upstream.send_if_modified(|now| {
            let changed = *now != upstream;
            if changed {
                tracing::info!(from = ?now, to = ?upstream, "relay upstream re-pointed");
                *now = upstream;
            }
            changed
        });
    }

    /// The current upstream.
    pub fn get(&self) -> Option<String> {
        self.0.upstream.borrow().clone()
    }

    /// Whether the relay cannot store: its last write to the store failed for want of space
    /// (disk full or quota), and none has succeeded since. Its downstreams then only get the
    /// prefix it holds; its owner may point them past it until this turns false again.
    pub fn disk_full(&self) -> bool {
        self.0.disk_full.load(Ordering::Relaxed)
    }
}

/// A running relay.
pub struct Relay {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("upstream", &*self.shared.upstream.borrow())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Opens the store (recovering it) and binds the listener.
    pub async fn bind(config: Config, metrics: RelayMetrics) -> Result<Self, StartError> {
        let (store, recovery) = Store::open(&config.dir, config.segment_size)?;
        metrics.corrupt.inc_by(recovery.corrupt);
        tracing::info!(
            dir = %config.dir.display(),
            tip = ?store.tip().map(|(id, o)| format!("{id}:{o}")),
            rdb_offset = store.rdb().map(|r| r.offset),
            corrupt = recovery.corrupt,
            trimmed_bytes = recovery.trimmed_bytes,
            dropped_segments = recovery.dropped_segments,
            "relay store opened"
        );
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let (tip, _) = watch::channel(Tip::default());
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            tip,
            metrics,
            upstream: watch::Sender::new(config.upstream.clone()),
            config,
            corrupt_at: Mutex::new(None),
            disk_full: AtomicBool::new(false),
        });
        shared.publish(&shared.store(), false);
        Ok(Self { shared, listener })
    }

    /// A handle that re-points this relay while it runs.
    pub fn upstream(&self) -> UpstreamHandle {
        UpstreamHandle(self.shared.clone())
    }

    /// Where downstreams connect.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Self { shared, listener } = self;
        let port = listener.local_addr().map_or(0, |a| a.port());
        let upstream = tokio::spawn(upstream_loop(shared.clone(), port, shutdown.clone()));
        let housekeeping = tokio::spawn(housekeeping(shared.clone()));
        let refresher = shared
            .config
            .local_redis
            .clone()
            .map(|local| tokio::spawn(refresh_loop(shared.clone(), local, port)));
        loop {
            tokio::select! {
                // The guard `wait_for` returns is dropped inside: the future stays `Send`.
                _ = async { drop(shutdown.wait_for(|s| *s).await) } => break,
                accepted = listener.accept() => match accepted {
                    Ok((sock, peer)) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let _ = sock.set_nodelay(true);
                            if let Err(e) = serve_downstream(&shared, sock, peer).await {
                                tracing::info!(%peer, error = %e, "downstream disconnected");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        upstream.abort();
        housekeeping.abort();
        if let Some(r) = refresher {
            r.abort();
        }
        let _ = shared.store().sync();
    }
}

/// Retention and the horizon metrics, once a second.
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let store = &mut shared.store();
        let deleted = store.enforce(shared.config.retention, SystemTime::now());
        if deleted > 0 {
            tracing::info!(deleted, oldest = ?store.oldest().map(|(o, _)| o), "retention deleted old segments");
        }
        let m = &shared.metrics;
        m.disk_bytes.set(store.disk_bytes() as i64);
        m.rdb_offset.set(
            store
                .rdb()
                .map_or(-1, |r| r.offset.min(i64::MAX as u64) as i64),
        );
        if let Some((offset, created)) = store.oldest() {
            m.oldest_offset.set(offset as i64);
            let age = SystemTime::now()
                .duration_since(created)
                .unwrap_or_default();
            m.oldest_age_seconds.set(age.as_secs() as i64);
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("upstream {0}: {1}")]
    Io(String, std::io::Error),
    #[error("upstream {0} closed the connection")]
    Closed(String),
    #[error("upstream {0} silent for {1:?}")]
    Timeout(String, Duration),
    #[error(transparent)]
    Protocol(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt bytes found at offset {0} while serving: refetching from the upstream")]
    Heal(u64),
    #[error("re-pointed to another upstream")]
    Repointed,
}

async fn upstream_loop(
    shared: Arc<Shared>,
    listening_port: u16,
    mut shutdown: watch::Receiver<bool>,
) {
    let settings = Settings {
        auth: shared.config.upstream_auth.clone(),
        listening_port,
        compression: shared.config.compression,
    };
    let mut target = shared.upstream.subscribe();
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        let current = target.borrow_and_update().clone();
        let Some(addr) = current else {
            tokio::select! {
                _ = target.changed() => {}
                stopped = shutdown.changed() => if stopped.is_err() { return },
            }
            continue;
        };
        heal(&shared);
        let started = Instant::now();
        let result = tokio::select! {
            r = link(&shared, &settings, &addr) => r,
            _ = target.changed() => Err(LinkError::Repointed),
        };
        shared.metrics.upstream_connected.set(0);
        shared.store().abort_rdb();
        if let Err(e) = result {
            match &e {
                LinkError::Repointed => {
                    // Connect to the new upstream at once.
                    backoff = Duration::from_millis(100);
                    target.mark_changed();
                    continue;
                }
                LinkError::Store(s) => {
                    shared.metrics.disk_errors.inc();
                    if s.is_disk_full() {
                        shared.disk_full.store(true, Ordering::Relaxed);
                        tracing::error!(error = %e, "disk full: replication paused, nothing partial kept; retrying");
                    } else {
                        tracing::error!(error = %e, "store error: replication paused; retrying");
                    }
                }
                LinkError::Heal(_) => tracing::warn!(error = %e, "healing"),
                LinkError::Protocol(UpstreamError::Compression(_)) => {
                    shared.metrics.compression_errors.inc();
                    tracing::error!(upstream = %addr, error = %e, "bad compressed frame from the upstream: nothing of it stored; reconnecting");
                }
                _ => {
                    tracing::warn!(upstream = %addr, error = %e, "upstream link down; reconnecting")
                }
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        // A re-pointing cuts the wait short.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = target.changed() => { target.mark_changed(); }
        }
        // Capped low: after a WAN cut heals, the catch-up should not wait for a long backoff
        // (a refused connection costs the upstream next to nothing).
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Cuts the store before bytes found corrupt while serving, so they are fetched again.
fn heal(shared: &Shared) {
    let Some(offset) = shared
        .corrupt_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let store = &mut shared.store();
    match store.truncate_after(offset.saturating_sub(1)) {
        Ok(end) => tracing::warn!(
            cut_after = end,
            "store cut before corrupt bytes; asking the upstream again from there"
        ),
        Err(e) => tracing::error!(error = %e, "cannot cut the store before corrupt bytes"),
    }
    shared.publish(store, true);
}

async fn link(shared: &Shared, settings: &Settings, addr: &str) -> Result<(), LinkError> {
    let addr = addr.to_owned();
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr)).await;
    let mut sock = match connect {
        Err(_) => return Err(LinkError::Timeout(addr, Duration::from_secs(5))),
        Ok(r) => r.map_err(|e| LinkError::Io(addr.clone(), e))?,
    };
    let _ = sock.set_nodelay(true);
    let resume = shared
        .store()
        .tip()
        .map(|(replid, offset)| Resume { replid, offset });
    tracing::info!(upstream = %addr, resume = ?resume.map(|r| format!("{}:{}", r.replid, r.offset)), "connecting to upstream");
    let mut replica = Replica::new(settings.clone(), resume);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_rx = Instant::now();
    // The once-a-second fdatasync runs on a blocking thread, outside the store's lock, so
    // neither this link nor the downstreams wait for the disk.
    let mut syncing: Option<tokio::task::JoinHandle<Result<(), StoreError>>> = None;
    loop {
        replica.take_outgoing(&mut out);
        if !out.is_empty() {
            sock.write_all(&out)
                .await
                .map_err(|e| LinkError::Io(addr.clone(), e))?;
            out.clear();
        }
        tokio::select! {
            read = sock.read(&mut buf) => {
                let n = read.map_err(|e| LinkError::Io(addr.clone(), e))?;
                if n == 0 {
                    return Err(LinkError::Closed(addr));
                }
                last_rx = Instant::now();
                let mut input = &buf[..n];
                loop {
                    for event in replica.handle(input)? {
                        apply(shared, event)?;
                    }
                    // Compressed frames are decoded a budget at a time: memory stays bounded.
                    if !replica.has_pending() {
                        break;
                    }
                    input = &[];
                }
                if replica.is_compressed() {
                    let (wire, raw) = replica.take_compression_counts();
                    shared.metrics.compression_wire("received").inc_by(wire);
                    shared.metrics.compression_raw("received").inc_by(raw);
                }
                if replica.is_streaming() {
                    shared.metrics.upstream_connected.set(1);
                }
            }
            _ = tick.tick() => {
                if let Some(at) = *shared.corrupt_at.lock().unwrap_or_else(|e| e.into_inner()) {
                    return Err(LinkError::Heal(at));
                }
                if last_rx.elapsed() > LINK_TIMEOUT {
                    return Err(LinkError::Timeout(addr, LINK_TIMEOUT));
                }
                if syncing.as_ref().is_none_or(|s| s.is_finished()) {
                    if let Some(done) = syncing.take() {
                        done.await.unwrap_or(Ok(()))?;
                    }
                    if let Some((file, path)) = shared.store().unsynced_segment()? {
                        syncing = Some(tokio::task::spawn_blocking(move || store::sync_file(&file, &path)));
                    }
                }
                replica.ack();
            }
        }
    }
}

fn apply(shared: &Shared, event: Event) -> Result<(), StoreError> {
    let store = &mut shared.store();
    match event {
        Event::FullResync { replid, offset } => {
            tracing::info!(%replid, offset, "upstream full resync: receiving its RDB");
            shared.metrics.upstream_full_syncs.inc();
            store.begin_rdb(replid, offset)?;
        }
        Event::Rdb(bytes) => store.rdb_data(&bytes)?,
        Event::RdbEnd => {
            store.finish_rdb()?;
            let rdb = store.rdb().expect("just stored");
            tracing::info!(
                offset = rdb.offset,
                bytes = rdb.len,
                "RDB stored; streaming"
            );
            shared.disk_full.store(false, Ordering::Relaxed);
            shared.publish(store, true);
        }
        Event::Continue { new_replid } => {
            tracing::info!(new_replid = ?new_replid.map(|r| r.to_string()), "upstream continues the stream (partial resync)");
            if let Some(replid) = new_replid {
                store.new_replid(replid)?;
                shared.publish(store, true);
            }
        }
        Event::Stream { offset, bytes } => {
            store.append(offset, &bytes)?;
            shared.disk_full.store(false, Ordering::Relaxed);
            shared.publish(store, false);
            if let Some(outcome) = store.install_held()? {
                log_refresh(shared, &outcome);
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no write progress for {0:?}")]
    Stalled(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stream's history changed (new RDB or replication ID): reconnect")]
    NewHistory,
    #[error("closed")]
    Closed,
    #[error(transparent)]
    Compress(#[from] CompressError),
}

async fn write(sock: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> Result<(), ServeError> {
    match tokio::time::timeout(LINK_TIMEOUT, sock.write_all(bytes)).await {
        Err(_) => Err(ServeError::Stalled(LINK_TIMEOUT)),
        Ok(r) => Ok(r?),
    }
}

/// The write half of a downstream connection: plain bytes, or zstd frames once
/// [`Downlink::compress`] has been called (after the PSYNC reply line).
struct Downlink<'a> {
    wr: tokio::net::tcp::OwnedWriteHalf,
    deflate: Option<Compressor>,
    frames: Vec<u8>,
    metrics: &'a RelayMetrics,
}

impl Downlink<'_> {
    fn compress(&mut self) -> Result<(), ServeError> {
        self.deflate = Some(Compressor::new()?);
        Ok(())
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ServeError> {
        let Some(deflate) = &mut self.deflate else {
            return write(&mut self.wr, bytes).await;
        };
        self.frames.clear();
        let wire = deflate.frame(bytes, &mut self.frames)?;
        self.metrics
            .compression_raw("sent")
            .inc_by(bytes.len() as u64);
        self.metrics.compression_wire("sent").inc_by(wire as u64);
        write(&mut self.wr, &self.frames).await
    }
}

async fn serve_downstream(
    shared: &Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
) -> Result<(), ServeError> {
    let (mut rd, wr) = sock.into_split();
    let mut wr = Downlink {
        wr,
        deflate: None,
        frames: Vec::new(),
        metrics: &shared.metrics,
    };
    let mut master = Master::new(shared.config.credential.clone(), shared.config.compression);
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let psync = 'handshake: loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Err(ServeError::Closed);
        }
        let requests = master.handle(&buf[..n]);
        master.take_outgoing(&mut out);
        wr.send(&out).await?;
        out.clear();
        for r in requests {
            match r {
                Request::Psync {
                    replid,
                    offset,
                    psync2,
                } => break 'handshake (replid, offset, psync2),
                Request::AuthFailed => {
                    shared.metrics.auth_failures.inc();
                    tracing::warn!(%peer, "downstream AUTH refused");
                }
                Request::Close => return Err(ServeError::Closed),
                Request::Ack(_) => {}
            }
        }
    };
    let (replid, offset, psync2) = psync;
    // The RDB is opened under the lock: a refresh may replace (and delete) it right after, and
    // the open file is still read whole.
    let (decision, generation, reader) = {
        let store = shared.store();
        let decision = store.decide(replid, offset);
        let reader = match &decision {
            Decision::Full { rdb, .. } => Some(RdbReader::open(rdb)),
            _ => None,
        };
        (decision, shared.tip.borrow().generation, reader)
    };
    let label = vec![("downstream", peer.to_string())];
    let mut next = match decision {
        Decision::NotReady => {
            shared.metrics.served("not_ready");
            tracing::info!(%peer, "downstream PSYNC while nothing is stored yet: told to retry");
            wr.send(b"-NOMASTERLINK Can't SYNC while not connected with my master\r\n")
                .await?;
            return Ok(());
        }
        Decision::Continue {
            replid: current,
            from,
        } => {
            shared.metrics.served("partial");
            tracing::info!(%peer, from, "partial resync served (+CONTINUE)");
            let reply = if psync2 {
                format!("+CONTINUE {current}\r\n")
            } else {
                "+CONTINUE\r\n".to_owned()
            };
            wr.send(reply.as_bytes()).await?;
            if master.compress() {
                wr.compress()?;
            }
            from
        }
        Decision::Full {
            replid: current,
            rdb,
        } => {
            // Check the RDB before announcing it: a bad one is never sent.
            let verified = match reader.expect("opened for a full sync") {
                Err(e) => Err(e),
                Ok(mut r) => {
                    tokio::task::spawn_blocking(move || -> Result<RdbReader, StoreError> {
                        while r.next_chunk()?.is_some() {}
                        r.rewind()?;
                        Ok(r)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(StoreError::Io {
                            action: "check",
                            path: rdb.path.clone(),
                            source: std::io::Error::other(e.to_string()),
                        })
                    })
                }
            };
            let mut reader = match verified {
                Ok(r) => r,
                Err(e) => {
                    shared.metrics.corrupt.inc();
                    tracing::error!(error = %e, "stored RDB is corrupt: not served");
                    wr.send(b"-NOMASTERLINK Can't SYNC while not connected with my master\r\n")
                        .await?;
                    return Err(e.into());
                }
            };
            shared.metrics.served("full");
            tracing::info!(%peer, offset = rdb.offset, bytes = rdb.len, "full resync served from the stored RDB");
            let reply = format!("+FULLRESYNC {current} {}\r\n", rdb.offset);
            wr.send(reply.as_bytes()).await?;
            if master.compress() {
                wr.compress()?;
            }
            wr.send(format!("${}\r\n", rdb.len).as_bytes()).await?;
            while let Some(chunk) = reader.next_chunk()? {
                wr.send(&chunk).await?;
            }
            rdb.offset + 1
        }
    };
    master.set_synced();
    shared.metrics.downstreams.inc();
    let acks = {
        let shared = shared.clone();
        let label = label.clone();
        tokio::spawn(async move {
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                for r in master.handle(&buf[..n]) {
                    match r {
                        Request::Ack(offset) => {
                            shared
                                .metrics
                                .downstream_acked_offset
                                .get_or_create(&label)
                                .set(offset as i64);
                        }
                        Request::Close => return,
                        _ => {}
                    }
                }
            }
        })
    };
    let result = stream_to(shared, &mut wr, &mut next, generation, &label, &acks).await;
    acks.abort();
    shared.metrics.downstreams.dec();
    shared.metrics.downstream_acked_offset.remove(&label);
    shared.metrics.downstream_sent_offset.remove(&label);
    result
}

async fn stream_to(
    shared: &Shared,
    wr: &mut Downlink<'_>,
    next: &mut u64,
    generation: u64,
    label: &Vec<(&'static str, String)>,
    acks: &tokio::task::JoinHandle<()>,
) -> Result<(), ServeError> {
    let mut tip = shared.tip.subscribe();
    loop {
        let now = *tip.borrow_and_update();
        if now.generation != generation {
            return Err(ServeError::NewHistory);
        }
        if acks.is_finished() {
            return Err(ServeError::Closed);
        }
        if *next <= now.end {
            let location = shared.store().locate(*next);
            let from = *next;
            let bytes = location.and_then(|l| store::read_at(&l, from, SEND_CHUNK));
            let bytes = match bytes {
                Ok(b) => b,
                Err(e @ StoreError::Corrupt { offset, .. }) => {
                    shared.metrics.corrupt.inc();
                    tracing::error!(error = %e, "corrupt stream bytes: not served; the relay refetches them");
                    let mut at = shared.corrupt_at.lock().unwrap_or_else(|e| e.into_inner());
                    *at = Some(at.map_or(offset, |a| a.min(offset)));
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            wr.send(&bytes).await?;
            *next += bytes.len() as u64;
            shared
                .metrics
                .downstream_sent_offset
                .get_or_create(label)
                .set(*next as i64 - 1);
            continue;
        }
        tokio::select! {
            changed = tip.changed() => if changed.is_err() { return Err(ServeError::Closed) },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
