//! Waiting for a delivery time, precisely.
//!
//! Tokio's timer counts whole milliseconds: a deadline is rounded up to the next millisecond and
//! the driver then sleeps from the start of the current one, so a wait ends 0–2 ms late (about
//! 1 ms on average). A 45 ms link emulated with it measures as 46–47 ms each way. Links therefore
//! wait on one process-wide timer thread that sleeps with the kernel's high-resolution timeout
//! (a condition variable's `wait_timeout`) and wakes each waiting task at its deadline: a
//! delivery is late by the thread's wake-up and the task's scheduling, tens of microseconds.
//!
//! The thread only holds wakers: one entry per direction waiting for its next chunk (a sleep
//! dropped early leaves its entry until the deadline, then wakes nobody that cares), so its heap
//! stays as small as the number of busy connections. Chunks that are due by the time a writer
//! wakes are written at once, so a busy direction needs no more wake-ups than an idle one.
//!
//! Tests that pause Tokio's clock use [`Clock::Tokio`]: the timer thread keeps real time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use crate::shared::lock;

/// Which timer a link waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The process-wide high-resolution timer thread (real time).
    Precise,
    /// Tokio's timer: millisecond granularity, follows a paused test clock.
    #[cfg_attr(not(test), allow(dead_code))]
    Tokio,
}

impl Clock {
    /// Completes at `at` (at once if it has passed).
    pub(crate) async fn sleep_until(self, at: Instant) {
        match self {
            Self::Tokio => tokio::time::sleep_until(at).await,
            Self::Precise => match TimerThread::get() {
                Some(timer) => {
                    PreciseSleep {
                        deadline: at.into_std(),
                        timer,
                        registered: None,
                    }
                    .await;
                }
                // No thread could be started: late by a millisecond beats not at all.
                None => tokio::time::sleep_until(at).await,
            },
        }
    }
}

/// Completes once real time reaches `deadline`. Registers with the thread once; polled again
/// early (a writer shares its task with its reader, so it is, at every read), it only refreshes
/// the waker, so the heap holds one entry per sleep.
struct PreciseSleep {
    deadline: std::time::Instant,
    timer: &'static TimerThread,
    registered: Option<Arc<Mutex<Waker>>>,
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::time::Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        match &self.registered {
            Some(slot) => {
                let mut waker = lock(slot);
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let slot = Arc::new(Mutex::new(cx.waker().clone()));
                self.timer.register(self.deadline, Arc::clone(&slot));
                self.registered = Some(slot);
            }
        }
        Poll::Pending
    }
}

/// A waker due at a time. Ordered by deadline, then by arrival, never by the waker.
struct Entry {
    deadline: std::time::Instant,
    seq: u64,
    waker: Arc<Mutex<Waker>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct Pending {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct TimerThread {
    pending: Mutex<Pending>,
    /// Signalled when an entry earlier than every other arrives.
    earlier: Condvar,
}

impl TimerThread {
    /// The process's timer thread, started on first use; `None` if no thread could be started.
    fn get() -> Option<&'static Self> {
        static TIMER: OnceLock<Option<&'static TimerThread>> = OnceLock::new();
        *TIMER.get_or_init(|| {
            // Lives as long as the process, like the thread that serves it.
            let timer: &'static Self = Box::leak(Box::new(Self {
                pending: Mutex::default(),
                earlier: Condvar::new(),
            }));
            match std::thread::Builder::new()
                .name("wan-timer".into())
                .spawn(move || timer.run())
            {
                Ok(_) => Some(timer),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the WAN timer thread; delays use Tokio's 1 ms timer");
                    None
                }
            }
        })
    }

    fn register(&self, deadline: std::time::Instant, waker: Arc<Mutex<Waker>>) {
        let mut p = lock(&self.pending);
        let first = p.heap.peek().is_none_or(|Reverse(e)| deadline < e.deadline);
        p.seq += 1;
        let seq = p.seq;
        p.heap.push(Reverse(Entry {
            deadline,
            seq,
            waker,
        }));
        drop(p);
        if first {
            self.earlier.notify_one();
        }
    }

    fn run(&self) {
        // Linux delays a thread's timed wake-ups by up to its timer slack (50 µs by default)
        // to batch them; this thread exists to wake on time.
        #[cfg(target_os = "linux")]
        if let Err(e) = nix::sys::prctl::set_timerslack(1_000) {
            tracing::debug!(error = %e, "cannot lower the WAN timer thread's timer slack");
        }
        let mut due = Vec::new();
        let mut p = lock(&self.pending);
        loop {
            let now = std::time::Instant::now();
            while p.heap.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
                if let Some(Reverse(e)) = p.heap.pop() {
                    due.push(lock(&e.waker).clone());
                }
            }
            if !due.is_empty() {
                // Wake outside the lock: a woken task may register again at once.
                drop(p);
                due.drain(..).for_each(Waker::wake);
                p = lock(&self.pending);
                continue;
            }
            p = match p.heap.peek().map(|Reverse(e)| e.deadline - now) {
                Some(wait) => {
                    self.earlier
                        .wait_timeout(p, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .earlier
                    .wait(p)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn precise_sleep_ends_at_its_deadline_not_a_millisecond_later() {
        // Side by side with Tokio's timer, interleaved, so a busy machine (other tests of this
        // binary run at the same time) delays both alike and only the timers' own error differs.
        let (mut precise, mut tokio_late) = (Vec::new(), Vec::new());
        for i in 0..20u32 {
            // Deadlines at odd fractions of a millisecond, where Tokio's timer is worst.
            let offset = Duration::from_micros(3_000 + 137 * u64::from(i));
            let at = Instant::now() + offset;
            Clock::Precise.sleep_until(at).await;
            let now = Instant::now();
            assert!(now >= at, "woke {:?} early", at - now);
            precise.push(now - at);
            let at = Instant::now() + offset;
            tokio::time::sleep_until(at).await;
            tokio_late.push(Instant::now().saturating_duration_since(at));
        }
        precise.sort();
        tokio_late.sort();
        let median = |v: &[Duration]| v[v.len() / 2];
        // Tokio's timer rounds up to the next millisecond: 0.5-1 ms late on average.
        assert!(
            median(&precise) < median(&tokio_late),
            "precise {precise:?}, tokio {tokio_late:?}"
        );
    }

    #[tokio::test]
    async fn many_waiters_each_wake_at_their_own_time() {
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..50u64)
            .rev()
            .map(|i| {
                let at = t0 + Duration::from_micros(2_000 + 100 * i);
                tokio::spawn(async move {
                    Clock::Precise.sleep_until(at).await;
                    Instant::now() >= at
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
    }
}
