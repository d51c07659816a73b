//! A latency histogram in microseconds: log-linear buckets (32 per power of
//! two above 64 µs, so ≤ 3 % error), fixed size, merged by addition.

/// Buckets: 64 exact ones below 64 µs, then 32 per power of two up to 2^34 µs.
const BUCKETS: usize = 64 + 29 * 32;

/// Counts of latencies.
#[derive(Clone)]
pub struct Hist {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
        }
    }
}

fn index(us: u64) -> usize {
    let v = us.min((1 << 34) - 1);
    if v < 64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize; // ≥ 6
    let m = ((v >> (e - 5)) & 31) as usize;
    64 + (e - 6) * 32 + m
}

fn lower_bound(i: usize) -> u64 {
    if i < 64 {
        return i as u64;
    }
    let e = (i - 64) / 32 + 6;
    let m = ((i - 64) % 32) as u64;
    (32 + m) << (e - 5)
}

impl Hist {
    /// Counts one latency.
    pub fn record(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The `p` quantile (0..=1) in milliseconds (NaN when empty); the
    /// middle of its bucket.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let lo = lower_bound(i);
                let hi = lower_bound(i + 1).max(lo + 1);
                return (lo + hi) as f64 / 2.0 / 1000.0;
            }
        }
        self.max as f64 / 1000.0
    }

    /// The largest latency counted, ms.
    pub fn max_ms(&self) -> f64 {
        self.max as f64 / 1000.0
    }
}
