//! Reconnect delays: exponential with jitter.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Doubling delays between `min` and `max`, each with up to +25 % jitter so
/// that many clients do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base + base.mul_f64(jitter() * 0.25)
    }

    /// Back to the shortest delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A random number in `[0, 1)` from the standard library's hasher seeds.
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d: Vec<Duration> = (0..4).map(|_| b.next_delay()).collect();
        let within = |d: Duration, base: u64| {
            d >= Duration::from_millis(base) && d <= Duration::from_millis(base * 5 / 4)
        };
        assert!(within(d[0], 100) && within(d[1], 200) && within(d[2], 400) && within(d[3], 400));
        b.reset();
        assert!(within(b.next_delay(), 100));
    }
}
