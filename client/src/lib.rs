//! Fanfare client: what a worker process embeds to publish to and subscribe
//! from a Fanfare broadcaster, losslessly.
//!
//! This example runs as it stands: it starts a broadcaster in-process on
//! free ports (in production that is the `broadcaster` binary, and the
//! endpoints are its `ready …` line's), connects, subscribes, publishes and
//! receives, then shuts both down.
//!
//! ```
//! use std::time::Duration;
//!
//! use fanfare_broadcaster::Config;
//! use fanfare_client::{Client, ClientOptions, Delivery};
//! use futures::StreamExt;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = CancellationToken::new();
//! let config = Config {
//!     pull: "tcp://127.0.0.1:0".into(),
//!     publish: "tcp://127.0.0.1:0".into(),
//!     replay: "tcp://127.0.0.1:0".into(),
//!     admin: None,
//!     heartbeat_ms: 50,
//!     ..Config::default()
//! };
//! let broadcaster = fanfare_broadcaster::start(config, shutdown.clone()).await?;
//! let ep = broadcaster.endpoints();
//!
//! // Waits for the broadcaster's first heartbeat.
//! let opts = ClientOptions::new(&ep.pull, &ep.publish, &ep.replay).publisher_id("worker-1");
//! let client = Client::connect(opts).await?;
//!
//! let mut chat = client.subscribe("chat.#").await?;
//! client.publish("chat.lobby", "hello").await?;
//! client.publish_json("chat.lobby", &serde_json::json!({"text": "hi"})).await?;
//!
//! let mut received = 0;
//! while received < 2 {
//!     // Every receive gets a timeout.
//!     match tokio::time::timeout(Duration::from_secs(5), chat.next()).await? {
//!         Some(Delivery::Message(m)) => {
//!             println!("{} {:?} seq {}", m.topic, m.payload, m.stamp.seq);
//!             received += 1;
//!         }
//!         Some(Delivery::Gap(g)) => eprintln!("lost {}..={} from {}", g.first, g.last, g.origin),
//!         Some(Delivery::Closed(reason)) => return Err(format!("closed: {reason:?}").into()),
//!         Some(Delivery::Watermark(_)) => {} // only after `keep_watermarks`
//!         None => return Err("subscription ended".into()),
//!     }
//! }
//!
//! drop(chat);
//! client.close().await; // flushes the outbox first
//! shutdown.cancel();
//! broadcaster.wait().await?;
//! # Ok(()) }
//! ```
//!
//! # What it guarantees
//!
//! * **Publishing** survives a broadcaster restart: a bounded outbox holds
//!   messages while it is away ([`PublishError::OutboxFull`] beyond that)
//!   and sends them in order when it is back.
//! * **Subscribing** is lossless: the broadcaster's PUB drops messages for
//!   slow subscribers, so the client tracks every origin's epoch and every
//!   lane's sequence, and fetches whatever is missing from the replay
//!   endpoint before delivering later messages of that lane (flagged
//!   [`Message::replayed`]). Heartbeats reveal lost tails. What history no
//!   longer holds is delivered as an explicit [`Delivery::Gap`].
//! * **Order** is kept per lane: all topics sharing their first word
//!   (`chat.*`), hence per topic and per publisher within it.
//! * **Bounded memory**: every queue has a bound and a stated policy —
//!   the outbox (fail fast when disconnected), each subscription (closed
//!   with [`CloseReason::SlowConsumer`] and a position to resume from),
//!   events (a lagging reader skips), commands and replay requests (senders
//!   wait), messages parked during a repair and live messages held while a
//!   `subscribe_from` catches up (past their bounds they are re-fetched
//!   from history instead).
//!
//! # Semantics worth knowing
//!
//! * A subscription delivers messages stamped after it was registered. The
//!   broadcaster applies a new SUB prefix a moment later (ZeroMQ's "slow
//!   joiner"); what it missed meanwhile is fetched from history, so it is
//!   delivered anyway, flagged `replayed`.
//! * `replayed` means "fetched from history": repairs may also refetch a
//!   few messages that had arrived live, to save round trips.
//! * A subscription whose first pattern word is a wildcard (`*.x`, `#`)
//!   cannot have heartbeats reveal a lost tail on lanes it never saw a
//!   message of; the next message of that lane reveals it instead.
//! * Connection events sent before [`Client::events`] is called are not
//!   replayed to it; [`Client::is_connected`] gives the current state.
//!
//! # Limitations
//!
//! * PUSH has no acknowledgements: messages the old connection had already
//!   accepted when the broadcaster died are lost (the outbox only keeps what
//!   the socket handed back or what was published after the loss was seen).
//! * The client trusts its broadcaster: frames from the PUB and replay
//!   sockets are read by zmq.rs, which does not bound their size.
//! * A narrow pattern in a busy namespace (`chat.room1` while `chat.*` is
//!   busy) makes lane seqs jump for filtered messages; each jump costs a
//!   history query (batched when messages queue up behind it).
//!
//! # Tasks
//!
//! [`Client`] is a handle; three tasks own the sockets, one each: the
//! publisher (PUSH), the subscriber (SUB, gap tracking, deliveries) and the
//! replay task (DEALER to the replay endpoint). Short-lived helpers own
//! none: a connect task builds each new SUB socket, and a catch-up task
//! per [`Client::subscribe_from`] round fetches history through the replay
//! task. zmq.rs's PUSH and DEALER do not reconnect; these tasks recreate
//! them with backoff and jitter. `ARCHITECTURE.md` has the code map.
//!
//! The maps looked up once or more per message (the gap tracker's origins
//! and lanes, the subscriptions' delivered marks, the hub's pattern indexes,
//! reorder and ring) hash with `foldhash` rather than SipHash: about ten
//! lookups per message made SipHash 8 % of a worker's instructions. Its
//! seeds are random per process, and every such map is bounded (origins,
//! lanes, distinct patterns), so a key an outsider chooses costs at most a
//! bounded probe.

mod backoff;
mod cancel_flag;
mod client;
mod error;
mod events;
mod gaps;
mod message;
mod options;
mod publisher;
mod replay_query;
mod replay_sources;
mod replay_task;
mod subscriber;

#[cfg(feature = "hub")]
pub mod hub;

pub use client::Client;
pub use error::{ConnectError, PublishError, ReplayError, SubscribeError};
pub use events::{ClientEvent, EventStream};
pub use message::{
    CloseReason, Confirmation, Delivery, Gap, GapReason, Message, PatternsApplied, Stamp, Watermark,
};
pub use options::{ClientOptions, DEFAULT_PUB, DEFAULT_PULL, DEFAULT_REPLAY};
pub use replay_query::{ReplayBatch, ReplayQuery, ReplayStatus};
pub use subscriber::Subscription;

/// Wire types re-exported from `fanfare-protocol`.
pub use fanfare_protocol::{meta::PublisherSeq, pattern::Pattern, position::Position};
