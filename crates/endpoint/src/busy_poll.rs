//! Busy-polling the forwarding thread right after traffic, instead of sleeping at once.
//!
//! Each request through the endpoint wakes the forwarding thread twice (the request, then the
//! reply), and on a VM a wake-up from sleep costs more than forwarding the bytes: profiled one
//! request at a time, most of the thread's time was coming back from sleep and waking its peer
//! across vCPUs. While polling, the thread is awake when the next bytes arrive.
//!
//! The window adapts, as the kernel's `haltpoll` idle governor does: after the thread slept,
//! traffic that came back sooner than the longest window means a longer poll would have caught
//! it (the window doubles); traffic after a longer sleep means polling would have been wasted
//! (the window halves, down to zero). Sparse traffic therefore costs no polling, and while it
//! polls the thread lets any other runnable thread on its CPU go first (`sched_yield`), so it
//! only takes CPU time nobody else wants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

/// The first window after a long sleep, before it doubles.
const GROW_FROM: Duration = Duration::from_micros(10);

/// When the forwarder last carried bytes; shared by the connections of one thread.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    /// Nanoseconds since `base` of the last carried bytes.
    last: AtomicU64,
    traffic: Notify,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            last: AtomicU64::new(0),
            traffic: Notify::new(),
        }
    }

    /// Bytes were carried just now.
    pub(crate) fn touch(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.traffic.notify_one();
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    /// Nanoseconds since the last carried bytes.
    fn quiet_for(&self) -> u64 {
        self.now().saturating_sub(self.last())
    }
}

/// The adaptive window, apart from the clock so that it can be tested alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    now: Duration,
    max: Duration,
}

impl Window {
    pub(crate) fn new(max: Duration) -> Self {
        Self { now: max, max }
    }

    pub(crate) fn get(self) -> Duration {
        self.now
    }

    /// The thread slept `slept` before traffic came back.
    pub(crate) fn after_sleep(&mut self, slept: Duration) {
        self.now = if slept < self.max {
            (self.now * 2).max(GROW_FROM).min(self.max)
        } else if self.now > GROW_FROM {
            self.now / 2
        } else {
            Duration::ZERO
        };
    }
}

/// Runs on the forwarding thread's runtime until `shutdown`: after each burst of traffic, keeps
/// the runtime polling its sockets (without blocking) until the traffic has paused for the
/// current window.
pub(crate) async fn run(activity: &Activity, max: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut window = Window::new(max);
    let mut polled_until = 0;
    loop {
        tokio::select! {
            () = activity.traffic.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let last = activity.last();
        if last < polled_until {
            // Left over from traffic seen while polling: not a wake-up from sleep.
            continue;
        }
        window.after_sleep(Duration::from_nanos(last - polled_until));
        let window_ns = u64::try_from(window.get().as_nanos()).unwrap_or(u64::MAX);
        while activity.quiet_for() < window_ns {
            std::thread::yield_now();
            // On a current-thread runtime, a yielded task makes the runtime poll its I/O driver
            // without blocking before running it again.
            tokio::task::yield_now().await;
        }
        polled_until = activity.now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(100);

    #[test]
    fn traffic_that_returns_within_the_window_keeps_it_at_its_longest() {
        let mut w = Window::new(MAX);
        for _ in 0..10 {
            w.after_sleep(Duration::from_micros(30));
        }
        assert_eq!(w.get(), MAX);
    }

    #[test]
    fn sparse_traffic_shrinks_it_to_nothing_and_dense_traffic_grows_it_back() {
        let mut w = Window::new(MAX);
        let mut seen = Vec::new();
        for _ in 0..6 {
            w.after_sleep(Duration::from_millis(5));
            seen.push(w.get().as_micros());
        }
        assert_eq!(seen, [50, 25, 12, 6, 0, 0]);
        let mut seen = Vec::new();
        for _ in 0..5 {
            w.after_sleep(Duration::from_micros(20));
            seen.push(w.get().as_micros());
        }
        assert_eq!(seen, [10, 20, 40, 80, 100]);
    }

    #[test]
    fn a_zero_maximum_never_polls() {
        let mut w = Window::new(Duration::ZERO);
        w.after_sleep(Duration::ZERO);
        assert_eq!(w.get(), Duration::ZERO);
    }
}
