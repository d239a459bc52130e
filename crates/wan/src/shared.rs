//! State shared by a link's tasks and handles: parameters, cut state, counters, taps.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::schedule::seed_from_name;
use crate::{Direction, LinkParams};

/// Locks, ignoring poisoning: every critical section here leaves its data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Cut state, watched by the accept loop and by every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    /// New connections are refused.
    pub(crate) cut: bool,
    /// How many times the link was cut: a connection dies when this differs from its value when
    /// the connection was accepted, so even a cut healed at once is never missed.
    pub(crate) cuts: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Delivered bytes, indexed by [`Direction::index`].
    pub(crate) bytes: [AtomicU64; 2],
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) upstream_failures: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) queued: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) upstream: SocketAddr,
    /// Seeds the jitter of every connection of the link.
    pub(crate) seed: u64,
    params: Mutex<LinkParams>,
    /// What delivery times are waited on.
    pub(crate) clock: Clock,
    pub(crate) control: watch::Sender<Control>,
    pub(crate) counters: Counters,
    /// Numbers connections, for logs and jitter seeds.
    pub(crate) next_conn: AtomicU64,
    /// Running taps, by id.
    taps: Mutex<Vec<(u64, Arc<TapData>)>>,
    /// `taps.len()`, readable without the lock on the data path.
    taps_active: AtomicUsize,
    next_tap: AtomicU64,
    /// The accept loop and every connection task.
    pub(crate) tracker: TaskTracker,
}

impl Shared {
    pub(crate) fn new(name: String, upstream: SocketAddr, params: LinkParams) -> Self {
        Self {
            seed: seed_from_name(&name),
            name,
            upstream,
            params: Mutex::new(params),
            clock: Clock::Precise,
            control: watch::Sender::new(Control {
                cut: false,
                cuts: 0,
            }),
            counters: Counters::default(),
            next_conn: AtomicU64::new(0),
            taps: Mutex::new(Vec::new()),
            taps_active: AtomicUsize::new(0),
            next_tap: AtomicU64::new(0),
            tracker: TaskTracker::new(),
        }
    }

    pub(crate) fn params(&self) -> LinkParams {
        *lock(&self.params)
    }

    pub(crate) fn set_params(&self, params: LinkParams) {
        *lock(&self.params) = params;
    }

    /// Counts (and taps) bytes just written to their destination.
    pub(crate) fn delivered(&self, way: Direction, data: &Bytes) {
        self.counters.bytes[way.index()].fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.taps_active.load(Ordering::Acquire) > 0 {
            for (_, tap) in lock(&self.taps).iter() {
                lock(tap).push((way, data.clone()));
            }
        }
    }
}

/// What one tap recorded: delivered chunks, in order.
type TapData = Mutex<Vec<(Direction, Bytes)>>;

/// Connections open now: counted from accept until the connection's task ends or is dropped.
pub(crate) struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.counters.open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A copy of the bytes a link delivers, from [`LinkHandle::tap`](crate::LinkHandle::tap) until
/// this is dropped.
///
/// Bytes are recorded when they are written to their destination, in that order, across every
/// connection of the link. Memory grows with the traffic: keep taps short-lived.
pub struct Tap {
    id: u64,
    data: Arc<TapData>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("link", &self.shared.name)
            .field("len", &self.len())
            .finish()
    }
}

impl Tap {
    pub(crate) fn start(shared: Arc<Shared>) -> Self {
        let id = shared.next_tap.fetch_add(1, Ordering::Relaxed);
        let data = Arc::default();
        {
            let mut taps = lock(&shared.taps);
            taps.push((id, Arc::clone(&data)));
            shared.taps_active.store(taps.len(), Ordering::Release);
        }
        Self { id, data, shared }
    }

    /// Every byte delivered so far, both ways, in delivery order.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.data)
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// The bytes delivered so far in one direction.
    pub fn bytes_of(&self, way: Direction) -> Vec<u8> {
        lock(&self.data)
            .iter()
            .filter(|(w, _)| *w == way)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// How many bytes were recorded so far.
    pub fn len(&self) -> usize {
        lock(&self.data).iter().map(|(_, b)| b.len()).sum()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let mut taps = lock(&self.shared.taps);
        taps.retain(|(id, _)| *id != self.id);
        self.shared.taps_active.store(taps.len(), Ordering::Release);
    }
}
