//! What the admin server serves: `/metrics` as Prometheus text (0.0.4, the
//! default) or OpenMetrics (when the scraper asks for it), and `/stats` as JSON.

use prometheus_client::encoding::{prometheus_text, text};

use super::{Metrics, Reject, SOCKETS};

/// A text exposition format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text: `# UNIT` lines, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics if the `Accept` header names it, else Prometheus text.
    pub(crate) fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    /// Every metric in `format`.
    pub(crate) fn render(&self, format: Format) -> Result<String, std::fmt::Error> {
        self.uptime.set(self.started.elapsed().as_secs());
        let mut s = String::with_capacity(8192);
        match format {
            Format::Prometheus => prometheus_text::encode(&mut s, &self.registry)?,
            Format::OpenMetrics => text::encode(&mut s, &self.registry)?,
        }
        Ok(s)
    }

    /// `/stats` as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let m = self.snapshot();
        let rejected: serde_json::Map<String, serde_json::Value> = Reject::ALL
            .iter()
            .map(|r| (r.label().to_owned(), self.rejected(*r).into()))
            .collect();
        let sockets: serde_json::Map<String, serde_json::Value> = SOCKETS
            .iter()
            .map(|k| {
                let c = self.socket(*k);
                (
                    k.label().to_owned(),
                    serde_json::json!({
                        "open": c.open.get(), "accepted": c.accepted.get(), "refused": c.refused.get(),
                        "handshake_failed": c.handshake_failed.get(), "oversize_frame": c.oversize_frame.get(),
                        "protocol_error": c.protocol_error.get(),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "epoch": self.epoch,
            "uptime_secs": m.uptime_secs,
            "last_seq": m.last_seq,
            "ingress": { "messages": m.ingress_messages, "bytes": m.ingress_bytes, "rejected": rejected },
            "egress": { "messages": m.egress_messages, "dropped": m.egress_dropped, "subscribers": m.subscribers, "heartbeats": m.heartbeats },
            "history": { "messages": m.history_messages, "bytes": m.history_bytes, "oldest": m.history_oldest, "evicted": m.history_evicted },
            "replay": { "requests": m.replay_requests, "bad_requests": m.replay_bad_requests, "messages": m.replay_messages },
            "sockets": sockets,
            "links": self.links.iter().map(|l| l.to_json()).collect::<Vec<_>>(),
            "origins": self.origins_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LogKind, Metrics, Reject};
    use super::*;
    use crate::zmtp::SocketKind;

    /// Every name the integration tests, benches and dashboards read, as they
    /// appeared before the registry: the exposition must keep them.
    const NAMES: [&str; 23] = [
        "fanfare_uptime_seconds",
        "fanfare_epoch",
        "fanfare_last_seq",
        "fanfare_ingress_messages_total",
        "fanfare_ingress_bytes_total",
        "fanfare_ingress_rejected_total{reason=\"bad_topic\"}",
        "fanfare_egress_messages_total",
        "fanfare_egress_bytes_total",
        "fanfare_egress_dropped_total",
        "fanfare_subscribers",
        "fanfare_heartbeats_total",
        "fanfare_history_messages",
        "fanfare_history_bytes",
        "fanfare_history_evicted_total",
        "fanfare_replay_requests_total",
        "fanfare_replay_bad_requests_total",
        "fanfare_replay_messages_total",
        "fanfare_connections{socket=\"replay\"}",
        "fanfare_connections_accepted_total{socket=\"pull\"}",
        "fanfare_connections_refused_total{socket=\"pub\"}",
        "fanfare_handshake_failures_total{socket=\"pull\"}",
        "fanfare_oversize_frame_disconnects_total{socket=\"pull\"}",
        "fanfare_protocol_error_disconnects_total{socket=\"replay\"}",
    ];

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn both_formats_keep_the_names_and_values() {
        let m = Metrics::new("b1", 1_764_000_000_000_000);
        m.ingress_messages.inc_by(7);
        m.reject(Reject::BadTopic, "peer");
        m.socket(SocketKind::Pull).oversize_frame.inc();
        m.round_messages.observe(3.0);
        m.replay_duration.observe(0.002);
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let text = m.render(format).unwrap();
            for name in NAMES {
                assert!(
                    sample(&text, name).is_some(),
                    "{format:?} lacks {name}:\n{text}"
                );
            }
            assert_eq!(sample(&text, "fanfare_epoch"), Some(1.764e15));
            assert_eq!(sample(&text, "fanfare_ingress_messages_total"), Some(7.0));
            let oversize = "fanfare_oversize_frame_disconnects_total{socket=\"pull\"}";
            assert_eq!(sample(&text, oversize), Some(1.0));
            let rejected = "fanfare_ingress_rejected_total{reason=\"bad_topic\"}";
            assert_eq!(sample(&text, rejected), Some(1.0));
            // Prometheus text writes bounds as Go does (`4`), OpenMetrics as floats (`4.0`).
            let four = if format == Format::Prometheus {
                "4"
            } else {
                "4.0"
            };
            let round = format!("fanfare_forwarder_round_messages_bucket{{le=\"{four}\"}}");
            assert_eq!(sample(&text, &round), Some(1.0));
            assert_eq!(
                sample(&text, "fanfare_forwarder_round_messages_count"),
                Some(1.0)
            );
            let replay = "fanfare_replay_duration_seconds_bucket{le=\"0.0025\"}";
            assert_eq!(sample(&text, replay), Some(1.0));
            assert!(
                text.contains("# TYPE fanfare_ingress_messages_total counter")
                    || text.contains("# TYPE fanfare_ingress_messages counter")
            );
        }
        let open = m.render(Format::OpenMetrics).unwrap();
        assert!(open.ends_with("# EOF\n"), "{open}");
        let prom = m.render(Format::Prometheus).unwrap();
        assert!(!prom.contains("# EOF"));
        assert!(prom.contains("# HELP fanfare_subscribers Subscribers connected.\n"));
        assert!(m.log_allowed(LogKind::Replay));
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        let prometheus_server =
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2";
        assert_eq!(
            Format::from_accept(Some(prometheus_server)),
            Format::OpenMetrics
        );
    }

    #[test]
    fn stats_json_shape() {
        let m = Metrics::new("b1", 5);
        m.reject(Reject::FrameCount, "p");
        let v = m.to_json();
        assert_eq!(v["id"], "b1");
        assert_eq!(v["epoch"], 5);
        assert_eq!(v["ingress"]["rejected"]["frame_count"], 1);
        for k in ["pull", "pub", "replay"] {
            assert_eq!(v["sockets"][k]["open"], 0, "{v}");
        }
        for k in ["egress", "history", "replay"] {
            assert!(v[k].is_object(), "{v}");
        }
    }
}
