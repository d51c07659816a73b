//! [`ClientOptions`]: endpoints, identities, queue bounds and timeouts.

use std::time::Duration;

/// Default ingress (PULL) endpoint of a broadcaster.
pub const DEFAULT_PULL: &str = "tcp://127.0.0.1:5557";
/// Default egress (PUB) endpoint of a broadcaster.
pub const DEFAULT_PUB: &str = "tcp://127.0.0.1:5558";
/// Default replay (ROUTER) endpoint of a broadcaster.
pub const DEFAULT_REPLAY: &str = "tcp://127.0.0.1:5559";

/// One broadcaster's three endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoints {
    pub(crate) pull: String,
    pub(crate) publish: String,
    pub(crate) replay: String,
}

/// How a [`Client`](crate::Client) connects and how much it may buffer.
///
/// A builder: start from [`ClientOptions::new`] (or [`Default`], the
/// loopback endpoints 5557/5558/5559) and chain setters. Every default is
/// stated on its setter.
///
/// Several broadcasters ([`ClientOptions::add_broadcaster`]): the client
/// subscribes through all of them (dropping duplicates), publishes through
/// one at a time and moves to the next when that one fails.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub(crate) pull_endpoint: String,
    pub(crate) pub_endpoint: String,
    pub(crate) replay_endpoint: String,
    /// Every broadcaster, the first one (`new`'s) included.
    pub(crate) broadcasters: Vec<Endpoints>,
    pub(crate) ack_timeout: Duration,
    pub(crate) publisher_id: String,
    pub(crate) outbox_capacity: usize,
    pub(crate) max_payload: usize,
    pub(crate) subscription_capacity: usize,
    pub(crate) max_parked: usize,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) replay_timeout: Duration,
    pub(crate) replay_attempts: u32,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) events_capacity: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new(DEFAULT_PULL, DEFAULT_PUB, DEFAULT_REPLAY)
    }
}

impl ClientOptions {
    /// Options for a broadcaster's ingress (`pull`), egress (`publish`) and
    /// replay endpoints, e.g. `tcp://127.0.0.1:5557`, `…:5558`, `…:5559`.
    pub fn new(
        pull: impl Into<String>,
        publish: impl Into<String>,
        replay: impl Into<String>,
    ) -> Self {
        let first = Endpoints {
            pull: pull.into(),
            publish: publish.into(),
            replay: replay.into(),
        };
        Self {
            pull_endpoint: first.pull.clone(),
            pub_endpoint: first.publish.clone(),
            replay_endpoint: first.replay.clone(),
            broadcasters: vec![first],
            ack_timeout: Duration::from_secs(2),
            publisher_id: format!("client-{}", std::process::id()),
            outbox_capacity: 10_000,
            max_payload: 1024 * 1024,
            subscription_capacity: 4096,
            max_parked: 65_536,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            replay_timeout: Duration::from_secs(2),
            replay_attempts: 3,
            heartbeat_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            events_capacity: 1024,
        }
    }

    /// Options for several broadcasters at once, each `(pull, publish,
    /// replay)`; the first is the one published through first. An empty
    /// list gives the defaults' single broadcaster.
    pub fn with_broadcasters<S: Into<String>>(list: impl IntoIterator<Item = (S, S, S)>) -> Self {
        let mut it = list.into_iter();
        let Some((pull, publish, replay)) = it.next() else {
            return Self::default();
        };
        it.fold(Self::new(pull, publish, replay), |o, (a, b, c)| {
            o.add_broadcaster(a, b, c)
        })
    }

    /// Adds another broadcaster (its ingress, egress and replay endpoints).
    /// The same endpoints twice count once.
    pub fn add_broadcaster(
        mut self,
        pull: impl Into<String>,
        publish: impl Into<String>,
        replay: impl Into<String>,
    ) -> Self {
        let e = Endpoints {
            pull: pull.into(),
            publish: publish.into(),
            replay: replay.into(),
        };
        if !self.broadcasters.contains(&e) {
            self.broadcasters.push(e);
        }
        self
    }

    /// How long the broadcaster published through may leave a sent message
    /// unacknowledged before the publisher counts it as failed, moves to the
    /// next broadcaster (or reconnects to the only one) and re-sends every
    /// unconfirmed message there (default 2 s).
    pub fn ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d.max(Duration::from_millis(10));
        self
    }

    /// The publisher id put in every message's metadata (at most 255 bytes
    /// are sent). Default: `client-<process id>`.
    pub fn publisher_id(mut self, id: impl Into<String>) -> Self {
        self.publisher_id = id.into();
        self
    }

    /// Messages kept while the broadcaster is unreachable (default 10 000).
    /// When it is full, [`Client::publish`](crate::Client::publish) fails with
    /// [`PublishError::OutboxFull`](crate::PublishError::OutboxFull). The
    /// same number of sent but unacknowledged messages is kept for
    /// re-sending; while that many wait for their ack nothing more is sent
    /// (and the outbox fills).
    pub fn outbox_capacity(mut self, n: usize) -> Self {
        self.outbox_capacity = n.max(1);
        self
    }

    /// Largest payload `publish` accepts (default 1 MiB, the broadcaster's
    /// default `max-payload`; it drops larger ones without telling).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Deliveries queued per subscription (default 4096). A subscription
    /// whose queue is full is closed with
    /// [`CloseReason::SlowConsumer`](crate::CloseReason::SlowConsumer).
    pub fn subscription_capacity(mut self, n: usize) -> Self {
        self.subscription_capacity = n.max(1);
        self
    }

    /// Live messages held back, all lanes together, while the messages
    /// before them are fetched from history (default 65 536). Past it, a
    /// message read on a lane under repair is dropped and fetched later as
    /// that lane's tail, and the SUB sockets are left unread while repair
    /// rounds keep being answered, so the broadcaster drops instead and
    /// nothing is fetched twice. Memory: up to this many messages.
    pub fn max_parked(mut self, n: usize) -> Self {
        self.max_parked = n.max(1);
        self
    }

    /// Reconnect delays: doubling from `min` up to `max`, with jitter
    /// (default 100 ms .. 5 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }

    /// How long one replay request may take before the replay socket is
    /// recreated and the request retried (default 2 s).
    pub fn replay_timeout(mut self, d: Duration) -> Self {
        self.replay_timeout = d;
        self
    }

    /// Attempts per replay request before its range is reported
    /// unrecoverable (default 3).
    pub fn replay_attempts(mut self, n: u32) -> Self {
        self.replay_attempts = n.max(1);
        self
    }

    /// Silence (no heartbeat, no message) after which the broadcaster counts
    /// as gone and the subscriber reconnects (default 3 s).
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = d;
        self
    }

    /// How long [`Client::connect`](crate::Client::connect) waits for the
    /// first heartbeat of the broadcaster (default 5 s). `Duration::ZERO`
    /// returns at once and connects in the background (the outbox holds
    /// what is published meanwhile).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long [`Client::close`](crate::Client::close) waits for the
    /// outbox to drain (default 5 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// Connection events kept for slow [`Client::events`](crate::Client::events)
    /// readers (default 1024); a lagging reader skips the oldest.
    pub fn events_capacity(mut self, n: usize) -> Self {
        self.events_capacity = n.max(1);
        self
    }

    /// How many broadcasters are configured.
    pub fn broadcaster_count(&self) -> usize {
        self.broadcasters.len()
    }

    /// The (first broadcaster's) ingress endpoint.
    pub fn pull_endpoint(&self) -> &str {
        &self.pull_endpoint
    }

    /// The egress endpoint.
    pub fn pub_endpoint(&self) -> &str {
        &self.pub_endpoint
    }

    /// The replay endpoint.
    pub fn replay_endpoint(&self) -> &str {
        &self.replay_endpoint
    }
}
