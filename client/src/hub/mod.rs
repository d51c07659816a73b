//! The websocket hub: every browser connected to this worker gets the
//! fabric's events, can publish, and can resume at any worker with `since`.
//!
//! [`Hub::router`] serves `GET /ws` (the websocket, protocol in `PROTOCOL.md`,
//! "Browser protocol") and `GET /fanfare.js` (the browser client). Mounting it
//! in an existing axum app:
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::serve::ListenerExt;
//! use fanfare_client::hub::{Hub, HubOptions};
//! use fanfare_client::{Client, ClientOptions};
//! use futures::{SinkExt, StreamExt};
//! use serde_json::{json, Value};
//! use tokio_tungstenite::tungstenite::Message;
//!
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! // A broadcaster on free ports, embedded (a worker usually connects to a
//! // separate one).
//! let stop = tokio_util::sync::CancellationToken::new();
//! let config = fanfare_broadcaster::Config {
//!     pull: "tcp://127.0.0.1:0".into(),
//!     publish: "tcp://127.0.0.1:0".into(),
//!     replay: "tcp://127.0.0.1:0".into(),
//!     admin: None,
//!     heartbeat_ms: 100,
//!     ..fanfare_broadcaster::Config::default()
//! };
//! let broadcaster = fanfare_broadcaster::start(config, stop.clone()).await?;
//! let at = broadcaster.endpoints();
//! let client = Client::connect(ClientOptions::new(&at.pull, &at.publish, &at.replay)).await?;
//!
//! // The hub, mounted in an axum app. Small frames must not wait for
//! // Nagle's algorithm: set TCP_NODELAY.
//! let hub = Hub::new(client, HubOptions::new("worker-1"));
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .merge(hub.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let listener = listener.tap_io(|tcp| { let _ = tcp.set_nodelay(true); });
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // A browser: subscribe, publish, and receive the event.
//! let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
//! assert_eq!(next_json(&mut ws).await?["op"], "welcome");
//! let subscribe = json!({"op": "subscribe", "topics": ["chat.#"]});
//! ws.send(Message::text(subscribe.to_string())).await?;
//! assert_eq!(next_json(&mut ws).await?["op"], "subscribed");
//! let publish = json!({"op": "publish", "topic": "chat.lobby", "data": {"text": "hi"}});
//! ws.send(Message::text(publish.to_string())).await?;
//! let event = next_json(&mut ws).await?;
//! assert_eq!((event["op"].as_str(), event["topic"].as_str()), (Some("event"), Some("chat.lobby")));
//! assert_eq!(event["data"]["text"], "hi");
//!
//! hub.shutdown();
//! stop.cancel();
//! broadcaster.wait().await?;
//!
//! /// The next JSON text frame, within 10 s.
//! async fn next_json<S>(ws: &mut S) -> anyhow::Result<Value>
//! where
//!     S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
//! {
//!     loop {
//!         match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
//!             Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
//!             Some(Ok(_)) => continue, // ping
//!             Some(Err(e)) => return Err(e.into()),
//!             None => anyhow::bail!("the hub closed the websocket"),
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! In the page:
//!
//! ```js
//! import { connect } from "/fanfare.js";
//! const ff = connect({ onGap: (g) => console.warn("lost", g) });
//! ff.subscribe("chat.#", (data, ev) => console.log(ev.topic, data, ev.from));
//! ff.publish("chat.lobby", { text: "hi" });
//! ```
//!
//! Access control: give [`HubOptions::authorizer`] an [`Authorizer`] that
//! maps a token (query `token=`, bearer header, `fanfare_token` cookie, or
//! the first frame with [`HubOptions::auth_in_first_frame`]) to an
//! [`Identity`] with the patterns it may subscribe to and publish on; and
//! [`HubOptions::allowed_origins`] for the page origins.
//!
//! Invariants: each event is serialized once and its bytes are shared by all
//! connections; every connection queue is bounded and a full one closes that
//! connection alone (4008); nothing awaits while holding the registry lock.

mod auth;
mod client_fabric;
mod connection;
mod fabric;
mod feed;
mod interest;
mod limits;
mod metrics;
mod options;
pub mod protocol;
mod recovery;
mod registry;
mod reorder;
mod ring;
mod socket;

#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

pub use auth::{AllowAll, AuthRequest, Authorizer, Denied, Identity, OriginPolicy};
pub use connection::{CloseCause, SocketError};
pub use fabric::{
    Fabric, FabricError, FabricItem, FabricMessage, FeedApplied, FeedFailure, PublishFailure,
    ReplayChunk, ReplayFailure, ReplayRange,
};
pub use metrics::{HubMetrics, LagHistogram, METRICS_CONTENT_TYPE};
pub use options::HubOptions;
pub use protocol::GapCause;

/// The browser client, served at `/fanfare.js`.
pub const FANFARE_JS: &str = include_str!("fanfare.js");

pub(crate) struct HubInner {
    options: HubOptions,
    fabric: Arc<dyn Fabric>,
    registry: registry::Registry,
    metrics: Arc<HubMetrics>,
    next_conn: AtomicU64,
    shutdown: CancellationToken,
    /// Turns for resumes (`HubOptions::max_resumes`).
    resumes: tokio::sync::Semaphore,
    /// The patterns the feed must carry (when it follows interest).
    interest: interest::Interest,
}

/// A websocket hub for axum. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub fed by `client`. Must be called inside a tokio runtime: it
    /// spawns the task that subscribes the feed pattern and dispatches.
    pub fn new(client: crate::Client, options: HubOptions) -> Self {
        Self::with_fabric(Arc::new(client_fabric::ClientFabric::new(client)), options)
    }

    /// A hub over any [`Fabric`] (tests use an in-memory one).
    pub fn with_fabric(fabric: Arc<dyn Fabric>, options: HubOptions) -> Self {
        let metrics = Arc::new(HubMetrics::new(&options.worker_id));
        let registry = registry::Registry::new(
            metrics.clone(),
            options.ring_events,
            options.ring_bytes,
            options.queue_capacity,
            (
                options.max_distinct_patterns,
                options.max_wildcard_led_patterns,
            ),
        );
        let following =
            options.follow_interest && options.feed_pattern == "#" && fabric.follows_interest();
        let inner = Arc::new(HubInner {
            interest: interest::Interest::new(following),
            resumes: tokio::sync::Semaphore::new(options.max_resumes),
            options,
            fabric,
            registry,
            metrics,
            next_conn: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(feed::feed_loop(inner.clone()));
        Self { inner }
    }

    /// `GET /ws` and `GET /fanfare.js`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws", get(upgrade))
            .route("/fanfare.js", get(fanfare_js))
            .with_state(self.clone())
    }

    /// The hub's counters.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// The hub's metrics in the OpenMetrics text format (what Prometheus
    /// scrapes; serve it as [`METRICS_CONTENT_TYPE`]), every series labelled
    /// `worker`.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.inner.registry.len()
    }

    /// The worker id given in the options.
    pub fn worker_id(&self) -> &str {
        &self.inner.options.worker_id
    }

    /// Stops the feed and closes every connection with 1001.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.registry.shutdown_all();
    }

    /// Serves one already-upgraded connection given as a sink and a stream
    /// of axum websocket messages (what `WebSocket::split` gives, or channels).
    /// Read errors convert into a [`SocketError`] (axum's and tungstenite's
    /// do). The hub answers each ping the stream yields with a pong through
    /// the sink (an axum socket also answers by itself; the second pong is
    /// harmless). [`Hub::router`]'s `/ws` does not go through here: it
    /// upgrades the connection itself and writes frames vectored.
    pub async fn serve_socket<Si, St, E>(&self, identity: Identity, sink: Si, stream: St)
    where
        Si: futures::Sink<axum::extract::ws::Message> + Unpin,
        St: futures::Stream<Item = Result<axum::extract::ws::Message, E>> + Unpin,
        E: Into<SocketError>,
    {
        connection::serve(
            self.inner.clone(),
            connection::Access::Granted(identity),
            sink,
            stream,
        )
        .await
    }
}

async fn fanfare_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        FANFARE_JS,
    )
}

async fn upgrade(State(hub): State<Hub>, mut req: Request) -> Response {
    let handshake = match socket::check(&req) {
        Ok(h) => h,
        Err(refused) => {
            refused_handshake(&hub, refused);
            return refused.into_response();
        }
    };
    let (headers, uri) = (req.headers(), req.uri());
    let inner = &hub.inner;
    let o = &inner.options;
    if !o.origins.allows(headers) {
        inner.metrics.refused_origin.inc();
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let token = auth::find_token(uri.query(), headers, o.origins.cookies_allowed());
    let access = match o.authorizer.authorize(&AuthRequest { headers, token }) {
        Ok(i) => connection::Access::Granted(i),
        Err(_) if o.auth_in_first_frame && token.is_none() => {
            connection::Access::Pending(headers.clone())
        }
        Err(denied) => {
            inner.metrics.refused_auth.inc();
            return (StatusCode::UNAUTHORIZED, denied.to_string()).into_response();
        }
    };
    if inner.registry.len() >= o.max_connections {
        inner.metrics.refused_full.inc();
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    }
    let hard = o.hard_frame_limit;
    // The reader's tungstenite writes nothing (the writer answers pings
    // and closes), so it needs no write buffer.
    let config = WebSocketConfig::default()
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
        .read_buffer_size(o.ws_read_buffer)
        .write_buffer_size(0);
    let write_bytes = o.ws_write_buffer;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Some((sink, stream)) = socket::open(on_upgrade, config, write_bytes).await {
            connection::serve(hub.inner.clone(), access, sink, stream).await;
        }
    });
    handshake.response()
}

/// Counts and logs a request to `/ws` that is not a websocket handshake.
fn refused_handshake(hub: &Hub, refused: socket::Refused) {
    hub.inner.metrics.refused_handshake.inc();
    tracing::debug!(?refused, "not a websocket handshake");
}
