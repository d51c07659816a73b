//! The subscriber task: owns the SUB socket, tracks gaps and delivers.
//!
//! One task, one `select!` loop over: commands from handles, the SUB
//! socket, repair rounds (answers from the history task), a (re)connect in
//! progress, and a tick that notices silence (no heartbeat for
//! `heartbeat_timeout`) and dropped subscriptions. It never blocks on a
//! subscriber's queue: deliveries use `try_send` and a full queue closes
//! that subscription alone (see [`registry`]).

mod catchup;
mod held;
mod registry;
mod repairs;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::heartbeat::LaneMark;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use fanfare_protocol::HEARTBEAT_PREFIX;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketOptions, SocketRecv, SubSocket, ZmqError, ZmqMessage};

use crate::backoff::Backoff;
use crate::events::ClientEvent;
use crate::history::History;
use crate::message::{decode_frames, Incoming, Origins};
use crate::repair::{Head, Tracker};
use crate::subscription::Parts;
use registry::{Mark, Registry};
use repairs::Round;

/// Commands queued for the subscriber task.
const COMMAND_QUEUE: usize = 1024;
/// Messages parked (all lanes together) while their lane is repaired.
const MAX_PARKED: usize = 65_536;

/// What handles (and catch-up tasks) ask of the subscriber task.
pub(crate) enum Command {
    /// A new subscription; with `since`, replay what came after it first.
    Subscribe {
        pattern: Pattern,
        since: Option<Position>,
        reply: oneshot::Sender<Parts>,
    },
    /// A `Subscription` was dropped.
    Unsubscribe { id: u64 },
    /// A catch-up task delivered history up to these marks.
    CatchUpDone {
        id: u64,
        marks: Vec<(Arc<str>, Mark)>,
    },
}

/// Settings of the subscriber task.
pub(crate) struct SubscriberTask {
    pub endpoint: String,
    pub heartbeat_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    pub capacity: usize,
    /// Longest wait for queue room before a repair round.
    pub replay_wait: Duration,
    pub history: History,
    pub events: broadcast::Sender<ClientEvent>,
    pub shutdown: CancellationToken,
}

/// Spawns the task; returns its command queue and a flag that turns true
/// while the broadcaster is heard.
pub(crate) fn spawn(task: SubscriberTask) -> (mpsc::Sender<Command>, watch::Receiver<bool>) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (connected_tx, connected) = watch::channel(false);
    let state = State {
        registry: Registry::new(task.capacity),
        tracker: Tracker::new(MAX_PARKED),
        origins: Origins::default(),
        rounds: FuturesUnordered::new(),
        socket: None,
        connecting: None,
        applied: HashSet::new(),
        retry_at: None,
        last_traffic: Instant::now(),
        heard: false,
        connected: connected_tx,
        commands: tx.clone(),
        task,
    };
    tokio::spawn(state.run(rx));
    (tx, connected)
}

type Connecting = JoinHandle<Result<SubSocket, ZmqError>>;

struct State {
    task: SubscriberTask,
    registry: Registry,
    tracker: Tracker<crate::Message>,
    origins: Origins,
    rounds: FuturesUnordered<futures::future::BoxFuture<'static, Round>>,
    socket: Option<SubSocket>,
    connecting: Option<Connecting>,
    /// Prefixes subscribed on the current (or connecting) socket.
    applied: HashSet<String>,
    retry_at: Option<Instant>,
    last_traffic: Instant,
    /// True while the broadcaster is heard (heartbeats or messages).
    heard: bool,
    connected: watch::Sender<bool>,
    commands: mpsc::Sender<Command>,
}

impl State {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        self.start_connect();
        let period = (self.task.heartbeat_timeout / 4).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.task.shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                r = join_opt(&mut self.connecting) => self.on_connected(r),
                _ = sleep_opt(self.retry_at) => {
                    self.retry_at = None;
                    self.start_connect();
                }
                Some(round) = self.rounds.next(), if !self.rounds.is_empty() => self.on_round(round),
                _ = tick.tick() => self.on_tick(),
                m = recv_opt(&mut self.socket) => self.on_frames(m),
            }
            self.apply_effects().await;
            // zmq.rs sockets do not take part in Tokio's cooperative
            // budget: while the SUB always has data this loop would never
            // yield, starving the application's readers on the same
            // workers (their queues fill, they get closed as slow).
            tokio::task::consume_budget().await;
        }
        self.registry.close_all();
        self.connected.send_replace(false);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe {
                pattern,
                since,
                reply,
            } => {
                let id = self.subscribe(pattern, since, reply);
                tracing::debug!(id, "subscribed");
            }
            Command::Unsubscribe { id } => self.registry.remove(id, None),
            Command::CatchUpDone { id, marks } => self.on_catch_up_done(id, marks),
        }
    }

    fn subscribe(
        &mut self,
        pattern: Pattern,
        since: Option<Position>,
        reply: oneshot::Sender<Parts>,
    ) -> u64 {
        // Where a plain subscription starts: after what was seen so far.
        let live: HashMap<Arc<str>, Mark> = self
            .tracker
            .origins()
            .map(|(o, e, s)| (o.clone(), (e, s)))
            .collect();
        let parts = match since.filter(|p| !p.is_empty()) {
            Some(since) => self.subscribe_from(pattern, since, live),
            None => self.registry.add(pattern, live, None).0,
        };
        let id = parts.id;
        if reply.send(parts).is_err() {
            self.registry.remove(id, None);
        }
        id
    }

    fn start_connect(&mut self) {
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

    fn on_connected(&mut self, r: Result<Result<SubSocket, ZmqError>, tokio::task::JoinError>) {
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

    fn retry_later(&mut self, why: &str) {
        let delay = self.task.backoff.next_delay();
        tracing::debug!(why, ?delay, endpoint = %self.task.endpoint, "sub reconnect scheduled");
        self.socket = None;
        self.retry_at = Some(Instant::now() + delay);
    }

    fn on_tick(&mut self) {
        self.registry.sweep();
        let silent = self.last_traffic.elapsed() > self.task.heartbeat_timeout;
        if silent && self.heard {
            self.heard = false;
            self.connected.send_replace(false);
            let reason = format!("nothing heard for {:?}", self.task.heartbeat_timeout);
            tracing::warn!(%reason, endpoint = %self.task.endpoint, "broadcaster silent");
            let _ = self.task.events.send(ClientEvent::Disconnected { reason });
        }
        if silent && self.socket.is_some() {
            // Connected at the TCP level but silent: start afresh.
            self.retry_later("silence");
            self.last_traffic = Instant::now();
        }
    }

    fn on_frames(&mut self, m: Result<ZmqMessage, ZmqError>) {
        let frames = match m {
            Ok(m) => m.into_vec(),
            Err(e) => return self.retry_later(&e.to_string()),
        };
        self.last_traffic = Instant::now();
        if !self.heard {
            self.heard = true;
            self.task.backoff.reset();
            self.connected.send_replace(true);
            let _ = self.task.events.send(ClientEvent::Connected);
        }
        match decode_frames(frames, &mut self.origins) {
            Ok(Incoming::Message(m)) => {
                let head = Head {
                    epoch: m.stamp.epoch,
                    seq: m.stamp.seq,
                    lane: m.stamp.lane,
                    lane_seq: m.stamp.lane_seq,
                };
                let origin = m.stamp.origin.clone();
                let mut actions = Vec::new();
                let registry = &self.registry;
                let topic = m.topic.clone();
                let floor = || registry.floor_for_topic(&origin, head.epoch, &topic);
                self.tracker
                    .on_message(&origin, head, m, floor, &mut actions);
                self.apply(actions);
            }
            Ok(Incoming::Heartbeat {
                origin,
                epoch,
                seq,
                beat,
            }) => self.on_heartbeat(origin, epoch, seq, &beat.lanes),
            Err(e) => tracing::debug!(error = %e, "skipping malformed broadcast"),
        }
    }

    fn on_heartbeat(&mut self, origin: Arc<str>, epoch: u64, seq: u64, lanes: &[LaneMark]) {
        let mut actions = Vec::new();
        let registry = &self.registry;
        let floor = |lane| registry.floor_for_lane(&origin, epoch, lane);
        self.tracker
            .on_heartbeat(&origin, epoch, seq, lanes, floor, &mut actions);
        self.apply(actions);
    }

    /// Carries out socket work and reports slow consumers.
    async fn apply_effects(&mut self) {
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

async fn join_opt(
    h: &mut Option<Connecting>,
) -> Result<Result<SubSocket, ZmqError>, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(s: &mut Option<SubSocket>) -> Result<ZmqMessage, ZmqError> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
