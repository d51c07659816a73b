//! The hub's metrics, kept in `prometheus-client` types (atomics, no lock)
//! and encoded by that crate in the OpenMetrics text format.
//!
//! Counters are registered without the `_total` suffix: the encoder adds
//! it, so the series keep the names they always had
//! (`fanfare_hub_closed_total{worker,cause}` …). Every series carries the
//! `worker` label, set once when the registry is built.

mod by_label;
mod lag;

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::connection::CloseCause;
use super::protocol::ErrorCode;
use by_label::ByLabel;
pub use lag::LagHistogram;

/// The HTTP `Content-Type` of [`HubMetrics::render`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one hub. Counters only go up; the gauges are noted.
#[derive(Debug)]
pub struct HubMetrics {
    /// Open websocket connections (gauge).
    pub connections_open: Gauge,
    /// Connections accepted since start.
    pub connections_total: Counter,
    /// Requests to `/ws` that were not a websocket handshake.
    pub refused_handshake: Counter,
    /// Upgrades refused for a bad `Origin`.
    pub refused_origin: Counter,
    /// Upgrades refused by the authorizer.
    pub refused_auth: Counter,
    /// Upgrades refused because the hub was full.
    pub refused_full: Counter,
    /// Messages received from the fabric.
    pub events_in: Counter,
    /// Changes of the feed's patterns applied (following interest).
    pub feed_changes: Counter,
    /// Event frames queued toward browsers (live and recovered).
    pub deliveries: Counter,
    /// Frames written to browsers (all kinds).
    pub frames_out: Counter,
    /// Publishes accepted from browsers.
    pub publishes: Counter,
    /// Subscribe requests with `since` fully recovered.
    pub recoveries_exact: Counter,
    /// Subscribe requests with `since` that ended with a gap.
    pub recoveries_partial: Counter,
    /// Events sent from the hub's ring during recovery.
    pub recovered_from_ring: Counter,
    /// Events sent from the broadcaster's history during recovery.
    pub recovered_from_replay: Counter,
    /// `gap` frames sent.
    pub gaps_sent: Counter,
    /// `subscribe` requests refused at the worker's distinct-pattern cap.
    pub patterns_refused_distinct: Counter,
    /// `subscribe` requests refused at the worker's cap of distinct
    /// wildcard-led patterns (checked on every event).
    pub patterns_refused_wildcard: Counter,
    /// Events in the hub's ring (gauge).
    pub ring_entries: Gauge,
    /// Stamp-to-dispatch delay of the last event, µs (a gauge for the demo
    /// dashboard; not exported: see [`HubMetrics::delivery_lag`]).
    pub lag_us: AtomicU64,
    /// Stamp → hand-over to the websocket writer of each live event frame,
    /// per connection (`fanfare_hub_delivery_lag_seconds`).
    pub delivery_lag: LagHistogram,
    errors: ByLabel<{ ErrorCode::ALL.len() }>,
    closes: ByLabel<{ CloseCause::ALL.len() }>,
    registry: Registry,
}

impl HubMetrics {
    /// Zeroed metrics of the hub of `worker` (the `worker` label).
    pub fn new(worker: &str) -> Self {
        let mut m = Self {
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            refused_handshake: Counter::default(),
            refused_origin: Counter::default(),
            refused_auth: Counter::default(),
            refused_full: Counter::default(),
            events_in: Counter::default(),
            feed_changes: Counter::default(),
            deliveries: Counter::default(),
            frames_out: Counter::default(),
            publishes: Counter::default(),
            recoveries_exact: Counter::default(),
            recoveries_partial: Counter::default(),
            recovered_from_ring: Counter::default(),
            recovered_from_replay: Counter::default(),
            gaps_sent: Counter::default(),
            patterns_refused_distinct: Counter::default(),
            patterns_refused_wildcard: Counter::default(),
            ring_entries: Gauge::default(),
            lag_us: AtomicU64::new(0),
            delivery_lag: LagHistogram::default(),
            errors: ByLabel::new("code", ErrorCode::ALL.map(ErrorCode::as_str)),
            closes: ByLabel::new("cause", CloseCause::ALL.map(CloseCause::label)),
            registry: Registry::with_labels(std::iter::once((
                "worker".into(),
                worker.to_owned().into(),
            ))),
        };
        m.register();
        m
    }

    /// Registers handles to every exported metric (they share the values).
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "fanfare_hub_connections_open",
            "Open websocket connections",
            self.connections_open.clone(),
        );
        let counters = [
            (
                "fanfare_hub_connections",
                "Websocket connections accepted",
                &self.connections_total,
            ),
            (
                "fanfare_hub_refused_handshake",
                "Requests to /ws that were not a websocket handshake",
                &self.refused_handshake,
            ),
            (
                "fanfare_hub_refused_origin",
                "Upgrades refused for their Origin",
                &self.refused_origin,
            ),
            (
                "fanfare_hub_refused_auth",
                "Upgrades refused by the authorizer",
                &self.refused_auth,
            ),
            (
                "fanfare_hub_refused_full",
                "Upgrades refused at the connection limit",
                &self.refused_full,
            ),
            (
                "fanfare_hub_events_in",
                "Messages received from the fabric",
                &self.events_in,
            ),
            (
                "fanfare_hub_feed_changes",
                "Changes of the feed's patterns applied (following the browsers' interest)",
                &self.feed_changes,
            ),
            (
                "fanfare_hub_deliveries",
                "Event frames queued toward browsers",
                &self.deliveries,
            ),
            (
                "fanfare_hub_frames_out",
                "Frames written to browsers",
                &self.frames_out,
            ),
            (
                "fanfare_hub_publishes",
                "Publishes accepted from browsers",
                &self.publishes,
            ),
            (
                "fanfare_hub_recoveries_exact",
                "Resumes recovered exactly",
                &self.recoveries_exact,
            ),
            (
                "fanfare_hub_recoveries_partial",
                "Resumes that ended with a gap",
                &self.recoveries_partial,
            ),
            (
                "fanfare_hub_recovered_ring",
                "Events recovered from the hub ring",
                &self.recovered_from_ring,
            ),
            (
                "fanfare_hub_recovered_replay",
                "Events recovered from broadcaster history",
                &self.recovered_from_replay,
            ),
            (
                "fanfare_hub_gaps_sent",
                "Gap frames sent to browsers",
                &self.gaps_sent,
            ),
            (
                "fanfare_hub_patterns_refused_distinct",
                "Subscribes refused at the distinct-pattern cap",
                &self.patterns_refused_distinct,
            ),
            (
                "fanfare_hub_patterns_refused_wildcard",
                "Subscribes refused at the wildcard-led pattern cap",
                &self.patterns_refused_wildcard,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "fanfare_hub_ring_entries",
            "Events held in the hub ring",
            self.ring_entries.clone(),
        );
        r.register(
            "fanfare_hub_errors",
            "Error frames sent to browsers, by code",
            self.errors.clone(),
        );
        r.register(
            "fanfare_hub_closed",
            "Connections closed by the hub, by cause",
            self.closes.clone(),
        );
        r.register_with_unit(
            "fanfare_hub_delivery_lag",
            "Stamp to hand-over to the websocket writer, per live event frame and connection",
            Unit::Seconds,
            self.delivery_lag.clone(),
        );
    }

    /// Counts an error frame sent.
    pub fn error(&self, code: ErrorCode) {
        self.errors.inc(code.index());
    }

    /// Error frames sent with `code`.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors.get(code.index())
    }

    /// Counts a connection closed by the hub.
    pub fn closed(&self, cause: CloseCause) {
        self.closes.inc(cause as usize);
    }

    /// Connections closed by the hub for `cause`.
    pub fn closes(&self, cause: CloseCause) -> u64 {
        self.closes.get(cause as usize)
    }

    /// Every exported metric in the OpenMetrics text format (ends `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "hub metrics could not be encoded");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_names_dashboards_and_tests_read() {
        let m = HubMetrics::new("w1");
        m.connections_open.inc();
        m.closed(CloseCause::SlowConsumer);
        m.error(ErrorCode::RateLimited);
        m.delivery_lag.observe_us(300);
        let text = m.render();
        for line in [
            "fanfare_hub_connections_open{worker=\"w1\"} 1",
            "fanfare_hub_connections_total{worker=\"w1\"} 0",
            "fanfare_hub_ring_entries{worker=\"w1\"} 0",
            "fanfare_hub_closed_total{worker=\"w1\",cause=\"slow_consumer\"} 1",
            "fanfare_hub_closed_total{worker=\"w1\",cause=\"shutdown\"} 0",
            "fanfare_hub_errors_total{worker=\"w1\",code=\"rate_limited\"} 1",
            "fanfare_hub_delivery_lag_seconds_bucket{worker=\"w1\",le=\"0.00025\"} 0",
            "fanfare_hub_delivery_lag_seconds_bucket{worker=\"w1\",le=\"0.0005\"} 1",
            "fanfare_hub_delivery_lag_seconds_bucket{worker=\"w1\",le=\"+Inf\"} 1",
            "fanfare_hub_delivery_lag_seconds_count{worker=\"w1\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
