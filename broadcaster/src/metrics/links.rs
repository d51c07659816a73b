//! Per-link federation metrics: one member per link of each
//! `fanfare_link_*` family (label `link`, the peer's name or PUB endpoint),
//! created at start so every link is exported from the first scrape, and
//! the origin table `/stats` and `broadcaster topo` show.

use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::CountGauge;

/// The label set of every link metric.
type LinkLabel = [(&'static str, String); 1];

/// Buckets of `fanfare_link_lag_seconds`: 100 µs to 10 s.
const LAG_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Link states, as the `fanfare_link_state` gauge shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum LinkState {
    /// Connecting, or waiting to reconnect.
    Connecting = 0,
    /// Handshake done, reading.
    Up = 1,
    /// Stopped for good (a self-link).
    Stopped = 2,
}

impl LinkState {
    /// For `/stats`.
    pub(crate) fn label(v: u64) -> &'static str {
        match v {
            1 => "up",
            2 => "stopped",
            _ => "connecting",
        }
    }
}

/// One link's counters (handles into the registry).
#[derive(Debug)]
pub(crate) struct LinkMetrics {
    /// The link's label.
    pub(crate) name: String,
    /// The peer's PUB endpoint.
    pub(crate) endpoint: String,
    /// Data messages read from the peer.
    pub(crate) messages_in: Counter,
    /// Payload bytes of those.
    pub(crate) bytes_in: Counter,
    /// Heartbeats read from the peer.
    pub(crate) heartbeats_in: Counter,
    /// Messages refused as malformed (frames, stamp, topic, size).
    pub(crate) invalid: Counter,
    /// Messages of this link published by this broadcaster.
    pub(crate) republished: Counter,
    /// Messages of this link dropped as already published.
    pub(crate) duplicates: Counter,
    /// Messages of this link held for order.
    pub(crate) held: Counter,
    /// Messages published from this link's repair replies.
    pub(crate) repaired: Counter,
    /// Seqs given up as unrecoverable after a repair through this link.
    pub(crate) unrecoverable: Counter,
    /// Repair requests sent to the peer's replay endpoint.
    pub(crate) repairs: Counter,
    /// Seqs the peer filtered out for this link (interest-only forwarding).
    pub(crate) filtered: Counter,
    /// Messages dropped at the hop limit.
    pub(crate) hop_limit_drops: Counter,
    /// Messages of our own origin that came back over this link.
    pub(crate) self_drops: Counter,
    /// Times this link's peer turned out to be this broadcaster.
    pub(crate) self_link: Counter,
    /// Times this link's peer origin was already served by another link.
    pub(crate) duplicate_link: Counter,
    /// Connections made after the first.
    pub(crate) reconnects: Counter,
    /// [`LinkState`] as a number.
    pub(crate) state: CountGauge,
    /// Prefixes this link subscribes to at its peer.
    pub(crate) interest: CountGauge,
    /// Lag of the last data message read (now − stamp time), µs.
    pub(crate) lag_last_us: CountGauge,
    /// Lag, observed once per batch read.
    pub(crate) lag: Histogram,
    /// The peer's origin id, once learned from a hop-0 message.
    pub(crate) peer_origin: Mutex<Option<String>>,
    /// The peer's replay endpoint (configured, or learned from heartbeats).
    pub(crate) replay: Mutex<Option<String>>,
    /// The replay endpoint was configured (heartbeats do not override it).
    pub(crate) replay_configured: bool,
}

/// The families; each link gets its members.
struct Families {
    messages_in: Family<LinkLabel, Counter>,
    bytes_in: Family<LinkLabel, Counter>,
    heartbeats_in: Family<LinkLabel, Counter>,
    invalid: Family<LinkLabel, Counter>,
    republished: Family<LinkLabel, Counter>,
    duplicates: Family<LinkLabel, Counter>,
    held: Family<LinkLabel, Counter>,
    repaired: Family<LinkLabel, Counter>,
    unrecoverable: Family<LinkLabel, Counter>,
    repairs: Family<LinkLabel, Counter>,
    filtered: Family<LinkLabel, Counter>,
    hop_limit_drops: Family<LinkLabel, Counter>,
    self_drops: Family<LinkLabel, Counter>,
    self_link: Family<LinkLabel, Counter>,
    duplicate_link: Family<LinkLabel, Counter>,
    reconnects: Family<LinkLabel, Counter>,
    state: Family<LinkLabel, CountGauge>,
    interest: Family<LinkLabel, CountGauge>,
    lag_last_us: Family<LinkLabel, CountGauge>,
    lag: Family<LinkLabel, Histogram, fn() -> Histogram>,
}

fn fam<M>(r: &mut Registry, name: &str, help: &str) -> Family<LinkLabel, M>
where
    M: prometheus_client::registry::Metric + Clone + Default,
    Family<LinkLabel, M>: prometheus_client::registry::Metric,
{
    let f = Family::<LinkLabel, M>::default();
    r.register(name, help, f.clone());
    f
}

fn lag_histogram() -> Histogram {
    Histogram::new(LAG_BUCKETS)
}

impl Families {
    fn register(r: &mut Registry) -> Self {
        let lag =
            Family::<LinkLabel, Histogram, fn() -> Histogram>::new_with_constructor(lag_histogram);
        r.register_with_unit(
            "link_lag",
            "Per link: now minus the stamp time of messages read from the peer",
            Unit::Seconds,
            lag.clone(),
        );
        Self {
            messages_in: fam(
                r,
                "link_messages",
                "Per link: data messages read from the peer",
            ),
            bytes_in: fam(
                r,
                "link_bytes",
                "Per link: payload bytes read from the peer",
            ),
            heartbeats_in: fam(
                r,
                "link_heartbeats",
                "Per link: heartbeats read from the peer",
            ),
            invalid: fam(r, "link_invalid", "Per link: malformed messages dropped"),
            filtered: fam(r, "link_filtered", "Per link: seqs the peer filtered out"),
            republished: fam(
                r,
                "link_republished",
                "Per link: messages re-published here",
            ),
            duplicates: fam(
                r,
                "link_duplicates",
                "Per link: duplicates cut (already published)",
            ),
            held: fam(
                r,
                "link_held",
                "Per link: messages held for per-origin order",
            ),
            repaired: fam(
                r,
                "link_repaired",
                "Per link: messages published from repair replies",
            ),
            unrecoverable: fam(
                r,
                "link_unrecoverable",
                "Per link: seqs the peer could not supply",
            ),
            repairs: fam(
                r,
                "link_repair_requests",
                "Per link: repair requests to the peer",
            ),
            hop_limit_drops: fam(
                r,
                "link_hop_limit_drops",
                "Per link: dropped at the hop limit",
            ),
            self_drops: fam(
                r,
                "link_self_drops",
                "Per link: our own messages that came back",
            ),
            self_link: fam(
                r,
                "link_self_detected",
                "Per link: the peer was this broadcaster",
            ),
            duplicate_link: fam(
                r,
                "link_duplicate_detected",
                "Per link: peer already linked",
            ),
            reconnects: fam(
                r,
                "link_reconnects",
                "Per link: connections after the first",
            ),
            state: fam(r, "link_state", "Per link: 0 connecting, 1 up, 2 stopped"),
            interest: fam(
                r,
                "link_interest",
                "Per link: prefixes subscribed at the peer",
            ),
            lag_last_us: fam(
                r,
                "link_lag_last_us",
                "Per link: lag of the last message, µs",
            ),
            lag,
        }
    }

    fn member(&self, name: &str, endpoint: &str, replay: Option<String>) -> LinkMetrics {
        let l: LinkLabel = [("link", name.to_owned())];
        LinkMetrics {
            name: name.to_owned(),
            endpoint: endpoint.to_owned(),
            messages_in: self.messages_in.get_or_create_owned(&l),
            bytes_in: self.bytes_in.get_or_create_owned(&l),
            heartbeats_in: self.heartbeats_in.get_or_create_owned(&l),
            invalid: self.invalid.get_or_create_owned(&l),
            republished: self.republished.get_or_create_owned(&l),
            duplicates: self.duplicates.get_or_create_owned(&l),
            held: self.held.get_or_create_owned(&l),
            repaired: self.repaired.get_or_create_owned(&l),
            unrecoverable: self.unrecoverable.get_or_create_owned(&l),
            repairs: self.repairs.get_or_create_owned(&l),
            filtered: self.filtered.get_or_create_owned(&l),
            hop_limit_drops: self.hop_limit_drops.get_or_create_owned(&l),
            self_drops: self.self_drops.get_or_create_owned(&l),
            self_link: self.self_link.get_or_create_owned(&l),
            duplicate_link: self.duplicate_link.get_or_create_owned(&l),
            reconnects: self.reconnects.get_or_create_owned(&l),
            state: self.state.get_or_create_owned(&l),
            interest: self.interest.get_or_create_owned(&l),
            lag_last_us: self.lag_last_us.get_or_create_owned(&l),
            lag: self.lag.get_or_create_owned(&l),
            peer_origin: Mutex::new(None),
            replay_configured: replay.is_some(),
            replay: Mutex::new(replay),
        }
    }
}

/// One origin as the federation relay last saw it (refreshed once a second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginView {
    /// Origin id.
    pub(crate) origin: String,
    /// Its epoch.
    pub(crate) epoch: u64,
    /// Last seq published here.
    pub(crate) seq: u64,
    /// Label of the link that last brought it.
    pub(crate) via: String,
    /// Hops of the last message.
    pub(crate) hops: u8,
    /// Lag of the last message, µs.
    pub(crate) lag_us: u64,
    /// Messages held for order now.
    pub(crate) held: usize,
}

impl LinkMetrics {
    /// `/stats` of this link.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let peer = self.peer_origin.lock().ok().and_then(|p| p.clone());
        let replay = self.replay.lock().ok().and_then(|p| p.clone());
        serde_json::json!({
            "name": self.name, "endpoint": self.endpoint, "peer_origin": peer, "replay": replay,
            "state": LinkState::label(self.state.get()), "reconnects": self.reconnects.get(),
            "messages_in": self.messages_in.get(), "bytes_in": self.bytes_in.get(),
            "heartbeats_in": self.heartbeats_in.get(), "invalid": self.invalid.get(),
            "republished": self.republished.get(), "duplicates": self.duplicates.get(),
            "held": self.held.get(), "repaired": self.repaired.get(),
            "unrecoverable": self.unrecoverable.get(), "repair_requests": self.repairs.get(),
            "filtered": self.filtered.get(),
            "hop_limit_drops": self.hop_limit_drops.get(), "self_drops": self.self_drops.get(),
            "self_link": self.self_link.get(), "duplicate_link": self.duplicate_link.get(),
            "interest": self.interest.get(), "lag_last_us": self.lag_last_us.get(),
        })
    }
}

impl super::Metrics {
    /// Registers one member of every link family per peer (before the
    /// metrics are shared). `peers`: (label, PUB endpoint, configured replay).
    pub(crate) fn add_links(&mut self, peers: &[(String, String, Option<String>)]) {
        let f = Families::register(&mut self.registry);
        self.links = peers
            .iter()
            .map(|(name, ep, replay)| std::sync::Arc::new(f.member(name, ep, replay.clone())))
            .collect();
    }

    /// The origins the relay hears, as last refreshed.
    pub(crate) fn origins_json(&self) -> serde_json::Value {
        let Ok(o) = self.origins.lock() else {
            return serde_json::Value::Null;
        };
        o.iter()
            .map(|v| {
                serde_json::json!({
                    "origin": v.origin, "epoch": v.epoch, "seq": v.seq, "via": v.via,
                    "hops": v.hops, "lag_us": v.lag_us, "held": v.held,
                })
            })
            .collect()
    }
}
