//! The Fanfare broadcaster: ZeroMQ PULL → stamp → PUB, with a bounded
//! history, a replay endpoint, heartbeats and an admin server.
//!
//! Embed it (the demo does) or run the `broadcaster` binary:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fanfare_broadcaster::{start, Config};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = Config {
//!     pull: "tcp://127.0.0.1:0".into(),
//!     publish: "tcp://127.0.0.1:0".into(),
//!     replay: "tcp://127.0.0.1:0".into(),
//!     admin: None,
//!     ..Config::default()
//! };
//! let shutdown = CancellationToken::new();
//! let running = start(config, shutdown.clone()).await?;
//! println!("publish to {}", running.endpoints().pull);
//! println!("{} messages so far", running.metrics().snapshot().ingress_messages);
//! shutdown.cancel();
//! running.wait().await?;
//! # Ok(()) }
//! ```
//!
//! The library's face is this page: [`start`] with a [`Config`], the
//! [`RunningBroadcaster`] it returns (its [`Endpoints`] and a
//! [`MetricsView`]), the errors, and [`cli`] for the binary. Everything else
//! is private to the crate. See `ARCHITECTURE.md` for the shape and
//! `PROTOCOL.md` for the bytes.

pub mod cli;

mod admin;
mod config;
mod egress;
mod endpoint;
mod fd_limit;
mod federation;
mod forwarder;
mod history;
mod ingress;
mod lanes;
mod listener;
mod liveness;
mod metrics;
mod prefix_index;
mod publishers;
mod replay;
mod subscribers;
mod zmtp;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigError, PeerConfig};
pub use endpoint::EndpointError;
pub use metrics::{MetricsSnapshot, MetricsView};
/// Fuzz entry points for the ZMTP reader and handshake (not part of the API).
#[doc(hidden)]
pub use zmtp::fuzzing;

use crate::history::{History, Limits};
use crate::metrics::Metrics;
use crate::zmtp::SocketKind;

/// Ingress batches queued to the forwarder (each up to 512 messages). Full:
/// ingress connections wait (TCP back-pressure), nothing is dropped.
const INGRESS_QUEUE: usize = 256;
/// Subscription changes queued to the forwarder. Full: the subscriber's
/// reader waits.
const CONTROL_QUEUE: usize = 1024;

/// The addresses the broadcaster actually bound (port 0 resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Ingress, `tcp://HOST:PORT`.
    pub pull: String,
    /// Egress.
    pub publish: String,
    /// Replay.
    pub replay: String,
    /// Admin, `http://HOST:PORT`.
    pub admin: Option<String>,
}

impl Endpoints {
    /// The readiness line printed by the binary.
    pub fn ready_line(&self) -> String {
        let mut s = format!(
            "ready pull={} pub={} replay={}",
            self.pull, self.publish, self.replay
        );
        if let Some(a) = &self.admin {
            s.push_str(" admin=");
            s.push_str(a);
        }
        s
    }
}

/// Why the broadcaster could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An endpoint is malformed or could not be bound.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// Why a run ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Tasks were still running when the drain timeout expired.
    #[error("graceful shutdown did not finish within {0:?}")]
    DrainTimeout(std::time::Duration),
}

/// A started broadcaster.
pub struct RunningBroadcaster {
    endpoints: Endpoints,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    forwarder: tokio::task::JoinHandle<()>,
    timeout: std::time::Duration,
    metrics: Arc<Metrics>,
}

impl RunningBroadcaster {
    /// The bound endpoints.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// A read-only view of the live metrics.
    pub fn metrics(&self) -> MetricsView {
        MetricsView(self.metrics.clone())
    }

    /// Waits for the shutdown token, then for a graceful shutdown: stop
    /// accepting, drain ingress, forward what is queued, flush subscribers.
    pub async fn wait(self) -> Result<(), RunError> {
        self.shutdown.cancelled().await;
        self.tracker.close();
        let drained = async {
            let _ = self.forwarder.await;
            self.tracker.wait().await;
        };
        tokio::time::timeout(self.timeout, drained)
            .await
            .map_err(|_| RunError::DrainTimeout(self.timeout))
    }
}

/// Binds every socket and starts serving; returns once all are bound.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> Result<RunningBroadcaster, StartError> {
    config.validate()?;
    let max_connections =
        fd_limit::fit_connections(config.max_connections, fd_limit::raise_nofile());
    let timeouts = config.timeouts();
    let evict_idle = config.evict_idle();
    let epoch = fanfare_protocol::stamp::now_us();
    let (pull_l, pull_a) =
        endpoint::bind(&config.pull, &endpoint::tcp_host_port(&config.pull)?).await?;
    let (pub_l, pub_a) =
        endpoint::bind(&config.publish, &endpoint::tcp_host_port(&config.publish)?).await?;
    let (replay_l, replay_a) =
        endpoint::bind(&config.replay, &endpoint::tcp_host_port(&config.replay)?).await?;
    let admin = match &config.admin {
        Some(a) => Some(endpoint::bind(a, &endpoint::http_host_port(a)?).await?),
        None => None,
    };
    let endpoints = Endpoints {
        pull: format!("tcp://{pull_a}"),
        publish: format!("tcp://{pub_a}"),
        replay: format!("tcp://{replay_a}"),
        admin: admin.as_ref().map(|(_, a)| format!("http://{a}")),
    };

    let mut metrics = Metrics::new(&config.id, epoch);
    let peers: Vec<_> = config
        .peers
        .iter()
        .map(|p| (p.label().to_owned(), p.publish.clone(), p.replay.clone()))
        .collect();
    metrics.add_links(&peers);
    let metrics = Arc::new(metrics);
    let mut history = History::new(Limits {
        count: config.history_count,
        bytes: config.history_bytes,
        age: config.history_age(),
    });
    history.start_epoch(&config.id, epoch);
    let history = Arc::new(RwLock::new(history));
    let tracker = TaskTracker::new();
    let (ingress_tx, ingress_rx) = mpsc::channel(INGRESS_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);

    let relay = (!config.peers.is_empty()).then(|| {
        let (fed_tx, fed_rx) = mpsc::channel(federation::FEDERATION_QUEUE);
        let (interest, plan) = federation::Interest::new(&config.id);
        let shared = Arc::new(federation::Shared {
            own_id: config.id.clone(),
            max_payload: config.max_payload,
            timeouts,
            stall: config.peer_stall(),
            metrics: metrics.clone(),
            peers: std::sync::Mutex::new(std::collections::HashMap::new()),
            shutdown: shutdown.clone(),
            plan,
        });
        let repair = federation::start(&config.peers, shared, &fed_tx, &tracker);
        let relay = federation::Relay::new(
            &config.id,
            config.hop_limit,
            metrics.links.clone(),
            repair,
            interest,
        );
        (relay, fed_rx)
    });
    let forwarder = forwarder::Forwarder::new(
        &config.id,
        epoch,
        history.clone(),
        subscribers::Subscribers::new(config.subscriber_queue_bytes),
        metrics.clone(),
    )
    .federate(relay, endpoints.replay.clone());
    let forwarder =
        tokio::spawn(forwarder.run(ingress_rx, control_rx, config.heartbeat_interval()));

    let max_payload = config.max_payload;
    let (m, s) = (metrics.clone(), shutdown.clone());
    tracker.spawn(listener::accept_loop(
        listener::Acceptor {
            listener: pull_l,
            kind: SocketKind::Pull,
            max_frame: config.max_ingress_frame(),
            max_connections,
            timeouts,
            evict_idle,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        },
        move |conn| ingress::serve(conn, ingress_tx.clone(), max_payload, m.clone(), s.clone()),
    ));

    let next_id = Arc::new(AtomicU64::new(1));
    let (s, t, m) = (shutdown.clone(), tracker.clone(), metrics.clone());
    let write_stall = config.write_stall();
    tracker.spawn(listener::accept_loop(
        listener::Acceptor {
            listener: pub_l,
            kind: SocketKind::Pub,
            max_frame: egress::MAX_SUBSCRIPTION_FRAME,
            max_connections,
            // A SUB peer is legitimately silent: no idle timeout (the cap,
            // eviction at the cap and the write-stall bound apply instead).
            timeouts: zmtp::Timeouts {
                idle: None,
                ..timeouts
            },
            evict_idle,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        },
        move |conn| {
            let id = next_id.fetch_add(1, Relaxed);
            let ctx = egress::EgressContext {
                control: control_tx.clone(),
                shutdown: s.clone(),
                tracker: t.clone(),
                metrics: m.clone(),
                write_stall,
            };
            egress::serve(conn, id, ctx)
        },
    ));

    let ctx = Arc::new(replay::ReplayContext {
        history,
        own_id: config.id.clone(),
        limits: replay::ReplyLimits {
            messages: config.replay_max_messages,
            bytes: config.replay_max_bytes,
        },
        budget: replay::ScanBudget {
            entries: config.replay_scan_entries,
            matches: config.replay_scan_matches,
            time: config.replay_scan_time(),
        },
        workers: Arc::new(tokio::sync::Semaphore::new(config.replay_workers)),
        peers: replay::PeerShares::new(config.replay_workers, config.replay_inflight_bytes),
        inflight: replay::InFlight::new(
            config.replay_inflight_bytes,
            metrics.replay.inflight_bytes.clone(),
        ),
        write_timeout: config.replay_write_timeout(),
        metrics: metrics.clone(),
    });
    let s = shutdown.clone();
    tracker.spawn(listener::accept_loop(
        listener::Acceptor {
            listener: replay_l,
            kind: SocketKind::Router,
            max_frame: replay::MAX_REQUEST_FRAME,
            max_connections,
            timeouts,
            evict_idle,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        },
        move |conn: listener::Conn| {
            let stop = conn.activity.stop().clone();
            let served = replay::serve(conn, ctx.clone(), s.clone());
            async move {
                tokio::select! {
                    r = served => r,
                    () = stop.cancelled() => Ok(()),
                }
            }
        },
    ));

    if let Some((l, _)) = admin {
        tracker.spawn(admin::serve(l, metrics.clone(), shutdown.clone()));
    }
    tracing::info!(id = %config.id, epoch, "{}", endpoints.ready_line());
    Ok(RunningBroadcaster {
        endpoints,
        shutdown,
        tracker,
        forwarder,
        timeout: config.shutdown_timeout(),
        metrics,
    })
}
