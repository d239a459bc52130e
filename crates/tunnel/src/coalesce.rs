//! When to hold a partial packet back, hoping to fill it.
//!
//! spiped seals every read into its own packet, so a 100-byte write costs 1,060 bytes on the
//! wire. We hold a partial packet for at most `window` — but only while the sender is streaming,
//! that is, when this direction already sent a packet less than `window` ago. The first small
//! write after a pause goes out at once, so a request/response exchange slower than one message
//! per window (every exchange across a WAN) sees no added delay: Nagle's idea, with a bounded
//! timer and no dependence on ACKs.

use std::time::Duration;

use tokio::time::Instant;

/// The hold-back decision for one direction.
#[derive(Debug, Clone)]
pub(crate) struct Coalescer {
    window: Duration,
    last_flush: Option<Instant>,
}

impl Coalescer {
    /// `window` of zero disables coalescing (spiped's behaviour).
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            last_flush: None,
        }
    }

    /// Called with a partial packet pending and no deadline yet: returns the deadline to hold it
    /// until, or `None` to send it now.
    pub(crate) fn hold_until(&self, now: Instant) -> Option<Instant> {
        let streaming = self
            .last_flush
            .is_some_and(|t| now.duration_since(t) < self.window);
        streaming.then(|| now + self.window)
    }

    /// Records that packets were just sent.
    pub(crate) fn flushed(&mut self, now: Instant) {
        self.last_flush = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_write_after_idle_goes_out_at_once() {
        let now = Instant::now();
        let mut c = Coalescer::new(MS);
        assert_eq!(c.hold_until(now), None);
        c.flushed(now);
        assert_eq!(c.hold_until(now + 2 * MS), None);
    }

    #[test]
    fn a_stream_of_small_writes_is_held_for_at_most_the_window() {
        let now = Instant::now();
        let mut c = Coalescer::new(MS);
        c.flushed(now);
        let t = now + Duration::from_micros(100);
        assert_eq!(c.hold_until(t), Some(t + MS));
    }

    #[test]
    fn zero_window_never_holds() {
        let now = Instant::now();
        let mut c = Coalescer::new(Duration::ZERO);
        c.flushed(now);
        assert_eq!(c.hold_until(now), None);
    }
}
