//! Connections that have not authenticated yet, and the budget they share.
//!
//! A `-d` endpoint faces the network: anyone can open a connection and say nothing. Such
//! connections get at most [`PendingHandshakes::limit`] of the `-n` slots, and they never make an
//! authenticated connection wait. When a new connection needs room, the *oldest* unauthenticated
//! one is closed: an honest peer finishes its handshake in about one round trip, so it survives a
//! flood unless the attacker opens more than `limit` connections within that round trip, while
//! refusing the *newest* instead would let a slowloris attacker that re-opens its connections
//! every `-o` seconds lock honest peers out for good.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The unauthenticated connections of one endpoint, oldest first.
#[derive(Debug)]
pub(crate) struct PendingHandshakes {
    limit: usize,
    next_id: AtomicU64,
    /// Each connection's id and the means to close it.
    queue: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
}

/// The connection was closed to make room for a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("closed to make room: the handshake limit was reached and this was the oldest unauthenticated connection")]
pub(crate) struct Evicted;

impl PendingHandshakes {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            next_id: AtomicU64::new(0),
            queue: Mutex::default(),
        })
    }

    /// How many connections may be unauthenticated at once.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, oneshot::Sender<()>)>> {
        self.queue.lock().expect("not poisoned")
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.queue().len() >= self.limit
    }

    /// Closes the oldest unauthenticated connection; false if there is none.
    pub(crate) fn evict_oldest(&self) -> bool {
        match self.queue().pop_front() {
            Some((_, close)) => {
                // The receiver may be gone already (the connection just ended): nothing to do.
                let _ = close.send(());
                true
            }
            None => false,
        }
    }

    /// Registers a newly accepted connection as the newest unauthenticated one.
    pub(crate) fn admit(self: &Arc<Self>) -> PendingSlot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = oneshot::channel();
        self.queue().push_back((id, close));
        PendingSlot {
            id,
            closed,
            owner: Arc::clone(self),
        }
    }

    /// Removes `id`; false if it was evicted meanwhile.
    fn remove(&self, id: u64) -> bool {
        let mut q = self.queue();
        match q.iter().position(|(i, _)| *i == id) {
            Some(at) => {
                q.remove(at);
                true
            }
            None => false,
        }
    }
}

/// One connection's place among the unauthenticated ones; leaving it (by [`PendingSlot::authenticated`]
/// or by dropping it) frees the place.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    id: u64,
    closed: oneshot::Receiver<()>,
    owner: Arc<PendingHandshakes>,
}

impl PendingSlot {
    /// Runs `handshake` unless the connection is evicted first.
    pub(crate) async fn run<F: Future>(&mut self, handshake: F) -> Result<F::Output, Evicted> {
        tokio::select! {
            out = handshake => Ok(out),
            _ = &mut self.closed => Err(Evicted),
        }
    }

    /// Leaves the budget after a successful handshake. Fails if the connection was chosen for
    /// eviction in the meantime: the accept loop counts on its slot, so it closes all the same.
    pub(crate) fn authenticated(self) -> Result<(), Evicted> {
        if self.owner.remove(self.id) {
            Ok(())
        } else {
            Err(Evicted)
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.owner.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_is_evicted_and_an_authenticated_one_leaves() {
        let p = PendingHandshakes::new(2);
        let mut first = p.admit();
        let second = p.admit();
        assert!(p.is_full());
        assert!(p.evict_oldest());
        let never = std::future::pending::<()>();
        assert_eq!(first.run(never).await, Err(Evicted));
        assert!(!p.is_full());
        second.authenticated().unwrap();
        assert!(p.is_empty());
        assert!(!p.evict_oldest());
    }

    #[tokio::test]
    async fn evicted_just_after_its_handshake_still_counts_as_evicted() {
        let p = PendingHandshakes::new(1);
        let mut slot = p.admit();
        assert_eq!(slot.run(async { 7 }).await, Ok(7));
        assert!(p.evict_oldest());
        assert_eq!(slot.authenticated(), Err(Evicted));
    }

    #[test]
    fn a_dropped_slot_frees_its_place() {
        let p = PendingHandshakes::new(1);
        drop(p.admit());
        assert!(p.is_empty());
    }
}
