//! [`Client`]: the cheap, cloneable handle a worker uses.

use std::sync::Arc;

use bytes::Bytes;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{ConnectError, PublishError, ReplayError, SubscribeError};
use crate::events::{ClientEvent, EventStream};
use crate::message::{Confirmation, Origins};
use crate::options::ClientOptions;
use crate::publisher::{self, Draft, PublisherHandle, PublisherTask};
use crate::replay_query::{decode_reply, ReplayBatch, ReplayQuery};
use crate::replay_sources::ReplayHandle;
use crate::replay_task::{self, ReplayTask};
use crate::subscriber::Subscription;
use crate::subscriber::{self, SubscriberHandle, SubscriberTask};

/// A handle on the fabric: publish, subscribe, query history, watch events.
///
/// Cheap to clone (an `Arc`); every clone talks to the same three tasks:
/// a publisher (PUSH socket and outbox), a subscriber (SUB socket, gap
/// repair, deliveries) and a replay task (DEALER to the replay endpoint).
/// The tasks stop when the last `Client` and [`Subscription`] are dropped,
/// or at [`Client::close`]; either way the publisher first sends what is in
/// the outbox (for at most `close_timeout`, if the runtime keeps running).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    publisher: PublisherHandle,
    subscriber: SubscriberHandle,
    replay: ReplayHandle,
    events: broadcast::Sender<ClientEvent>,
    max_payload: usize,
    close_timeout: std::time::Duration,
    shutdown: CancellationToken,
    /// How many broadcasters it was given.
    broadcasters: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Client {
    /// Starts the client's tasks and, unless the connect timeout is zero,
    /// waits for the broadcaster's first heartbeat.
    pub async fn connect(opts: ClientOptions) -> Result<Client, ConnectError> {
        for ep in opts
            .broadcasters
            .iter()
            .flat_map(|b| [&b.pull, &b.publish, &b.replay])
        {
            ep.parse::<zeromq::Endpoint>()
                .map_err(|e| ConnectError::InvalidEndpoint {
                    endpoint: ep.clone(),
                    reason: e.to_string(),
                })?;
        }
        let shutdown = CancellationToken::new();
        let (events, _) = broadcast::channel(opts.events_capacity);
        let backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
        // zmq.rs retries a refused connect internally up to this long; our
        // own backoff takes over after it.
        let socket_connect = opts.backoff_max.min(std::time::Duration::from_secs(1));
        let publisher = publisher::spawn(
            PublisherTask {
                broadcasters: opts.broadcasters.clone(),
                publisher_id: opts.publisher_id.clone(),
                session: new_session(),
                ack_timeout: opts.ack_timeout,
                heartbeat_timeout: opts.heartbeat_timeout,
                backoff: backoff.clone(),
                connect_timeout: socket_connect,
                events: events.clone(),
                shutdown: shutdown.clone(),
                drain_timeout: opts.close_timeout,
                drain_deadline: None,
            },
            opts.outbox_capacity,
        );
        let sources = opts.broadcasters.iter().map(|b| {
            replay_task::spawn(ReplayTask {
                endpoint: b.replay.clone(),
                timeout: opts.replay_timeout,
                attempts: opts.replay_attempts,
                backoff: backoff.clone(),
                shutdown: shutdown.clone(),
            })
        });
        let replay = ReplayHandle::new(sources.collect());
        let subscriber = subscriber::spawn(SubscriberTask {
            endpoints: opts
                .broadcasters
                .iter()
                .map(|b| b.publish.clone())
                .collect(),
            heartbeat_timeout: opts.heartbeat_timeout,
            connect_timeout: socket_connect,
            backoff,
            capacity: opts.subscription_capacity,
            max_parked: opts.max_parked,
            replay_wait: opts.replay_timeout,
            replay: replay.clone(),
            events: events.clone(),
            shutdown: shutdown.clone(),
        });
        let client = Client {
            inner: Arc::new(Inner {
                publisher,
                subscriber,
                replay,
                events,
                max_payload: opts.max_payload,
                close_timeout: opts.close_timeout,
                shutdown,
                broadcasters: opts.broadcasters.len(),
            }),
        };
        if !opts.connect_timeout.is_zero() {
            let heard = client.inner.subscriber.wait_heard(opts.connect_timeout);
            if !heard.await {
                return Err(ConnectError::Timeout {
                    endpoint: opts.pub_endpoint,
                    waited: opts.connect_timeout,
                });
            }
        }
        Ok(client)
    }

    /// Publishes `payload` on `topic` (with this client's publisher id and
    /// the publish time as metadata).
    ///
    /// Returns once the message is in the outbox. While the broadcaster is
    /// unreachable the outbox keeps up to `outbox_capacity` messages and
    /// sends them, in order, once it is back; beyond that this fails with
    /// [`PublishError::OutboxFull`]. While connected, a full outbox waits.
    ///
    /// Every message is kept until a broadcaster acknowledges it and re-sent
    /// after a reconnect or a move to another broadcaster; subscribers never
    /// get it twice. [`Client::publish_confirmed`] also waits for that ack.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), PublishError> {
        let draft = self.draft(topic, payload.into(), None)?;
        self.inner.publisher.send(draft).await
    }

    /// Publishes like [`Client::publish`] and resolves once a broadcaster
    /// has stamped the message (its ack covers the message's publisher seq).
    /// Until then the message is re-sent after every reconnect or failover,
    /// so this may wait for as long as no broadcaster is reachable; bound it
    /// with a timeout if needed. [`PublishError::Closed`] if the client
    /// stops first.
    pub async fn publish_confirmed(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Confirmation, PublishError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let draft = self.draft(topic, payload.into(), Some(tx))?;
        self.inner.publisher.send(draft).await?;
        rx.await.map_err(|_| PublishError::Closed)
    }

    fn draft(
        &self,
        topic: &str,
        payload: Bytes,
        confirm: Option<tokio::sync::oneshot::Sender<Confirmation>>,
    ) -> Result<Draft, PublishError> {
        fanfare_protocol::topic::validate(topic.as_bytes())?;
        if payload.len() > self.inner.max_payload {
            return Err(PublishError::PayloadTooLarge {
                size: payload.len(),
                limit: self.inner.max_payload,
            });
        }
        Ok(Draft {
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            payload,
            published_us: fanfare_protocol::stamp::now_us(),
            confirm,
        })
    }

    /// Publishes a value as JSON (see [`Client::publish`]).
    pub async fn publish_json<T: serde::Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
    ) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(value)?;
        self.publish(topic, payload).await
    }

    /// Subscribes to a pattern (`*`: one word, `#`: zero or more words).
    ///
    /// Delivers messages stamped after the subscription was registered, with
    /// lost ones repaired from history; see [`Subscription`].
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, SubscribeError> {
        self.subscribe_inner(pattern, None).await
    }

    /// Subscribes and first delivers what came after `since` (from history),
    /// then live messages, without duplicates. What history no longer holds
    /// is delivered as a [`Delivery::Gap`](crate::Delivery::Gap) first. An
    /// empty position is the same as [`Client::subscribe`].
    ///
    /// Live messages that arrive meanwhile are held (up to the subscription
    /// capacity); when live traffic outruns the catch-up they are fetched
    /// from history too, so a subscription far behind a busy stream keeps
    /// reading from history, in order, until it has caught up. It is closed
    /// as a slow consumer only if the application leaves queued items
    /// untaken for half a second while that happens.
    pub async fn subscribe_from(
        &self,
        pattern: &str,
        since: Position,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_inner(pattern, Some(since)).await
    }

    async fn subscribe_inner(
        &self,
        pattern: &str,
        since: Option<Position>,
    ) -> Result<Subscription, SubscribeError> {
        let parsed = Pattern::parse(pattern)?;
        let parts = self.inner.subscriber.subscribe(parsed, since).await?;
        let keep: Arc<dyn Send + Sync> = self.inner.clone();
        Ok(Subscription::new(
            parts,
            pattern.to_owned(),
            self.inner.subscriber.clone(),
            keep,
        ))
    }

    /// Asks the replay endpoint for one range of history, as is (one reply;
    /// follow [`ReplayBatch::next`] when it was cut).
    pub async fn replay(&self, query: ReplayQuery) -> Result<ReplayBatch, ReplayError> {
        let raw = self.inner.replay.request(query.to_request()?).await?;
        Ok(decode_reply(raw, &mut Origins::default()))
    }

    /// Connection events from now on (bounded: a slow reader skips).
    pub fn events(&self) -> EventStream {
        EventStream::new(self.inner.events.subscribe())
    }

    /// Did a broadcaster of this client relay an origin other than its
    /// own (federation)? Known once its first heartbeat of that origin or
    /// message came.
    pub fn relays_other_origins(&self) -> bool {
        self.inner.subscriber.relays_others()
    }

    /// How many broadcasters this client was given.
    pub fn broadcasters(&self) -> usize {
        self.inner.broadcasters
    }

    /// True while the broadcaster is heard (heartbeats or messages).
    pub fn is_connected(&self) -> bool {
        self.inner.subscriber.is_heard()
    }

    /// Flushes the outbox (at most `close_timeout`), then stops the client
    /// for every clone: subscriptions end with
    /// [`CloseReason::ClientClosed`](crate::CloseReason::ClientClosed).
    ///
    /// "Flushed" means acknowledged: a broadcaster has stamped every message
    /// published before `close` (see [`Client::publish_confirmed`]). What
    /// is still unacknowledged when `close_timeout` runs out may be lost.
    pub async fn close(self) {
        if !self.inner.publisher.flush(self.inner.close_timeout).await {
            tracing::warn!("outbox not flushed before close timeout");
        }
        self.inner.shutdown.cancel();
    }
}

/// A fresh publisher session: random (the standard library's hasher seeds),
/// mixed with the process id, the time and a counter; never 0.
fn new_session() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(fanfare_protocol::stamp::now_us());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish().max(1)
}
