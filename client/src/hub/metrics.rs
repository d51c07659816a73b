//! The hub's counters, rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::protocol::ErrorCode;

/// Why the hub closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Its outgoing queue was full (close code 4008).
    SlowConsumer,
    /// Nothing heard within the keepalive timeout (close code 4002).
    Idle,
    /// Too many bad frames (close code 1008).
    Abuse,
    /// A frame over the hard websocket limit (close code 1009).
    TooLarge,
    /// The hub is shutting down (close code 1001).
    Shutdown,
    /// The token sent in `auth` was refused (close code 4003).
    Unauthorized,
}

impl CloseCause {
    /// Every cause, for metrics.
    pub const ALL: [CloseCause; 6] = [
        CloseCause::SlowConsumer,
        CloseCause::Idle,
        CloseCause::Abuse,
        CloseCause::TooLarge,
        CloseCause::Shutdown,
        CloseCause::Unauthorized,
    ];

    /// Websocket close code and reason.
    pub fn close_frame(self) -> (u16, &'static str) {
        match self {
            CloseCause::SlowConsumer => (4008, "slow consumer"),
            CloseCause::Idle => (4002, "keepalive timeout"),
            CloseCause::Abuse => (1008, "too many bad frames"),
            CloseCause::TooLarge => (1009, "frame too large"),
            CloseCause::Shutdown => (1001, "server shutting down"),
            CloseCause::Unauthorized => (4003, "unauthorized"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::Idle => "keepalive_timeout",
            CloseCause::Abuse => "abuse",
            CloseCause::TooLarge => "too_large",
            CloseCause::Shutdown => "shutdown",
            CloseCause::Unauthorized => "unauthorized",
        }
    }
}

/// Counters of one hub. All are monotonic except the gauges noted.
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Open websocket connections (gauge).
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Upgrades refused for a bad `Origin`.
    pub refused_origin: AtomicU64,
    /// Upgrades refused by the authorizer.
    pub refused_auth: AtomicU64,
    /// Upgrades refused because the hub was full.
    pub refused_full: AtomicU64,
    /// Messages received from the fabric.
    pub events_in: AtomicU64,
    /// Event frames queued toward browsers (live and recovered).
    pub deliveries: AtomicU64,
    /// Frames written to browsers (all kinds).
    pub frames_out: AtomicU64,
    /// Publishes accepted from browsers.
    pub publishes: AtomicU64,
    /// Subscribe requests with `since` fully recovered.
    pub recoveries_exact: AtomicU64,
    /// Subscribe requests with `since` that ended with a gap.
    pub recoveries_partial: AtomicU64,
    /// Events sent from the hub's ring during recovery.
    pub recovered_from_ring: AtomicU64,
    /// Events sent from the broadcaster's history during recovery.
    pub recovered_from_replay: AtomicU64,
    /// `gap` frames sent.
    pub gaps_sent: AtomicU64,
    /// Events in the hub's ring (gauge).
    pub ring_entries: AtomicU64,
    /// Stamp-to-dispatch delay of the last event, µs (gauge).
    pub lag_us: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    closes: [AtomicU64; CloseCause::ALL.len()],
}

impl HubMetrics {
    /// Counts an error frame sent.
    pub fn error(&self, code: ErrorCode) {
        self.errors[code.index()].fetch_add(1, Relaxed);
    }

    /// Error frames sent with `code`.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors[code.index()].load(Relaxed)
    }

    /// Counts a connection closed by the hub.
    pub fn closed(&self, cause: CloseCause) {
        self.closes[cause as usize].fetch_add(1, Relaxed);
    }

    /// Connections closed by the hub for `cause`.
    pub fn closes(&self, cause: CloseCause) -> u64 {
        self.closes[cause as usize].load(Relaxed)
    }

    /// Prometheus text exposition of every counter, labelled `worker`.
    pub fn render(&self, worker: &str) -> String {
        let mut out = String::with_capacity(4096);
        let w = worker.replace(['\\', '"', '\n'], "_");
        let mut one = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{worker=\"{w}\"}} {}", v.load(Relaxed));
        };
        one(
            "fanfare_hub_connections_open",
            "gauge",
            "Open websocket connections.",
            &self.connections_open,
        );
        one(
            "fanfare_hub_connections_total",
            "counter",
            "Websocket connections accepted.",
            &self.connections_total,
        );
        one(
            "fanfare_hub_refused_origin_total",
            "counter",
            "Upgrades refused for their Origin.",
            &self.refused_origin,
        );
        one(
            "fanfare_hub_refused_auth_total",
            "counter",
            "Upgrades refused by the authorizer.",
            &self.refused_auth,
        );
        one(
            "fanfare_hub_refused_full_total",
            "counter",
            "Upgrades refused at the connection limit.",
            &self.refused_full,
        );
        one(
            "fanfare_hub_events_in_total",
            "counter",
            "Messages received from the fabric.",
            &self.events_in,
        );
        one(
            "fanfare_hub_deliveries_total",
            "counter",
            "Event frames queued toward browsers.",
            &self.deliveries,
        );
        one(
            "fanfare_hub_frames_out_total",
            "counter",
            "Frames written to browsers.",
            &self.frames_out,
        );
        one(
            "fanfare_hub_publishes_total",
            "counter",
            "Publishes accepted from browsers.",
            &self.publishes,
        );
        one(
            "fanfare_hub_recoveries_exact_total",
            "counter",
            "Resumes recovered exactly.",
            &self.recoveries_exact,
        );
        one(
            "fanfare_hub_recoveries_partial_total",
            "counter",
            "Resumes that ended with a gap.",
            &self.recoveries_partial,
        );
        one(
            "fanfare_hub_recovered_ring_total",
            "counter",
            "Events recovered from the hub ring.",
            &self.recovered_from_ring,
        );
        one(
            "fanfare_hub_recovered_replay_total",
            "counter",
            "Events recovered from broadcaster history.",
            &self.recovered_from_replay,
        );
        one(
            "fanfare_hub_gaps_sent_total",
            "counter",
            "Gap frames sent to browsers.",
            &self.gaps_sent,
        );
        one(
            "fanfare_hub_ring_entries",
            "gauge",
            "Events held in the hub ring.",
            &self.ring_entries,
        );
        let _ = writeln!(out, "# HELP fanfare_hub_errors_total Error frames sent to browsers, by code.\n# TYPE fanfare_hub_errors_total counter");
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "fanfare_hub_errors_total{{worker=\"{w}\",code=\"{}\"}} {}",
                code.as_str(),
                self.errors(code)
            );
        }
        let _ = writeln!(out, "# HELP fanfare_hub_closed_total Connections closed by the hub, by cause.\n# TYPE fanfare_hub_closed_total counter");
        for cause in CloseCause::ALL {
            let _ = writeln!(
                out,
                "fanfare_hub_closed_total{{worker=\"{w}\",cause=\"{}\"}} {}",
                cause.label(),
                self.closes(cause)
            );
        }
        out
    }
}
