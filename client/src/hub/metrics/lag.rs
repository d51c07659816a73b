//! `fanfare_hub_delivery_lag_seconds`: a histogram of fixed buckets kept in
//! atomics, so that every connection's writer can observe every frame
//! without a lock (`prometheus_client`'s `Histogram` takes a mutex per
//! observation).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Upper bounds of the buckets, µs: 100 µs to 10 s, 1-2.5-5 per decade.
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

#[derive(Debug, Default)]
struct Cells {
    /// Per bucket (not cumulative), the last one `+Inf`.
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A delay histogram, observed in µs, exported in seconds. Clones share
/// the counts.
#[derive(Debug, Clone, Default)]
pub struct LagHistogram {
    cells: Arc<Cells>,
}

impl LagHistogram {
    /// Records one delay of `us` microseconds.
    pub fn observe_us(&self, us: u64) {
        let bucket = BUCKETS_US.partition_point(|&bound| bound < us);
        self.cells.counts[bucket].fetch_add(1, Relaxed);
        self.cells.sum_us.fetch_add(us, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.cells.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl EncodeMetric for LagHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0); BUCKETS_US.len() + 1];
        for (i, (bound, count)) in buckets.iter_mut().enumerate() {
            *bound = BUCKETS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            *count = self.cells.counts[i].load(Relaxed);
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.cells.sum_us.load(Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let h = LagHistogram::default();
        for us in [0, 100, 101, 9_999_999, 10_000_000, 60_000_000] {
            h.observe_us(us);
        }
        let n = |i: usize| h.cells.counts[i].load(Relaxed);
        assert_eq!((n(0), n(1), n(15), n(16)), (2, 1, 2, 1));
        assert_eq!(h.count(), 6);
    }
}
