//! A user-space WAN link emulator for TCP: latency, jitter, a bandwidth cap and cuts.
//!
//! `georep up` runs every region on one machine; this kernel has no `tc netem`, so the links
//! between regions are emulated here instead, as a relaying proxy per link:
//!
//! ```text
//!   client ──► listener ─► [ Up:   reader ─► queue (delivery times) ─► writer ] ─► upstream
//!          ◄──────────────  [ Down: writer ◄─ queue (delivery times) ◄─ reader ] ◄──
//! ```
//!
//! [`Link::spawn`] accepts on a bound listener and relays each connection to `upstream` under the
//! current [`LinkParams`], until its shutdown signal turns true. The returned [`LinkHandle`]
//! changes the parameters, cuts and heals the link, taps the relayed bytes and reads counters.
//!
//! # Semantics
//!
//! - **Directions are independent.** Each direction of each connection has its own reader, queue
//!   and writer, so one direction's delay or backpressure never stalls the other.
//! - **Latency and jitter.** A chunk read at time `t` is delivered at
//!   `max(t + latency + j, previous delivery in that direction)`, `j` uniform in
//!   `[-jitter, +jitter]` and the total delay never below zero. Bytes are therefore never
//!   reordered (this is TCP); jitter only stretches or compresses gaps. Samples come from a small
//!   xorshift generator seeded from the link's name, the connection's number and the direction,
//!   so the same sequence of reads gets the same delays in every run.
//! - **Bandwidth.** With a cap of `b` bytes per second (each direction), a chunk of `n` bytes also
//!   takes `n / b` to serialize: it is delivered at
//!   `max(t + n/b + latency + j, previous delivery + n/b)`. Reads are scheduled in slices of at
//!   most 16 KiB, so a cap smooths a big read into a steady stream rather than a burst.
//! - **Pipelining.** The reader keeps reading while earlier chunks wait for their delivery
//!   time, so latency is paid once, not once per buffer.
//! - **Backpressure, bounded memory.** A direction holds at most a bounded number of bytes
//!   (4 MiB without a cap; with a cap `b × (latency + jitter + 100 ms)`, at least 64 KiB and at
//!   most 4 MiB). When full it stops reading its source, so a slow link pushes back through TCP
//!   like a real one, and a capped link's queue holds about 100 ms of data, not seconds.
//! - **End of stream** travels like data: after the bytes queued before it are delivered, the
//!   other side's write half is shut down (half-close); the other direction carries on.
//! - **Errors.** A reset (or any I/O error) on one side travels like data too: after the bytes
//!   queued before it in its direction, both sides are reset (`SO_LINGER` 0, so they see RST).
//!   A connection to `upstream` that fails resets the client at once.
//! - **Cut.** [`LinkHandle::cut`] resets every open connection at once, on both sides, and while
//!   the link is cut, every new connection is accepted and reset immediately, so clients fail
//!   fast instead of hanging. [`LinkHandle::heal`] lets new connections through again; the ones
//!   that were cut stay dead, as after a real partition long enough to time them out.
//! - **Parameters** changed with [`LinkHandle::set_params`] apply to bytes read from then on;
//!   bytes already queued keep their delivery times.
//! - **Shutdown.** When the shutdown signal turns true (or its sender is dropped), the link stops
//!   accepting, closes its listener and closes every open connection (plain close, no reset).
//!
//! Delivery times are waited on by one high-resolution timer thread per process, not Tokio's
//! timer, whose millisecond ticks make each wait 0–2 ms late (a 45 ms link measured 46–47 ms).
//! There is no busy polling: every wait is on a socket, a channel or a timer.
//!
//! # Limits of the emulation
//!
//! - A delivery is never early and late by the timer thread's wake-up plus the task's
//!   scheduling: tens of microseconds on an idle machine, more when the CPUs are busy. 20 ms each
//!   way measures as a round trip of 40.4–40.7 ms on loopback (a shared 2-core machine).
//! - Without a bandwidth cap, the 4 MiB queue acts like a 4 MiB TCP window: one connection moves
//!   at most about `4 MiB / latency` per direction (about 200 MB/s at 20 ms).
//! - Delay applies to bytes, not to TCP's own handshake: a client's `connect` completes at once
//!   (the listener is local), and its first bytes pay the latency.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod conn;
mod pipe;
mod schedule;
mod shared;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use shared::Shared;
pub use shared::Tap;

/// The most bytes one direction of one connection holds before it stops reading its source.
pub const MAX_QUEUE_BYTES: usize = schedule::MAX_QUEUE;

/// Conditions on a link, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkParams {
    /// One-way delay added to every byte.
    pub latency: Duration,
    /// Each chunk's delay varies uniformly within `latency ± jitter` (never below zero).
    pub jitter: Duration,
    /// Bytes per second in each direction; `None` for no cap. `Some(0)` counts as 1 byte/s.
    pub bandwidth: Option<u64>,
}

impl LinkParams {
    /// A link with this one-way latency, no jitter and no bandwidth cap.
    pub fn new(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// The same link with this jitter.
    #[must_use]
    pub fn with_jitter(self, jitter: Duration) -> Self {
        Self { jitter, ..self }
    }

    /// The same link capped at `bytes_per_second` in each direction.
    #[must_use]
    pub fn with_bandwidth(self, bytes_per_second: u64) -> Self {
        Self {
            bandwidth: Some(bytes_per_second),
            ..self
        }
    }
}

/// Which way bytes travel through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the connecting client to the upstream server.
    Up,
    /// From the upstream server back to the client.
    Down,
}

impl Direction {
    /// The other direction.
    pub fn opposite(self) -> Self {
        match self {
            Self::Up => Self::Down,
            Self::Down => Self::Up,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Up => 0,
            Self::Down => 1,
        }
    }
}

/// Counters of a link since it was spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Bytes delivered to the upstream side.
    pub bytes_up: u64,
    /// Bytes delivered to the client side.
    pub bytes_down: u64,
    /// Connections accepted by the listener, including the ones refused during a cut.
    pub accepted: u64,
    /// Connections accepted during a cut and reset at once.
    pub refused: u64,
    /// Connections whose upstream could not be reached (the client was reset).
    pub upstream_failures: u64,
    /// Connections reset by a cut or by an error on either side.
    pub resets: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes read but not yet delivered, over all connections and both directions.
    pub queued: u64,
}

/// Namespace for [`Link::spawn`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Link;

impl Link {
    /// Accepts on `listener`, connects each accepted connection to `upstream` and relays both
    /// ways under `params` (changeable through the handle) until `shutdown` turns true.
    ///
    /// `name` appears in logs and seeds the jitter. Must be called within a Tokio runtime.
    pub fn spawn(
        name: String,
        listener: TcpListener,
        upstream: SocketAddr,
        params: LinkParams,
        shutdown: watch::Receiver<bool>,
    ) -> LinkHandle {
        let shared = Arc::new(Shared::new(name, upstream, params));
        shared
            .tracker
            .spawn(conn::accept_loop(listener, Arc::clone(&shared), shutdown));
        // Connections are spawned by the accept loop while it runs, so the tracker empties only
        // once the loop and every connection have ended.
        shared.tracker.close();
        LinkHandle { shared }
    }
}

/// Controls a running [`Link`]; cheap to clone. Dropping every handle does not stop the link.
#[derive(Clone)]
pub struct LinkHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkHandle")
            .field("name", &self.shared.name)
            .field("upstream", &self.shared.upstream)
            .field("params", &self.params())
            .field("cut", &self.is_cut())
            .finish()
    }
}

impl LinkHandle {
    /// The name given to [`Link::spawn`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where connections are relayed to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Resets every open connection (both sides see RST at once) and, until [`heal`], resets
    /// every new connection as soon as it is accepted.
    ///
    /// [`heal`]: Self::heal
    pub fn cut(&self) {
        tracing::info!(link = %self.shared.name, "link cut");
        self.shared.control.send_modify(|c| {
            c.cut = true;
            c.cuts += 1;
        });
    }

    /// Lets new connections through again after [`cut`](Self::cut).
    pub fn heal(&self) {
        tracing::info!(link = %self.shared.name, "link healed");
        self.shared.control.send_modify(|c| c.cut = false);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.shared.control.borrow().cut
    }

    /// Changes the conditions for bytes read from now on (queued bytes keep their schedule).
    pub fn set_params(&self, params: LinkParams) {
        tracing::info!(link = %self.shared.name, ?params, "link parameters changed");
        self.shared.set_params(params);
    }

    /// The current conditions.
    pub fn params(&self) -> LinkParams {
        self.shared.params()
    }

    /// Counters since the link was spawned.
    pub fn stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            bytes_up: get(&c.bytes[Direction::Up.index()]),
            bytes_down: get(&c.bytes[Direction::Down.index()]),
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            upstream_failures: get(&c.upstream_failures),
            resets: get(&c.resets),
            open: get(&c.open),
            queued: get(&c.queued),
        }
    }

    /// From now on, keeps a copy of every byte delivered (both ways, every connection) until the
    /// returned [`Tap`] is dropped. Several taps may run at once; each sees the same bytes.
    pub fn tap(&self) -> Tap {
        Tap::start(Arc::clone(&self.shared))
    }

    /// Waits until the link has stopped: shutdown was signalled, the listener is closed and
    /// every connection has ended.
    pub async fn stopped(&self) {
        self.shared.tracker.wait().await;
    }
}
