//! One direction of one connection: a reader stamps chunks with delivery times and queues them; a
//! writer delivers each at its time. The two run concurrently, so the queue is a pipeline.

use std::future::pending;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::schedule::{queue_limit, splitmix64, Schedule, SLICE};
use crate::shared::{lock, Shared};
use crate::{Direction, LinkParams};

/// Largest single read from a source.
const READ_SIZE: usize = 64 * 1024;

/// A direction ended badly; the connection's reset time is already set.
#[derive(Debug)]
pub(crate) struct Broken;

/// What both directions of one connection share.
pub(crate) struct ConnCtx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) id: u64,
    /// Delivery schedules, indexed by [`Direction::index`].
    schedules: [Mutex<Schedule>; 2],
    /// When to reset both sides, once an error has been seen.
    reset_at: watch::Sender<Option<Instant>>,
}

impl<'a> ConnCtx<'a> {
    pub(crate) fn new(shared: &'a Shared, id: u64) -> Self {
        let seed = |way: Direction| {
            Mutex::new(Schedule::new(
                shared.seed ^ splitmix64(id.wrapping_mul(2) | way.index() as u64),
            ))
        };
        Self {
            shared,
            id,
            schedules: [seed(Direction::Up), seed(Direction::Down)],
            reset_at: watch::Sender::new(None),
        }
    }

    fn arrival(&self, way: Direction, now: Instant, n: usize, params: &LinkParams) -> Instant {
        lock(&self.schedules[way.index()]).arrival(now, n, params)
    }

    /// Schedules a reset that travels `way`: it reaches the far side after the bytes queued
    /// before it, like an RST segment behind data.
    pub(crate) fn reset(&self, way: Direction) {
        let at = self.arrival(way, Instant::now(), 0, &self.shared.params());
        self.reset_at.send_if_modified(|r| match r {
            Some(_) => false,
            None => {
                *r = Some(at);
                true
            }
        });
    }

    /// Completes when a scheduled reset is due.
    pub(crate) async fn reset_due(&self) {
        let mut rx = self.reset_at.subscribe();
        let at = match rx.wait_for(Option::is_some).await {
            Ok(at) => *at,
            Err(_) => None,
        };
        match at {
            Some(at) => self.shared.clock.sleep_until(at).await,
            None => pending().await,
        }
    }
}

/// Bytes held by one direction: read from the source, not yet written to the destination.
struct Queue<'a> {
    len: AtomicUsize,
    /// Signalled when bytes leave the queue.
    room: Notify,
    /// The link-wide gauge, kept in step with `len`.
    total: &'a AtomicU64,
}

impl<'a> Queue<'a> {
    fn new(total: &'a AtomicU64) -> Self {
        Self {
            len: AtomicUsize::new(0),
            room: Notify::new(),
            total,
        }
    }

    fn push(&self, n: usize) {
        self.len.fetch_add(n, Ordering::AcqRel);
        self.total.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn pop(&self, n: usize) {
        self.len.fetch_sub(n, Ordering::AcqRel);
        self.total.fetch_sub(n as u64, Ordering::Relaxed);
        self.room.notify_one();
    }

    /// Waits until the queue is below its limit; returns how many bytes fit.
    async fn room(&self, shared: &Shared) -> usize {
        loop {
            let limit = queue_limit(&shared.params());
            let len = self.len.load(Ordering::Acquire);
            if len < limit {
                return limit - len;
            }
            // `notify_one` keeps a permit if nobody waits yet, so a pop between the check above
            // and this wait is not lost.
            self.room.notified().await;
        }
    }
}

impl Drop for Queue<'_> {
    fn drop(&mut self) {
        // Bytes dropped undelivered (reset, cut, shutdown) leave the link-wide gauge too.
        self.total
            .fetch_sub(*self.len.get_mut() as u64, Ordering::Relaxed);
    }
}

/// A chunk and its delivery time; `None` is the end of stream.
struct Chunk {
    at: Instant,
    data: Option<Bytes>,
}

/// Relays `src` to `dst` under the link's conditions until end of stream has been delivered.
///
/// On an error, schedules the connection's reset and returns [`Broken`] (after delivering what
/// was queued, for a read error); the caller resets both sides when the reset is due.
pub(crate) async fn pipe<R, W>(
    src: R,
    dst: W,
    way: Direction,
    ctx: &ConnCtx<'_>,
) -> Result<(), Broken>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let queue = Queue::new(&ctx.shared.counters.queued);
    let (tx, rx) = mpsc::unbounded_channel();
    let (read, write) = tokio::join!(
        read_side(src, tx, &queue, way, ctx),
        write_side(dst, rx, &queue, way, ctx)
    );
    read.and(write)
}

async fn read_side<R: AsyncRead + Unpin>(
    mut src: R,
    tx: mpsc::UnboundedSender<Chunk>,
    queue: &Queue<'_>,
    way: Direction,
    ctx: &ConnCtx<'_>,
) -> Result<(), Broken> {
    let mut buf = vec![0; READ_SIZE];
    loop {
        let room = queue.room(ctx.shared).await;
        let read = src.read(&mut buf[..room.min(READ_SIZE)]).await;
        let now = Instant::now();
        let params = ctx.shared.params();
        match read {
            Ok(0) => {
                let at = ctx.arrival(way, now, 0, &params);
                // The writer only goes away after failing, which already scheduled the reset.
                let _ = tx.send(Chunk { at, data: None });
                return Ok(());
            }
            Ok(n) => {
                let slice = if params.bandwidth.is_some() {
                    SLICE
                } else {
                    READ_SIZE
                };
                for part in buf[..n].chunks(slice) {
                    let at = ctx.arrival(way, now, part.len(), &params);
                    queue.push(part.len());
                    let data = Some(Bytes::copy_from_slice(part));
                    if tx.send(Chunk { at, data }).is_err() {
                        return Ok(());
                    }
                }
            }
            Err(e) => {
                tracing::debug!(link = %ctx.shared.name, conn = ctx.id, ?way, error = %e, "read failed");
                ctx.reset(way);
                return Err(Broken);
            }
        }
    }
}

async fn write_side<W: AsyncWrite + Unpin>(
    mut dst: W,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    queue: &Queue<'_>,
    way: Direction,
    ctx: &ConnCtx<'_>,
) -> Result<(), Broken> {
    while let Some(Chunk { at, data }) = rx.recv().await {
        if at > Instant::now() {
            ctx.shared.clock.sleep_until(at).await;
        }
        let result = match &data {
            Some(data) => {
                let r = dst.write_all(data).await;
                queue.pop(data.len());
                r
            }
            None => dst.shutdown().await,
        };
        if let Err(e) = result {
            tracing::debug!(link = %ctx.shared.name, conn = ctx.id, ?way, error = %e, "write failed");
            // The destination is gone: its reset travels back the other way.
            ctx.reset(way.opposite());
            return Err(Broken);
        }
        match data {
            Some(data) => ctx.shared.delivered(way, &data),
            None => return Ok(()),
        }
    }
    // The reader stopped without an end of stream: it failed and scheduled the reset.
    Ok(())
}

#[cfg(test)]
mod tests {
    //! One direction over in-memory pipes, with the clock paused: exact timings.

    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::clock::Clock;

    /// A link on Tokio's clock, which these tests pause.
    fn shared(params: LinkParams) -> Shared {
        let mut shared = Shared::new(
            "test".into(),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
            params,
        );
        shared.clock = Clock::Tokio;
        shared
    }

    /// Runs one Up pipe from `client` to `server` in the background of `f`.
    async fn with_pipe<F, Fut, T>(params: LinkParams, capacity: usize, f: F) -> (T, Shared)
    where
        F: FnOnce(DuplexStream, DuplexStream) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let shared = shared(params);
        let (client, src) = duplex(capacity);
        let (dst, server) = duplex(capacity);
        let out = {
            let ctx = ConnCtx::new(&shared, 0);
            let run = pipe(src, dst, Direction::Up, &ctx);
            let test = f(client, server);
            tokio::pin!(run, test);
            tokio::select! {
                out = &mut test => out,
                r = &mut run => {
                    assert!(r.is_ok(), "pipe failed");
                    test.await
                }
            }
        };
        (out, shared)
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_exact_and_pipelined() {
        let params = LinkParams::new(Duration::from_millis(20));
        let ((), _) = with_pipe(params, 1 << 20, |mut client, mut server| async move {
            let t0 = Instant::now();
            // Ten writes 1 ms apart arrive 20 ms later each, 1 ms apart: not 10 × 20 ms.
            let writer = async {
                for i in 0..10u8 {
                    client.write_all(&[i]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            let reader = async {
                let mut got = Vec::new();
                for _ in 0..10 {
                    let mut b = [0];
                    server.read_exact(&mut b).await.unwrap();
                    got.push((b[0], Instant::now() - t0));
                }
                got
            };
            let ((), got) = tokio::join!(writer, reader);
            for (i, (b, at)) in got.into_iter().enumerate() {
                assert_eq!(usize::from(b), i);
                let want = Duration::from_millis(20 + i as u64);
                assert!(
                    at >= want && at <= want + Duration::from_millis(1),
                    "{i}: {at:?}"
                );
            }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_cap_sets_the_rate() {
        let params = LinkParams::default().with_bandwidth(1_000_000);
        let (elapsed, shared) = with_pipe(params, 1 << 16, |mut client, mut server| async move {
            let t0 = Instant::now();
            let writer = async {
                client.write_all(&vec![7; 2_000_000]).await.unwrap();
                client.shutdown().await.unwrap();
            };
            let reader = async {
                let mut all = Vec::new();
                server.read_to_end(&mut all).await.unwrap();
                assert_eq!(all.len(), 2_000_000);
                Instant::now() - t0
            };
            tokio::join!(writer, reader).1
        })
        .await;
        assert!(
            elapsed >= Duration::from_millis(2000) && elapsed <= Duration::from_millis(2005),
            "{elapsed:?}"
        );
        assert_eq!(shared.counters.bytes[0].load(Ordering::Relaxed), 2_000_000);
        assert_eq!(shared.counters.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_keeps_order() {
        let params =
            LinkParams::new(Duration::from_millis(10)).with_jitter(Duration::from_millis(9));
        let ((), _) = with_pipe(params, 1 << 20, |mut client, mut server| async move {
            let writer = async {
                for i in 0..2000u32 {
                    client.write_all(&i.to_be_bytes()).await.unwrap();
                    tokio::time::sleep(Duration::from_micros(300)).await;
                }
                client.shutdown().await.unwrap();
            };
            let reader = async {
                let mut all = Vec::new();
                server.read_to_end(&mut all).await.unwrap();
                all
            };
            let all = tokio::join!(writer, reader).1;
            let want: Vec<u8> = (0..2000u32).flat_map(u32::to_be_bytes).collect();
            assert_eq!(all, want);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_stops_reading() {
        // 10 kB/s: the queue limit is the 64 KiB minimum; the server never reads.
        let params = LinkParams::default().with_bandwidth(10_000);
        let (written, shared) = with_pipe(params, 4096, |mut client, server| async move {
            let _server = server; // never read, but kept open
            let mut written = 0usize;
            let chunk = vec![1; 1024];
            let deadline = Instant::now() + Duration::from_secs(30);
            while tokio::time::timeout_at(deadline, client.write_all(&chunk))
                .await
                .is_ok()
            {
                written += chunk.len();
            }
            written
        })
        .await;
        // Queue (64 KiB) + both in-memory pipes (4 KiB each) + one chunk in flight.
        assert!(written <= 64 * 1024 + 3 * 4096, "{written}");
        assert!(written >= 64 * 1024, "{written}");
        assert_eq!(
            shared.counters.queued.load(Ordering::Relaxed),
            0,
            "gauge not restored on drop"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn read_error_schedules_a_reset_one_latency_later() {
        struct Failing;
        impl AsyncRead for Failing {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
            }
        }
        let shared = shared(LinkParams::new(Duration::from_millis(30)));
        let ctx = ConnCtx::new(&shared, 0);
        let t0 = Instant::now();
        let (dst, _server) = duplex(1024);
        assert!(pipe(Failing, dst, Direction::Up, &ctx).await.is_err());
        ctx.reset_due().await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(30));
    }
}
