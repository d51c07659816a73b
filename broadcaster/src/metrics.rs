//! Counters and gauges, rendered as Prometheus text (`/metrics`) and JSON
//! (`/stats`). Plain atomics: updating a counter never blocks or allocates.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use crate::zmtp::SocketKind;

/// Why an ingress message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not 2 or 3 frames.
    FrameCount,
    /// Topic empty, too long, not UTF-8, badly shaped.
    BadTopic,
    /// Topic under `_fanfare.`.
    ReservedTopic,
    /// Payload over `max_payload`.
    OversizePayload,
    /// Malformed metadata frame.
    BadMeta,
}

impl Reject {
    const ALL: [Reject; 5] = [
        Reject::FrameCount,
        Reject::BadTopic,
        Reject::ReservedTopic,
        Reject::OversizePayload,
        Reject::BadMeta,
    ];

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reject::FrameCount => "frame_count",
            Reject::BadTopic => "bad_topic",
            Reject::ReservedTopic => "reserved_topic",
            Reject::OversizePayload => "oversize_payload",
            Reject::BadMeta => "bad_meta",
        }
    }
}

/// Per-socket connection counters.
#[derive(Debug, Default)]
pub struct SocketCounters {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections refused because `max_connections` was reached.
    pub refused: AtomicU64,
    /// Handshakes that failed or timed out.
    pub handshake_failed: AtomicU64,
    /// Peers disconnected for announcing an oversize frame.
    pub oversize_frame: AtomicU64,
    /// Peers disconnected for other protocol errors.
    pub protocol_error: AtomicU64,
}

/// All broadcaster metrics.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Origin id.
    pub id: String,
    /// Current epoch.
    pub epoch: u64,
    /// Messages accepted on ingress.
    pub ingress_messages: AtomicU64,
    /// Payload bytes accepted on ingress.
    pub ingress_bytes: AtomicU64,
    rejected: [AtomicU64; 5],
    /// Last seq stamped.
    pub last_seq: AtomicU64,
    /// Messages queued toward subscribers (one per subscriber per message).
    pub egress_messages: AtomicU64,
    /// Messages a full subscriber queue could not take.
    pub egress_dropped: AtomicU64,
    /// Subscribers connected now.
    pub subscribers: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats: AtomicU64,
    /// Messages in history.
    pub history_messages: AtomicU64,
    /// Bytes in history.
    pub history_bytes: AtomicU64,
    /// Oldest seq in history.
    pub history_oldest: AtomicU64,
    /// Messages evicted from history.
    pub history_evicted: AtomicU64,
    /// Replay requests served.
    pub replay_requests: AtomicU64,
    /// Replay requests refused as malformed.
    pub replay_bad_requests: AtomicU64,
    /// Messages sent in replay replies.
    pub replay_messages: AtomicU64,
    /// Per socket: pull, pub, replay.
    pub sockets: [SocketCounters; 3],
    log_gates: [Mutex<Option<Instant>>; 4],
}

/// What a rate-limited warning is about; each kind has its own gate, so a
/// flood of one kind never hides another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// Ingress messages dropped as invalid.
    Reject,
    /// Peers disconnected for protocol errors, connection limit reached.
    Connection,
    /// Malformed replay requests.
    Replay,
    /// Subscription limits.
    Subscription,
}

impl Metrics {
    /// Fresh metrics for origin `id` at `epoch`.
    pub fn new(id: &str, epoch: u64) -> Self {
        Self {
            started: Instant::now(),
            id: id.to_owned(),
            epoch,
            ingress_messages: AtomicU64::new(0),
            ingress_bytes: AtomicU64::new(0),
            rejected: Default::default(),
            last_seq: AtomicU64::new(0),
            egress_messages: AtomicU64::new(0),
            egress_dropped: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            history_messages: AtomicU64::new(0),
            history_bytes: AtomicU64::new(0),
            history_oldest: AtomicU64::new(0),
            history_evicted: AtomicU64::new(0),
            replay_requests: AtomicU64::new(0),
            replay_bad_requests: AtomicU64::new(0),
            replay_messages: AtomicU64::new(0),
            sockets: Default::default(),
            log_gates: Default::default(),
        }
    }

    /// Counters of one socket.
    pub fn socket(&self, kind: SocketKind) -> &SocketCounters {
        &self.sockets[socket_index(kind)]
    }

    /// Counts a rejected ingress message and logs it, at most once a second.
    pub fn reject(&self, why: Reject, peer: &str) {
        let n = self.rejected[why as usize].fetch_add(1, Relaxed) + 1;
        if self.log_allowed(LogKind::Reject) {
            tracing::warn!(reason = why.label(), %peer, total = n, "ingress message dropped");
        }
    }

    /// Rejections for one reason.
    pub fn rejected(&self, why: Reject) -> u64 {
        self.rejected[why as usize].load(Relaxed)
    }

    /// True at most once per second per kind: gates noisy warnings.
    pub fn log_allowed(&self, kind: LogKind) -> bool {
        let Ok(mut last) = self.log_gates[kind as usize].lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t).as_secs() < 1) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Prometheus text exposition.
    pub fn render_prometheus(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(4096);
        let mut put = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(
                s,
                "# HELP fanfare_{name} {help}\n# TYPE fanfare_{name} {kind}"
            );
            for (labels, v) in samples {
                let _ = writeln!(s, "fanfare_{name}{labels} {v}");
            }
        };
        let g = |a: &AtomicU64| a.load(Relaxed);
        put(
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            &[("", self.started.elapsed().as_secs())],
        );
        put(
            "epoch",
            "gauge",
            "Current epoch (µs since the Unix epoch at start).",
            &[("", self.epoch)],
        );
        put(
            "last_seq",
            "gauge",
            "Last sequence number stamped.",
            &[("", g(&self.last_seq))],
        );
        put(
            "ingress_messages_total",
            "counter",
            "Messages accepted on ingress.",
            &[("", g(&self.ingress_messages))],
        );
        put(
            "ingress_bytes_total",
            "counter",
            "Payload bytes accepted on ingress.",
            &[("", g(&self.ingress_bytes))],
        );
        let labels: Vec<String> = Reject::ALL
            .iter()
            .map(|r| format!("{{reason=\"{}\"}}", r.label()))
            .collect();
        let rej: Vec<(&str, u64)> = Reject::ALL
            .iter()
            .zip(&labels)
            .map(|(r, l)| (l.as_str(), self.rejected(*r)))
            .collect();
        put(
            "ingress_rejected_total",
            "counter",
            "Ingress messages dropped, by reason.",
            &rej,
        );
        put(
            "egress_messages_total",
            "counter",
            "Messages queued to subscribers (per subscriber).",
            &[("", g(&self.egress_messages))],
        );
        put(
            "egress_dropped_total",
            "counter",
            "Messages a full subscriber queue could not take (repairable).",
            &[("", g(&self.egress_dropped))],
        );
        put(
            "subscribers",
            "gauge",
            "Subscribers connected.",
            &[("", g(&self.subscribers))],
        );
        put(
            "heartbeats_total",
            "counter",
            "Heartbeats published.",
            &[("", g(&self.heartbeats))],
        );
        put(
            "history_messages",
            "gauge",
            "Messages held in history.",
            &[("", g(&self.history_messages))],
        );
        put(
            "history_bytes",
            "gauge",
            "Bytes held in history.",
            &[("", g(&self.history_bytes))],
        );
        put(
            "history_evicted_total",
            "counter",
            "Messages evicted from history.",
            &[("", g(&self.history_evicted))],
        );
        put(
            "replay_requests_total",
            "counter",
            "Replay requests served.",
            &[("", g(&self.replay_requests))],
        );
        put(
            "replay_bad_requests_total",
            "counter",
            "Replay requests refused as malformed.",
            &[("", g(&self.replay_bad_requests))],
        );
        put(
            "replay_messages_total",
            "counter",
            "Messages sent in replay replies.",
            &[("", g(&self.replay_messages))],
        );
        let kinds = [SocketKind::Pull, SocketKind::Pub, SocketKind::Router];
        let per_socket = |f: Field| -> Vec<(String, u64)> {
            kinds
                .iter()
                .map(|k| {
                    (
                        format!("{{socket=\"{}\"}}", k.label()),
                        f(self.socket(*k)).load(Relaxed),
                    )
                })
                .collect()
        };
        let series: [(&str, &str, &str, Field); 6] = [
            ("connections", "gauge", "Connections open.", |c| &c.open),
            (
                "connections_accepted_total",
                "counter",
                "Connections accepted.",
                |c| &c.accepted,
            ),
            (
                "connections_refused_total",
                "counter",
                "Connections refused at the connection limit.",
                |c| &c.refused,
            ),
            (
                "handshake_failures_total",
                "counter",
                "ZMTP handshakes failed or timed out.",
                |c| &c.handshake_failed,
            ),
            (
                "oversize_frame_disconnects_total",
                "counter",
                "Peers disconnected for announcing an oversize frame.",
                |c| &c.oversize_frame,
            ),
            (
                "protocol_error_disconnects_total",
                "counter",
                "Peers disconnected for other protocol errors.",
                |c| &c.protocol_error,
            ),
        ];
        for (name, kind, help, f) in series {
            let v = per_socket(f);
            let refs: Vec<(&str, u64)> = v.iter().map(|(l, n)| (l.as_str(), *n)).collect();
            put(name, kind, help, &refs);
        }
        s
    }

    /// `/stats` as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let rejected: serde_json::Map<String, serde_json::Value> = Reject::ALL
            .iter()
            .map(|r| (r.label().to_owned(), self.rejected(*r).into()))
            .collect();
        let sockets: serde_json::Map<String, serde_json::Value> = [SocketKind::Pull, SocketKind::Pub, SocketKind::Router]
            .iter()
            .map(|k| {
                let c = self.socket(*k);
                (
                    k.label().to_owned(),
                    serde_json::json!({
                        "open": g(&c.open), "accepted": g(&c.accepted), "refused": g(&c.refused),
                        "handshake_failed": g(&c.handshake_failed), "oversize_frame": g(&c.oversize_frame),
                        "protocol_error": g(&c.protocol_error),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "epoch": self.epoch,
            "uptime_secs": self.started.elapsed().as_secs(),
            "last_seq": g(&self.last_seq),
            "ingress": { "messages": g(&self.ingress_messages), "bytes": g(&self.ingress_bytes), "rejected": rejected },
            "egress": { "messages": g(&self.egress_messages), "dropped": g(&self.egress_dropped), "subscribers": g(&self.subscribers), "heartbeats": g(&self.heartbeats) },
            "history": { "messages": g(&self.history_messages), "bytes": g(&self.history_bytes), "oldest": g(&self.history_oldest), "evicted": g(&self.history_evicted) },
            "replay": { "requests": g(&self.replay_requests), "bad_requests": g(&self.replay_bad_requests), "messages": g(&self.replay_messages) },
            "sockets": sockets,
        })
    }
}

/// Selects one counter of a socket.
type Field = fn(&SocketCounters) -> &AtomicU64;

fn socket_index(kind: SocketKind) -> usize {
    match kind {
        SocketKind::Pull => 0,
        SocketKind::Pub => 1,
        SocketKind::Router | SocketKind::Push => 2,
    }
}
