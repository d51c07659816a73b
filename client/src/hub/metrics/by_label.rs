//! A counter family with a fixed set of label values, known at start: one
//! plain atomic counter per value, no map and no lock (unlike
//! `prometheus_client`'s `Family`), and every value exported from the start,
//! zeros included.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::MetricType;

/// `N` counters labelled `key="<value>"`. Clones share the counts.
#[derive(Debug, Clone)]
pub struct ByLabel<const N: usize> {
    key: &'static str,
    values: [&'static str; N],
    counters: Arc<[Counter; N]>,
}

impl<const N: usize> ByLabel<N> {
    /// Counters for `key` = each of `values`, in that order.
    pub fn new(key: &'static str, values: [&'static str; N]) -> Self {
        Self {
            key,
            values,
            counters: Arc::new(std::array::from_fn(|_| Counter::default())),
        }
    }

    /// Counts one for the value at `index` (out of range: ignored).
    pub fn inc(&self, index: usize) {
        if let Some(c) = self.counters.get(index) {
            c.inc();
        }
    }

    /// The count of the value at `index`.
    pub fn get(&self, index: usize) -> u64 {
        self.counters.get(index).map_or(0, Counter::get)
    }
}

impl<const N: usize> EncodeMetric for ByLabel<N> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, counter) in self.values.iter().zip(self.counters.iter()) {
            counter.encode(encoder.encode_family(&[(self.key, *value)])?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}
