//! Federation: links to peer broadcasters, and what the forwarder does with
//! what they bring.
//!
//! A *link* (`link.rs`) is one direction: it connects out to a peer's PUB as
//! a ZMTP SUB through our own `zmtp/` code (same frame limit, frame
//! deadline, idle bound and counters as an exposed socket), validates every
//! message and hands batches to the forwarder over one bounded channel
//! (full: the link stops reading, TCP pushes back on that one peer). Its
//! repair task (`repair.rs`) is a ZMTP DEALER client of the peer's replay
//! endpoint. The forwarder's [`Relay`] (`relay.rs`) keeps one
//! [`window::Window`] per origin — exactly once, in seq order — stores
//! what it publishes in history under the message's own origin and fans it
//! out with the original stamp, only `hops` + 1. `interest.rs` decides what
//! each link subscribes to (interest-only forwarding).
//!
//! The seam for another backbone (e.g. NATS): a backbone is anything that
//! sends [`FromLink`] values (stamped messages, repair results) into the
//! forwarder's federation channel and serves [`RepairRequest`]s. The relay
//! knows nothing of ZMTP; see ARCHITECTURE.md.

mod interest;
mod link;
mod relay;
mod repair;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use interest::{Interest, INTEREST_PREFIX};
pub(crate) use relay::{Relay, Sinks};

use crate::config::PeerConfig;
use crate::metrics::{LinkMetrics, Metrics};
use crate::zmtp::Timeouts;

/// Batches queued from links (and repairs) to the forwarder, each up to
/// 512 messages. Full: the link (or repair) waits; TCP pushes back on that
/// peer; nothing accepted is dropped.
pub(crate) const FEDERATION_QUEUE: usize = 64;
/// Repair requests queued per link. Full: the relay asks again next tick.
const REPAIR_QUEUE: usize = 16;

/// One validated message read from a link: frames as they came
/// (zero-copy slices of the link's read buffer).
#[derive(Debug, Clone)]
pub(crate) struct Linked {
    /// Topic frame.
    pub(crate) topic: Bytes,
    /// Stamp frame, as the peer sent it.
    pub(crate) stamp: Bytes,
    /// Payload frame.
    pub(crate) payload: Bytes,
}

/// What links and repairs hand to the forwarder.
#[derive(Debug)]
pub(crate) enum FromLink {
    /// Messages read from link `link` (live, or a repair reply).
    Messages {
        /// Link index.
        link: usize,
        /// The link's connection (1, 2, … per reconnect; 0 for repairs):
        /// within one, the peer sends every matching message in seq order,
        /// so a seq jump is filtering, not loss.
        session: u64,
        /// The messages, in the order the peer sent them.
        msgs: Vec<Linked>,
        /// From a repair reply.
        repaired: bool,
    },
    /// The peer of `link` no longer holds seqs up to `to` of
    /// `(origin, epoch)`: they are unrecoverable there.
    Unrecoverable {
        /// Link index.
        link: usize,
        /// Origin id.
        origin: String,
        /// Its epoch.
        epoch: u64,
        /// Last seq given up.
        to: u64,
        /// Answered by the origin's own replay endpoint (see [`RepairRequest::direct`]).
        direct: bool,
    },
    /// A repair of `(origin, epoch)` through `link` ended.
    RepairDone {
        /// Link index.
        link: usize,
        /// Origin id.
        origin: String,
        /// Its epoch.
        epoch: u64,
        /// It was a direct repair.
        direct: bool,
    },
}

/// A range of one origin to fetch from a link's peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepairRequest {
    /// Origin id.
    pub(crate) origin: String,
    /// Its epoch.
    pub(crate) epoch: u64,
    /// First seq.
    pub(crate) from: u64,
    /// Last seq (inclusive).
    pub(crate) to: u64,
    /// Ask this replay endpoint (the origin's own, learned from its
    /// heartbeats) instead of the link's peer: the fallback when the peer
    /// no longer holds the range.
    pub(crate) direct: Option<String>,
}

/// What every link of this broadcaster shares.
pub(crate) struct Shared {
    /// This broadcaster's origin id.
    pub(crate) own_id: String,
    /// Largest payload accepted by default.
    pub(crate) max_payload: usize,
    /// Frame deadline (idle is the peer stall bound).
    pub(crate) timeouts: Timeouts,
    /// A link silent this long reconnects.
    pub(crate) stall: Duration,
    /// All metrics (links are `metrics.links[i]`).
    pub(crate) metrics: Arc<Metrics>,
    /// Peer origin → the first link that reached it (duplicate detection).
    pub(crate) peers: Mutex<HashMap<String, usize>>,
    /// Stops everything.
    pub(crate) shutdown: CancellationToken,
    /// What links subscribe to and announce (from the relay's interest table).
    pub(crate) plan: tokio::sync::watch::Receiver<interest::Plan>,
}

impl Shared {
    /// Link `i`'s metrics.
    fn link(&self, i: usize) -> &LinkMetrics {
        &self.metrics.links[i]
    }
}

/// Starts one link task and one repair task per configured peer. Returns
/// the repair request senders, by link index, for the relay.
pub(crate) fn start(
    peers: &[PeerConfig],
    shared: Arc<Shared>,
    tx: &mpsc::Sender<FromLink>,
    tracker: &TaskTracker,
) -> Vec<mpsc::Sender<RepairRequest>> {
    peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (rtx, rrx) = mpsc::channel(REPAIR_QUEUE);
            tracker.spawn(link::run(shared.clone(), i, p.clone(), tx.clone()));
            tracker.spawn(repair::run(shared.clone(), i, rrx, tx.clone()));
            rtx
        })
        .collect()
}

/// The next item of the federation channel; never ready without one.
pub(crate) async fn recv(rx: &mut Option<mpsc::Receiver<FromLink>>) -> Option<FromLink> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
