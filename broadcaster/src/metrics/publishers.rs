//! Confirmed publish: re-sent messages dropped, acks sent, the publisher
//! table's size and evictions.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::{register, CountGauge};

/// Publisher-seq dedup and ack metrics (all `fanfare_…`).
#[derive(Debug, Clone, Default)]
pub(crate) struct PublisherMetrics {
    /// Messages dropped because their publisher seq was already stamped.
    pub(crate) duplicates: Counter,
    /// Acks published.
    pub(crate) acks: Counter,
    /// Publishers in the dedup table now.
    pub(crate) publishers: CountGauge,
    /// Publishers evicted from the full table.
    pub(crate) evicted: Counter,
}

impl PublisherMetrics {
    /// Registers them in `r`.
    pub(crate) fn register(r: &mut Registry) -> Self {
        Self {
            duplicates: register(
                r,
                "ingress_duplicates",
                "Ingress messages dropped as re-sent (publisher seq already stamped); still acked",
            ),
            acks: register(r, "acks", "Acks published to confirmed publishers"),
            publishers: register(
                r,
                "publishers",
                "Publishers held in the publisher-seq dedup table",
            ),
            evicted: register(
                r,
                "publishers_evicted",
                "Publishers evicted from the full dedup table (least recently seen)",
            ),
        }
    }
}
