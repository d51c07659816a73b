//! The SUB socket's life: connecting it (in a connect task, so the loop
//! keeps serving commands), reconnecting with backoff, and keeping its
//! prefixes in step with the registry.
//!
//! zmq.rs's SUB reconnects by itself only while the TCP peer is reachable;
//! silence for `heartbeat_timeout` (see `task`) drops the socket and a new
//! one is connected here. Each new socket subscribes every prefix in use
//! (plus heartbeats) before it connects.

use std::collections::HashSet;

use fanfare_protocol::HEARTBEAT_PREFIX;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeromq::{Socket, SocketOptions, SocketRecv, SubSocket, ZmqError, ZmqMessage};

use super::State;
use crate::events::ClientEvent;

/// A connect task in progress: it hands the connected socket back.
pub(super) type Connecting = JoinHandle<Result<SubSocket, ZmqError>>;

impl State {
    pub(super) fn start_connect(&mut self) {
        let mut prefixes: HashSet<String> = self.registry.prefixes().map(str::to_owned).collect();
        prefixes.insert(HEARTBEAT_PREFIX.to_owned());
        self.applied = prefixes.clone();
        let endpoint = self.task.endpoint.clone();
        let timeout = self.task.connect_timeout;
        self.connecting = Some(tokio::spawn(async move {
            let mut opts = SocketOptions::default();
            opts.connect_timeout(timeout);
            let mut s = SubSocket::with_options(opts);
            for p in &prefixes {
                s.subscribe(p).await?;
            }
            s.connect(&endpoint).await?;
            Ok(s)
        }));
    }

    pub(super) fn on_connected(
        &mut self,
        r: Result<Result<SubSocket, ZmqError>, tokio::task::JoinError>,
    ) {
        self.connecting = None;
        match r {
            Ok(Ok(s)) => {
                tracing::debug!(endpoint = %self.task.endpoint, "sub socket connected");
                self.socket = Some(s);
                self.last_traffic = Instant::now();
                // Subscriptions made while connecting are synced next.
                self.registry.mark_dirty();
            }
            Ok(Err(e)) => self.retry_later(&e.to_string()),
            Err(e) => self.retry_later(&e.to_string()),
        }
    }

    pub(super) fn retry_later(&mut self, why: &str) {
        let delay = self.task.backoff.next_delay();
        tracing::debug!(why, ?delay, endpoint = %self.task.endpoint, "sub reconnect scheduled");
        self.socket = None;
        self.retry_at = Some(Instant::now() + delay);
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
        let removed: Vec<String> = self.applied.difference(&wanted).cloned().collect();
        if !removed.is_empty() {
            let registry = &self.registry;
            self.tracker.retain_lanes(|l| registry.covers_lane(l));
        }
        let Some(sock) = self.socket.as_mut() else {
            return; // the next socket subscribes `wanted` from the start
        };
        for p in wanted.difference(&self.applied) {
            if let Err(e) = sock.subscribe(p).await {
                tracing::debug!(error = %e, prefix = %p, "subscribe failed");
            }
        }
        for p in &removed {
            if let Err(e) = sock.unsubscribe(p).await {
                tracing::debug!(error = %e, prefix = %p, "unsubscribe failed");
            }
        }
        self.applied = wanted;
    }
}

pub(super) async fn join_opt(
    h: &mut Option<Connecting>,
) -> Result<Result<SubSocket, ZmqError>, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

pub(super) async fn recv_opt(s: &mut Option<SubSocket>) -> Result<ZmqMessage, ZmqError> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
