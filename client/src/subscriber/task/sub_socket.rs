//! The SUB sockets' life, one per broadcaster: connecting each (in a
//! connect task, so the loop keeps serving commands), reconnecting with
//! backoff, and keeping their prefixes in step with the registry.
//!
//! A connection (`zmtp_sub`) that ends, fails or stays silent for
//! `heartbeat_timeout` (see `task`) is dropped and a new one is connected
//! here, with backoff. Each new socket subscribes every
//! prefix in use (plus heartbeats) before it connects. Every socket feeds
//! the same tracker and registry, so a message heard through two
//! broadcasters (federation keeps its stamp) is delivered once.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use fanfare_protocol::{HEARTBEAT_PREFIX, SESSION_TOPIC};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::State;
use crate::backoff::Backoff;
use crate::events::ClientEvent;
use crate::subscriber::zmtp_sub::{Broadcast, SubConn, SubError};

/// A connect task in progress: it hands the connected socket back.
pub(super) type Connecting = JoinHandle<Result<SubConn, SubError>>;

/// What the task knows of one broadcaster's SUB (the socket itself and
/// its connect task live in `State::sockets` / `State::connecting`, so the
/// loop can poll them side by side).
pub(crate) struct Slot {
    pub(super) endpoint: String,
    /// Prefixes subscribed on the current (or connecting) socket.
    pub(super) applied: HashSet<String>,
    pub(super) retry_at: Option<Instant>,
    pub(super) last_traffic: Instant,
    /// True while this broadcaster is heard (heartbeats or messages).
    pub(super) heard: bool,
    pub(super) backoff: Backoff,
    /// The current connection's session, once a marker that follows its
    /// latest subscription change came.
    pub(super) session: Option<Session>,
    /// The latest session, kept across a miss, a reconnect and a
    /// subscription change: a marker after a miss (or on a new connection)
    /// sweeps from `complete_to` and keeps its start.
    pub(super) last_session: Option<Session>,
    /// The highest seq of `last_session`'s origin heard while in it (a
    /// message, or a heartbeat's seq).
    pub(super) complete_to: u64,
    /// No marker came yet on the current connection.
    pub(super) fresh: bool,
}

/// From a session marker on, this connection brings every message of
/// `origin` (the broadcaster's own) after `seq` that its prefixes match,
/// in seq order: a lane that had everything up to `seq` and then jumps
/// was filtered, not lost (PROTOCOL.md, "Sessions"). Only the
/// broadcaster's own origin: others come through federation.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(super) origin: std::sync::Arc<str>,
    pub(super) epoch: u64,
    pub(super) seq: u64,
}

impl Session {
    /// The seq from which the connection is complete for `origin`, if it is.
    pub(super) fn floor(&self, origin: &str, epoch: u64) -> Option<u64> {
        (*self.origin == *origin && self.epoch == epoch).then_some(self.seq)
    }
}

impl Slot {
    pub(super) fn new(endpoint: String, backoff: Backoff) -> Self {
        Self {
            endpoint,
            applied: HashSet::new(),
            retry_at: None,
            last_traffic: Instant::now(),
            heard: false,
            backoff,
            session: None,
            last_session: None,
            complete_to: 0,
            fresh: false,
        }
    }
}

impl State {
    pub(super) fn start_connect(&mut self, i: usize) {
        let mut prefixes: HashSet<String> = self.registry.prefixes().map(str::to_owned).collect();
        prefixes.insert(HEARTBEAT_PREFIX.to_owned());
        // The connection subscribes sessions first, itself; a pattern with
        // that very prefix must never cancel it.
        prefixes.remove(SESSION_TOPIC);
        let slot = &mut self.slots[i];
        slot.applied = prefixes.clone();
        slot.applied.insert(SESSION_TOPIC.to_owned());
        let endpoint = slot.endpoint.clone();
        let timeout = self.task.connect_timeout;
        self.connecting[i] = Some(tokio::spawn(async move {
            SubConn::connect(&endpoint, prefixes, timeout).await
        }));
    }

    pub(super) fn on_connected(
        &mut self,
        i: usize,
        r: Result<Result<SubConn, SubError>, tokio::task::JoinError>,
    ) {
        self.connecting[i] = None;
        match r {
            Ok(Ok(s)) => {
                tracing::debug!(endpoint = %self.slots[i].endpoint, "sub socket connected");
                self.sockets[i] = Some(s);
                self.slots[i].last_traffic = Instant::now();
                self.slots[i].session = None;
                self.slots[i].fresh = true;
                // Subscriptions made while connecting are synced next.
                self.registry.mark_dirty();
            }
            Ok(Err(e)) => self.retry_later(i, &e.to_string()),
            Err(e) => self.retry_later(i, &e.to_string()),
        }
    }

    pub(super) fn retry_later(&mut self, i: usize, why: &str) {
        let slot = &mut self.slots[i];
        let delay = slot.backoff.next_delay();
        tracing::debug!(why, ?delay, endpoint = %slot.endpoint, "sub reconnect scheduled");
        self.sockets[i] = None;
        slot.session = None;
        slot.retry_at = Some(Instant::now() + delay);
    }

    /// The slot whose reconnect is due first, and when.
    pub(super) fn next_retry(&self) -> Option<(usize, Instant)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.retry_at.map(|at| (i, at)))
            .min_by_key(|&(_, at)| at)
    }

    /// Carries out socket work and reports slow consumers.
    pub(super) async fn apply_effects(&mut self) {
        let eff = self.registry.take_effects();
        for (pattern, position) in eff.slow {
            let _ = self
                .task
                .events
                .send(ClientEvent::SlowConsumer { pattern, position });
        }
        if !eff.dirty {
            return;
        }
        let mut wanted: HashSet<String> = self.registry.prefixes().map(str::to_owned).collect();
        wanted.insert(HEARTBEAT_PREFIX.to_owned());
        wanted.insert(SESSION_TOPIC.to_owned());
        let removed_any = self
            .slots
            .iter()
            .any(|s| s.applied.difference(&wanted).next().is_some());
        if removed_any {
            let registry = &self.registry;
            self.tracker.retain_lanes(|l| registry.covers_lane(l));
        }
        let mut failed = Vec::new();
        for (i, (slot, socket)) in self
            .slots
            .iter_mut()
            .zip(self.sockets.iter_mut())
            .enumerate()
        {
            let Some(sock) = socket.as_mut() else {
                continue; // the next socket subscribes `wanted` from the start
            };
            let changes = wanted
                .difference(&slot.applied)
                .map(|p| (p, true))
                .chain(slot.applied.difference(&wanted).map(|p| (p, false)));
            for (p, subscribe) in changes {
                // Until a marker says this change was applied. The last
                // session stays: if that marker reports a miss, what came
                // after `complete_to` is swept (with the patterns of now)
                // before a watermark may pass it; without a miss the new
                // session starts at the marker.
                slot.session = None;
                if let Err(e) = sock.set(p, subscribe).await {
                    // The connection is broken: a new one subscribes `wanted`.
                    failed.push((i, e.to_string()));
                    break;
                }
            }
            slot.applied = wanted.clone();
        }
        for (i, why) in failed {
            self.retry_later(i, &why);
        }
    }
}

/// The next connect task to finish, and its slot.
pub(super) async fn join_any(
    connecting: &mut [Option<Connecting>],
) -> (
    usize,
    Result<Result<SubConn, SubError>, tokio::task::JoinError>,
) {
    std::future::poll_fn(|cx| {
        for (i, c) in connecting.iter_mut().enumerate() {
            if let Some(h) = c.as_mut() {
                if let Poll::Ready(r) = Pin::new(h).poll(cx) {
                    return Poll::Ready((i, r));
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// The next message of any SUB socket, and its slot. Sockets are polled
/// from `*start` on, which moves past the one that answered, so a busy
/// broadcaster cannot starve the others. (`poll_next` is cancel-safe:
/// dropping this unfinished loses nothing.)
pub(super) async fn recv_any(
    sockets: &mut [Option<SubConn>],
    start: &mut usize,
) -> (usize, Result<Broadcast, SubError>) {
    let n = sockets.len();
    std::future::poll_fn(|cx| {
        for k in 0..n {
            let i = (*start + k) % n;
            if let Some(s) = sockets[i].as_mut() {
                if let Poll::Ready(r) = s.poll_next(cx) {
                    *start = (i + 1) % n;
                    return Poll::Ready((i, r));
                }
            }
        }
        Poll::Pending
    })
    .await
}
