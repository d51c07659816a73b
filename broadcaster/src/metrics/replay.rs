//! What the replay endpoint refuses or cuts, and the bytes its replies hold.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{family, register, CountGauge, OneLabel};

/// Why a replay request was answered `busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// No scan worker became free within the wait.
    Workers,
    /// The reply did not fit in the in-flight reply bytes budget.
    Bytes,
}

impl Busy {
    const ALL: [Busy; 2] = [Busy::Workers, Busy::Bytes];

    fn label(self) -> &'static str {
        match self {
            Busy::Workers => "workers",
            Busy::Bytes => "inflight_bytes",
        }
    }
}

/// Replay endpoint limits at work (all `fanfare_replay_*`).
#[derive(Debug)]
pub(crate) struct ReplayMetrics {
    busy: [Counter; 2],
    /// Peers disconnected because a reply write missed its deadline.
    pub(crate) write_timeouts: Counter,
    /// Replies cut by the scan budget (entries, entry × pattern tests, time).
    pub(crate) scan_cut: Counter,
    /// History entries examined by replay scans.
    pub(crate) scanned: Counter,
    /// Requests whose range held nothing to scan (`to < from`, `from` past
    /// the newest, everything evicted).
    pub(crate) empty_ranges: Counter,
    /// Bytes held by replies being written now.
    pub(crate) inflight_bytes: CountGauge,
}

impl ReplayMetrics {
    /// Registers every replay limit metric in `r`.
    pub(crate) fn register(r: &mut Registry) -> Self {
        let busy: Family<OneLabel, Counter> =
            family(r, "replay_busy", "Replay requests answered busy, by reason");
        let write_timeouts = register(
            r,
            "replay_write_timeouts",
            "Replay peers disconnected because a reply write missed its deadline",
        );
        let scan_cut = register(
            r,
            "replay_scan_cut",
            "Replay replies cut by the scan budget (the requester continues from next)",
        );
        let scanned = register(
            r,
            "replay_scanned_entries",
            "History entries examined by replay scans",
        );
        let empty_ranges = register(
            r,
            "replay_empty_ranges",
            "Replay requests whose range held nothing to scan",
        );
        let inflight_bytes = CountGauge::default();
        r.register_with_unit(
            "replay_inflight",
            "Bytes held by replay replies being written",
            Unit::Bytes,
            inflight_bytes.clone(),
        );
        Self {
            busy: Busy::ALL.map(|why| busy.get_or_create_owned(&[("reason", why.label())])),
            write_timeouts,
            scan_cut,
            scanned,
            empty_ranges,
            inflight_bytes,
        }
    }

    /// Counts a `busy` answer.
    pub(crate) fn busy(&self, why: Busy) {
        self.busy[why as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Metrics};
    use super::Busy;

    #[test]
    fn replay_limit_metrics_are_exported() {
        let m = Metrics::new("b1", 1);
        m.replay.busy(Busy::Bytes);
        m.replay.write_timeouts.inc();
        m.replay.inflight_bytes.set(5);
        let text = m.render(Format::Prometheus).unwrap();
        for series in [
            "fanfare_replay_busy_total{reason=\"workers\"} 0",
            "fanfare_replay_busy_total{reason=\"inflight_bytes\"} 1",
            "fanfare_replay_write_timeouts_total 1",
            "fanfare_replay_scan_cut_total 0",
            "fanfare_replay_scanned_entries_total 0",
            "fanfare_replay_empty_ranges_total 0",
            "fanfare_replay_inflight_bytes 5",
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
        }
    }
}
