//! When each chunk is delivered: latency, jitter, serialization delay; and how much may queue.
//!
//! Pure arithmetic on [`Instant`]s, so it is tested without sockets or timers.

use std::time::Duration;

use tokio::time::Instant;

use crate::LinkParams;

/// Largest slice of a read scheduled as one unit when a bandwidth cap applies, so that a cap
/// smooths a big read into a steady stream instead of delivering it in one burst.
pub(crate) const SLICE: usize = 16 * 1024;

/// The most bytes one direction of one connection holds at a time.
pub(crate) const MAX_QUEUE: usize = 4 * 1024 * 1024;

/// The least bytes one direction of one connection may hold, however slow the link.
pub(crate) const MIN_QUEUE: usize = 64 * 1024;

/// Bytes of queue beyond the bandwidth-delay product: 100 ms at the capped rate.
const QUEUE_SLACK: Duration = Duration::from_millis(100);

/// How many bytes one direction may hold under `params` before it stops reading its source.
///
/// Without a cap, [`MAX_QUEUE`]. With a cap of `b` bytes per second, enough for the bytes on the
/// wire (`b × (latency + jitter)`) plus 100 ms of queue, clamped to
/// [`MIN_QUEUE`]..=[`MAX_QUEUE`]: a slow link then pushes back on its sender within about
/// 100 ms instead of hiding seconds of data in a queue.
pub(crate) fn queue_limit(params: &LinkParams) -> usize {
    match params.bandwidth {
        None => MAX_QUEUE,
        Some(b) => {
            let window = params
                .latency
                .saturating_add(params.jitter)
                .saturating_add(QUEUE_SLACK);
            let bytes = u128::from(b) * window.as_nanos() / 1_000_000_000;
            usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .clamp(MIN_QUEUE, MAX_QUEUE)
        }
    }
}

/// Time to push `n` bytes through a link of `bandwidth` bytes per second (0 counts as 1).
pub(crate) fn serialization(n: usize, bandwidth: u64) -> Duration {
    let nanos = n as u128 * 1_000_000_000 / u128::from(bandwidth.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `at + d`, saturating at about a century instead of panicking on absurd parameters.
fn later(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(d.min(FAR)).unwrap_or(at)
}

/// Delivery times for one direction of one connection.
#[derive(Debug)]
pub(crate) struct Schedule {
    rng: XorShift,
    /// When the previous chunk in this direction is delivered.
    last: Option<Instant>,
}

impl Schedule {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: XorShift::new(seed),
            last: None,
        }
    }

    /// When a chunk of `n` bytes read at `now` is delivered:
    /// `max(now + n/b + delay, previous + n/b)`, with `delay = latency + jitter sample` (never
    /// negative) and `n/b` zero without a bandwidth cap. A zero-length chunk (end of stream, a
    /// reset) just queues behind the previous one.
    pub(crate) fn arrival(&mut self, now: Instant, n: usize, params: &LinkParams) -> Instant {
        let ser = params
            .bandwidth
            .map_or(Duration::ZERO, |b| serialization(n, b));
        let delay = self.delay(params);
        let mut at = later(later(now, ser), delay);
        if let Some(last) = self.last {
            at = at.max(later(last, ser));
        }
        self.last = Some(at);
        at
    }

    /// `latency + u`, `u` uniform in `[-jitter, +jitter]`, clamped at zero.
    fn delay(&mut self, params: &LinkParams) -> Duration {
        let j = u64::try_from(params.jitter.as_nanos())
            .unwrap_or(u64::MAX)
            .min(u64::MAX / 4);
        if j == 0 {
            return params.latency;
        }
        let offset = i128::from(self.rng.below(2 * j + 1)) - i128::from(j);
        let nanos = (params.latency.as_nanos() as i128 + offset).max(0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// xorshift64*: tiny, fast, and reproducible from a seed; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // Any seed, including 0, maps to a non-zero state.
        Self(splitmix64(seed) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// One step of SplitMix64, used to spread seeds.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a link's name: the per-link seed, so runs are reproducible.
pub(crate) fn seed_from_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn latency_only_is_exact_and_in_order() {
        let p = LinkParams::new(ms(20));
        let mut s = Schedule::new(1);
        let t0 = Instant::now();
        assert_eq!(s.arrival(t0, 100, &p), t0 + ms(20));
        assert_eq!(s.arrival(t0 + ms(5), 100, &p), t0 + ms(25));
        assert_eq!(s.arrival(t0 + ms(5), 0, &p), t0 + ms(25));
    }

    #[test]
    fn jitter_stays_in_bounds_and_never_reorders() {
        let p = LinkParams::new(ms(20)).with_jitter(ms(5));
        let mut s = Schedule::new(7);
        let t0 = Instant::now();
        let mut prev = t0;
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(i * 100);
            let at = s.arrival(now, 10, &p);
            assert!(at >= prev, "reordered at chunk {i}");
            assert!(at >= now + ms(15), "too early at chunk {i}");
            prev = at;
            // Only chunks not held back by an earlier one show the raw delay.
            if i % 100 == 0 {
                let d = at - now;
                spread = (spread.0.min(d), spread.1.max(d));
            }
        }
        assert!(spread.1 <= ms(25), "{spread:?}");
        assert!(
            spread.1 - spread.0 > ms(4),
            "jitter barely varies: {spread:?}"
        );
    }

    #[test]
    fn jitter_larger_than_latency_clamps_at_zero() {
        let p = LinkParams::new(ms(1)).with_jitter(ms(10));
        let mut s = Schedule::new(3);
        let t0 = Instant::now();
        for i in 0..1000 {
            let now = t0 + ms(100 * i);
            assert!(s.arrival(now, 1, &p) >= now);
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        let p = LinkParams::new(ms(20)).with_jitter(ms(5));
        let t0 = Instant::now();
        let run = |seed| {
            let mut s = Schedule::new(seed);
            (0..100)
                .map(|i| s.arrival(t0 + ms(i * 50), 1, &p))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn bandwidth_spaces_chunks_by_serialization_delay() {
        // 1 MB/s: 16 KiB takes 16.384 ms.
        let p = LinkParams::new(ms(10)).with_bandwidth(1_000_000);
        let mut s = Schedule::new(1);
        let t0 = Instant::now();
        let ser = serialization(SLICE, 1_000_000);
        assert_eq!(ser, Duration::from_micros(16_384));
        let first = s.arrival(t0, SLICE, &p);
        assert_eq!(first, t0 + ser + ms(10));
        // 64 slices read at once: the last arrives after 64 serialization delays.
        let mut last = first;
        for _ in 1..64 {
            last = s.arrival(t0, SLICE, &p);
        }
        assert_eq!(last, t0 + ser * 64 + ms(10));
        // After an idle second, the next chunk is not held back by the old ones.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(s.arrival(later, 1000, &p), later + ms(1) + ms(10));
    }

    #[test]
    fn queue_limit_follows_the_bandwidth_delay_product() {
        assert_eq!(queue_limit(&LinkParams::default()), MAX_QUEUE);
        assert_eq!(queue_limit(&LinkParams::new(ms(500))), MAX_QUEUE);
        assert_eq!(
            queue_limit(&LinkParams::default().with_bandwidth(100_000)),
            MIN_QUEUE
        );
        // 10 MB/s × (50 ms + 100 ms) = 1.5 MB.
        let p = LinkParams::new(ms(50)).with_bandwidth(10_000_000);
        assert_eq!(queue_limit(&p), 1_500_000);
        assert_eq!(
            queue_limit(&LinkParams::new(ms(50)).with_bandwidth(u64::MAX)),
            MAX_QUEUE
        );
    }

    #[test]
    fn absurd_parameters_do_not_panic() {
        let p = LinkParams {
            latency: Duration::MAX,
            jitter: Duration::MAX,
            bandwidth: Some(0),
        };
        let mut s = Schedule::new(0);
        let t0 = Instant::now();
        assert!(s.arrival(t0, usize::MAX, &p) >= t0);
        assert!(queue_limit(&p) >= MIN_QUEUE);
    }

    #[test]
    fn below_is_in_range() {
        let mut r = XorShift::new(0);
        for n in [1, 2, 3, 1000, u64::MAX] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
    }
}
