//! Every counter, gauge and histogram of the broadcaster, registered once in
//! a `prometheus-client` registry. Updating one is an atomic add or store:
//! it never blocks or allocates. The histograms take a short lock, so they
//! are observed once per forwarder round or replay reply, never per message.
//!
//! * `exposition` — `/metrics` (Prometheus text or OpenMetrics) and `/stats`
//!   (JSON).
//! * `view` — [`MetricsView`] and [`MetricsSnapshot`], the public face.
//! * `log_gate` — at most one warning per second per [`LogKind`].

mod exposition;
mod links;
mod log_gate;
mod publishers;
mod replay;
mod view;

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub(crate) use exposition::Format;
pub(crate) use links::{LinkMetrics, LinkState, OriginView};
pub(crate) use log_gate::LogKind;
pub(crate) use publishers::PublisherMetrics;
pub(crate) use replay::{Busy, ReplayMetrics};
pub use view::{MetricsSnapshot, MetricsView};

use crate::zmtp::SocketKind;
use log_gate::LogGates;

/// A gauge of a count (never negative).
pub(crate) type CountGauge = Gauge<u64, AtomicU64>;
/// Label sets: one label, `reason` or `socket`.
type OneLabel = [(&'static str, &'static str); 1];

/// Buckets of `fanfare_forwarder_round_messages`: 1, 2, 4, … 32768
/// (a round takes at most 64 batches of 512).
const ROUND_BUCKETS: (f64, f64, u16) = (1.0, 2.0, 16);
/// Buckets of `fanfare_replay_duration_seconds`: 100 µs to 2.5 s.
const REPLAY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Why an ingress message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
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
    fn label(self) -> &'static str {
        match self {
            Reject::FrameCount => "frame_count",
            Reject::BadTopic => "bad_topic",
            Reject::ReservedTopic => "reserved_topic",
            Reject::OversizePayload => "oversize_payload",
            Reject::BadMeta => "bad_meta",
        }
    }
}

/// The sockets with their own counters, in `/stats` order.
const SOCKETS: [SocketKind; 3] = [SocketKind::Pull, SocketKind::Pub, SocketKind::Router];

/// Per-socket connection counters (each a member of a `socket`-labelled family).
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketCounters {
    /// Connections open now.
    pub(crate) open: CountGauge,
    /// Connections accepted since start.
    pub(crate) accepted: Counter,
    /// Connections refused because `max_connections` was reached.
    pub(crate) refused: Counter,
    /// Handshakes that failed or timed out.
    pub(crate) handshake_failed: Counter,
    /// Peers disconnected for announcing an oversize frame.
    pub(crate) oversize_frame: Counter,
    /// Peers disconnected for other protocol errors.
    pub(crate) protocol_error: Counter,
    /// Peers disconnected for not finishing a started frame in time.
    pub(crate) frame_deadline: Counter,
    /// Peers disconnected for sending nothing for the idle timeout.
    pub(crate) idle: Counter,
    /// Subscribers disconnected because their socket took no bytes in time.
    pub(crate) write_stall: Counter,
    /// Idle peers evicted at the cap to make room for a new one.
    pub(crate) evicted: Counter,
    /// The connection cap in force (after fitting under RLIMIT_NOFILE).
    pub(crate) limit: CountGauge,
}

/// All broadcaster metrics. The fields are handles into `registry`.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    started: Instant,
    /// Origin id.
    pub(crate) id: String,
    /// Current epoch.
    pub(crate) epoch: u64,
    /// Set from `started` when rendered.
    uptime: CountGauge,
    /// Last seq stamped.
    pub(crate) last_seq: CountGauge,
    /// Messages accepted on ingress.
    pub(crate) ingress_messages: Counter,
    /// Payload bytes accepted on ingress.
    pub(crate) ingress_bytes: Counter,
    rejected: [Counter; 5],
    /// Messages queued toward subscribers (one per subscriber per message).
    pub(crate) egress_messages: Counter,
    /// ZMTP bytes of those messages (one per subscriber per message).
    pub(crate) egress_bytes: Counter,
    /// Messages a full subscriber queue could not take.
    pub(crate) egress_dropped: Counter,
    pub(crate) session_markers: Counter,
    /// Subscribers connected now.
    pub(crate) subscribers: CountGauge,
    /// Heartbeats sent.
    pub(crate) heartbeats: Counter,
    /// Messages per forwarder round.
    pub(crate) round_messages: Histogram,
    /// Messages in history.
    pub(crate) history_messages: CountGauge,
    /// Bytes in history.
    pub(crate) history_bytes: CountGauge,
    /// Oldest seq in history (`/stats` only).
    pub(crate) history_oldest: CountGauge,
    /// Messages evicted from history.
    pub(crate) history_evicted: Counter,
    /// Replay requests served.
    pub(crate) replay_requests: Counter,
    /// Replay requests refused as malformed.
    pub(crate) replay_bad_requests: Counter,
    /// Messages sent in replay replies.
    pub(crate) replay_messages: Counter,
    /// Request read → reply written, seconds.
    pub(crate) replay_duration: Histogram,
    /// Replay limits at work: busy answers, write timeouts, scan cuts.
    pub(crate) replay: ReplayMetrics,
    /// Subscriptions ignored at a subscriber's prefix cap.
    pub(crate) subscriptions_refused: Counter,
    /// Publisher-seq dedup and acks.
    pub(crate) publishers: PublisherMetrics,
    sockets: [SocketCounters; 3],
    log_gates: LogGates,
    /// One per federation link, in configuration order.
    pub(crate) links: Vec<std::sync::Arc<LinkMetrics>>,
    /// The origins heard over links (refreshed by the relay once a second).
    pub(crate) origins: std::sync::Mutex<Vec<OriginView>>,
}

impl Metrics {
    /// Fresh metrics for origin `id` at `epoch`, registered under `fanfare_`.
    pub(crate) fn new(id: &str, epoch: u64) -> Self {
        let mut r = Registry::with_prefix("fanfare");
        let uptime = CountGauge::default();
        r.register_with_unit(
            "uptime",
            "Seconds since start",
            Unit::Seconds,
            uptime.clone(),
        );
        let epoch_gauge = CountGauge::default();
        epoch_gauge.set(epoch);
        r.register(
            "epoch",
            "Current epoch (µs since the Unix epoch at start)",
            epoch_gauge,
        );
        let last_seq = register(&mut r, "last_seq", "Last sequence number stamped");
        let ingress_messages = register(&mut r, "ingress_messages", "Messages accepted on ingress");
        let ingress_bytes = register(&mut r, "ingress_bytes", "Payload bytes accepted on ingress");
        let rejected = family(
            &mut r,
            "ingress_rejected",
            "Ingress messages dropped, by reason",
        );
        let egress_messages = register(
            &mut r,
            "egress_messages",
            "Messages queued to subscribers (per subscriber)",
        );
        let egress_bytes = register(
            &mut r,
            "egress_bytes",
            "ZMTP bytes of the messages queued to subscribers (per subscriber)",
        );
        let egress_dropped = register(
            &mut r,
            "egress_dropped",
            "Messages a full subscriber queue could not take (repairable)",
        );
        let session_markers = register(
            &mut r,
            "egress_session_markers",
            "Session markers queued to subscribers that asked for sessions",
        );
        let subscribers = register(&mut r, "subscribers", "Subscribers connected");
        let heartbeats = register(&mut r, "heartbeats", "Heartbeats published");
        let (start, factor, count) = ROUND_BUCKETS;
        let round_messages = Histogram::new(exponential_buckets(start, factor, count));
        r.register(
            "forwarder_round_messages",
            "Messages stamped per forwarder round (one encode buffer, one history lock)",
            round_messages.clone(),
        );
        let history_messages = register(&mut r, "history_messages", "Messages held in history");
        let history_bytes = register(&mut r, "history_bytes", "Bytes held in history");
        let history_evicted = register(&mut r, "history_evicted", "Messages evicted from history");
        let replay_requests = register(&mut r, "replay_requests", "Replay requests served");
        let replay_bad_requests = register(
            &mut r,
            "replay_bad_requests",
            "Replay requests refused as malformed",
        );
        let replay_messages =
            register(&mut r, "replay_messages", "Messages sent in replay replies");
        let replay_duration = Histogram::new(REPLAY_BUCKETS);
        r.register_with_unit(
            "replay_duration",
            "Time from reading a replay request to having written its reply",
            Unit::Seconds,
            replay_duration.clone(),
        );
        let replay = ReplayMetrics::register(&mut r);
        let subscriptions_refused = register(
            &mut r,
            "subscriptions_refused",
            "SUBSCRIBEs ignored at a subscriber's prefix cap (count or bytes)",
        );
        let publishers = PublisherMetrics::register(&mut r);
        let sockets = socket_counters(&mut r);
        let rejected =
            Reject::ALL.map(|why| rejected.get_or_create_owned(&[("reason", why.label())]));
        Self {
            registry: r,
            started: Instant::now(),
            id: id.to_owned(),
            epoch,
            uptime,
            last_seq,
            ingress_messages,
            ingress_bytes,
            rejected,
            egress_messages,
            egress_bytes,
            egress_dropped,
            session_markers,
            subscribers,
            heartbeats,
            round_messages,
            history_messages,
            history_bytes,
            history_oldest: CountGauge::default(),
            history_evicted,
            replay_requests,
            replay_bad_requests,
            replay_messages,
            replay_duration,
            replay,
            subscriptions_refused,
            publishers,
            sockets,
            log_gates: LogGates::default(),
            links: Vec::new(),
            origins: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Counters of one socket.
    pub(crate) fn socket(&self, kind: SocketKind) -> &SocketCounters {
        &self.sockets[socket_index(kind)]
    }

    /// Counts a rejected ingress message and logs it, at most once a second.
    pub(crate) fn reject(&self, why: Reject, peer: &str) {
        let n = self.rejected[why as usize].inc() + 1;
        if self.log_allowed(LogKind::Reject) {
            tracing::warn!(reason = why.label(), %peer, total = n, "ingress message dropped");
        }
    }

    /// Rejections for one reason.
    fn rejected(&self, why: Reject) -> u64 {
        self.rejected[why as usize].get()
    }

    /// True at most once per second per kind: gates noisy warnings.
    pub(crate) fn log_allowed(&self, kind: LogKind) -> bool {
        self.log_gates.allowed(kind)
    }
}

/// Registers a counter or gauge without labels and returns its handle.
fn register<M>(r: &mut Registry, name: &str, help: &str) -> M
where
    M: prometheus_client::registry::Metric + Clone + Default,
{
    let m = M::default();
    r.register(name, help, m.clone());
    m
}

/// Registers a family with one label and returns it (its members are
/// created up front, so every label value is exported from the start).
fn family<M>(r: &mut Registry, name: &str, help: &str) -> Family<OneLabel, M>
where
    M: prometheus_client::registry::Metric + Clone + Default,
    Family<OneLabel, M>: prometheus_client::registry::Metric,
{
    let f = Family::<OneLabel, M>::default();
    r.register(name, help, f.clone());
    f
}

/// The per-socket families, and each socket's members of them.
fn socket_counters(r: &mut Registry) -> [SocketCounters; 3] {
    let open: Family<OneLabel, CountGauge> = family(r, "connections", "Connections open");
    let accepted: Family<OneLabel, Counter> =
        family(r, "connections_accepted", "Connections accepted");
    let refused: Family<OneLabel, Counter> = family(
        r,
        "connections_refused",
        "Connections refused at the connection limit",
    );
    let handshake: Family<OneLabel, Counter> = family(
        r,
        "handshake_failures",
        "ZMTP handshakes failed or timed out",
    );
    let oversize: Family<OneLabel, Counter> = family(
        r,
        "oversize_frame_disconnects",
        "Peers disconnected for announcing an oversize frame",
    );
    let protocol: Family<OneLabel, Counter> = family(
        r,
        "protocol_error_disconnects",
        "Peers disconnected for other protocol errors",
    );
    let deadline: Family<OneLabel, Counter> = family(
        r,
        "frame_deadline_disconnects",
        "Peers disconnected for not completing a started frame in time",
    );
    let idle: Family<OneLabel, Counter> = family(
        r,
        "idle_disconnects",
        "Peers disconnected for sending nothing for the idle timeout",
    );
    let stall: Family<OneLabel, Counter> = family(
        r,
        "write_stall_disconnects",
        "Subscribers disconnected because their socket took no bytes in time",
    );
    let evicted: Family<OneLabel, Counter> = family(
        r,
        "connections_evicted",
        "Idle peers evicted at the connection cap for a new one",
    );
    let limit: Family<OneLabel, CountGauge> = family(
        r,
        "connection_limit",
        "Connection cap in force (fitted under the open-file limit)",
    );
    SOCKETS.map(|kind| {
        let l = [("socket", kind.label())];
        SocketCounters {
            open: open.get_or_create_owned(&l),
            accepted: accepted.get_or_create_owned(&l),
            refused: refused.get_or_create_owned(&l),
            handshake_failed: handshake.get_or_create_owned(&l),
            oversize_frame: oversize.get_or_create_owned(&l),
            protocol_error: protocol.get_or_create_owned(&l),
            frame_deadline: deadline.get_or_create_owned(&l),
            idle: idle.get_or_create_owned(&l),
            write_stall: stall.get_or_create_owned(&l),
            evicted: evicted.get_or_create_owned(&l),
            limit: limit.get_or_create_owned(&l),
        }
    })
}

fn socket_index(kind: SocketKind) -> usize {
    match kind {
        SocketKind::Pull => 0,
        SocketKind::Pub => 1,
        SocketKind::Router | SocketKind::Push | SocketKind::Sub | SocketKind::Dealer => 2,
    }
}
