//! The subscriber task: `State` and its `select!` loop.
//!
//! One task, one loop over: commands from handles, the SUB sockets (one per
//! broadcaster), repair rounds (answers from the replay tasks), the
//! (re)connects in progress, and a tick that notices silence (no heartbeat
//! from a broadcaster for `heartbeat_timeout`) and dropped subscriptions. It never blocks on a subscription's queue:
//! deliveries use `try_send` and a full queue closes that subscription alone
//! (see `registry`). The loop's arms are carried out by `State` methods in
//! the child files named for them — `sub_socket` (connecting, prefixes),
//! `live` (frames, heartbeats, tracker actions), `repair_rounds` — and in
//! the sibling `catch_up` folder (`subscribe_from`).

mod live;
mod read_pause;
mod repair_rounds;
mod sub_socket;

use std::sync::Arc;
use std::time::Duration;

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::events::ClientEvent;
use crate::gaps::{Action, Tracker};
use crate::message::{Marks, Origins};
use crate::replay_sources::ReplayHandle;
use crate::subscriber::handle::{Command, SubscriberHandle};
use crate::subscriber::publisher_seqs::PublisherSeqs;
use crate::subscriber::queue::Parts;
use crate::subscriber::registry::Registry;
use crate::subscriber::zmtp_sub::SubConn;
use read_pause::ReadPause;
use repair_rounds::Round;
use sub_socket::{join_any, recv_any, Connecting, Slot};

/// Commands queued for the subscriber task. Full: `subscribe` waits.
const COMMAND_QUEUE: usize = 1024;
/// Settings of the subscriber task.
pub(crate) struct SubscriberTask {
    /// Every broadcaster's egress endpoint: one SUB socket each.
    pub endpoints: Vec<String>,
    pub heartbeat_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    pub capacity: usize,
    /// Messages parked (all lanes together) while their lane is repaired
    /// (`ClientOptions::max_parked`). Past it the tracker drops them and
    /// fetches them from history afterwards.
    pub max_parked: usize,
    /// Longest wait for queue room before a repair round.
    pub replay_wait: Duration,
    pub replay: ReplayHandle,
    pub events: broadcast::Sender<ClientEvent>,
    pub shutdown: CancellationToken,
}

/// Spawns the task; returns the handle to it.
pub(crate) fn spawn(task: SubscriberTask) -> SubscriberHandle {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (connected_tx, connected) = watch::channel(false);
    let relayed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let n = task.endpoints.len();
    let slots = task
        .endpoints
        .iter()
        .map(|e| Slot::new(e.clone(), task.backoff.clone()))
        .collect();
    let state = State {
        registry: Registry::new(task.capacity),
        tracker: Tracker::new(task.max_parked),
        publisher_seqs: PublisherSeqs::default(),
        origins: Origins::default(),
        rounds: FuturesUnordered::new(),
        slots,
        sockets: (0..n).map(|_| None).collect(),
        actions: Vec::new(),
        applying: Vec::new(),
        connecting: (0..n).map(|_| None).collect(),
        next_socket: 0,
        sources_noted: Default::default(),
        heard: false,
        read_pause: ReadPause::default(),
        connected: connected_tx,
        relayed: relayed.clone(),
        commands: tx.clone(),
        task,
    };
    tokio::spawn(state.run(rx));
    SubscriberHandle::new(tx, connected, relayed)
}

/// Everything the subscriber task owns. Its methods live in one file per
/// concern (see the module docs).
pub(super) struct State {
    pub(super) task: SubscriberTask,
    pub(super) registry: Registry,
    /// The gap tracker; parks at most `task.max_parked` messages.
    pub(super) tracker: Tracker<crate::Message>,
    /// Re-sent copies (same publisher session and seq, a new stamp) dropped.
    pub(super) publisher_seqs: PublisherSeqs,
    pub(super) origins: Origins,
    /// Repair rounds in flight (futures polled by this task, not tasks).
    pub(super) rounds: FuturesUnordered<futures::future::BoxFuture<'static, Round>>,
    /// Per broadcaster: endpoint, prefixes applied, reconnect state.
    pub(super) slots: Vec<Slot>,
    /// Per broadcaster, its SUB socket once the connect task has handed it
    /// over; from then on only this task touches it.
    pub(super) sockets: Vec<Option<SubConn>>,
    /// Pattern changes waiting for the marker that answers them (one per
    /// `set_patterns` call in flight: each holds its subscription's `&mut`).
    pub(super) applying: Vec<oneshot::Sender<crate::PatternsApplied>>,
    /// Tracker actions of the message being handled (reused, kept empty).
    pub(super) actions: Vec<Action<crate::Message>>,
    /// Per broadcaster, the connect task building its next SUB, if one runs.
    pub(super) connecting: Vec<Option<Connecting>>,
    /// Which socket `recv_any` polls first (round robin).
    pub(super) next_socket: usize,
    /// Origins whose first-delivering broadcaster the replay sources know.
    pub(super) sources_noted: foldhash::HashSet<Arc<str>>,
    /// True while any broadcaster is heard (heartbeats or messages).
    pub(super) heard: bool,
    /// Whether the SUB sockets are left unread (`read_pause`).
    pub(super) read_pause: ReadPause,
    pub(super) connected: watch::Sender<bool>,
    /// Set once a heartbeat or message of an origin other than the
    /// session's came (the broadcaster relays others: federation).
    pub(super) relayed: Arc<std::sync::atomic::AtomicBool>,
    /// This task's own command queue, for the catch-up tasks to report to.
    pub(super) commands: mpsc::Sender<Command>,
}

impl State {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        for i in 0..self.slots.len() {
            self.start_connect(i);
        }
        let period = (self.task.heartbeat_timeout / 4).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut steps = 1;
        // Polled on every wake-up (often one message): the token's own
        // future takes two locks per poll, the flag none.
        let shutdown = crate::cancel_flag::CancelFlag::watch(&self.task.shutdown);
        let mut cancelled = shutdown.cancelled();
        loop {
            let retry = self.next_retry();
            let read = !self.reads_paused();
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                cmd = rx.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                (i, r) = join_any(&mut self.connecting) => self.on_connected(i, r),
                _ = sleep_opt(retry.map(|r| r.1)) => {
                    if let Some((i, _)) = retry {
                        self.slots[i].retry_at = None;
                        self.start_connect(i);
                    }
                }
                Some(round) = self.rounds.next(), if !self.rounds.is_empty() => self.on_round(round),
                _ = tick.tick() => self.on_tick(),
                // Wakes the loop when a pause without progress is over.
                _ = sleep_opt(self.read_pause.ends_at()), if !read => {}
                (i, m) = recv_any(&mut self.sockets, &mut self.next_socket), if read => {
                    steps = self.on_frames(i, m);
                }
            }
            // What this wake-up delivered goes out in one burst per
            // subscription (one wake of its reader).
            let tracker = &self.tracker;
            self.registry.flush(&|o| tracker.lowest_pending(o));
            // Only when a subscription asked: the watermark looks at every
            // lane of the origin for a pending repair.
            if self.registry.wants_watermarks() {
                if let Some((origin, epoch, through)) = self.watermark() {
                    self.registry.watermark(&origin, epoch, through);
                }
            }
            self.apply_effects().await;
            // One unit of cooperative budget per message taken (a batch
            // is up to 256): while the SUB always has data this loop must
            // still yield as often as one message per step would, else the
            // application's readers on the same workers starve (their
            // queues fill, they get closed as slow).
            for _ in 0..std::mem::replace(&mut steps, 1) {
                tokio::task::consume_budget().await;
            }
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
            Command::Watermarks { id } => self.registry.want_watermarks(id),
            Command::SetPatterns { id, set, reply } => self.set_patterns(id, set, reply),
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
        let live: Marks = self
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

    /// `Subscription::set_patterns`: the registry changes now; the reply
    /// waits for the marker that answers the prefixes written for it, or
    /// goes at once when no prefix changed and a session runs.
    fn set_patterns(
        &mut self,
        id: u64,
        set: Box<crate::subscriber::registry::PatternSet>,
        reply: oneshot::Sender<crate::PatternsApplied>,
    ) {
        let Some(changed) = self.registry.set_patterns(id, set) else {
            return; // gone: dropping the reply tells it
        };
        let now = self.slots.iter().find_map(|s| {
            s.session.as_ref().map(|x| crate::PatternsApplied {
                origin: x.origin.clone(),
                epoch: x.epoch,
                seq: s.complete_to,
            })
        });
        match now.filter(|_| !changed) {
            Some(applied) => {
                let _ = reply.send(applied);
            }
            None => self.applying.push(reply),
        }
    }

    fn on_tick(&mut self) {
        self.applying.retain(|r| !r.is_closed());
        self.registry.sweep();
        let limit = self.task.heartbeat_timeout;
        if self.read_pause.active() {
            // Unread sockets say nothing about the broadcaster: silence
            // counts from the end of the pause.
            let now = Instant::now();
            for slot in &mut self.slots {
                slot.last_traffic = now;
            }
        }
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let silent = slot.last_traffic.elapsed() > limit;
            if silent && slot.heard {
                slot.heard = false;
                self.task.replay.set_alive(i, false);
                tracing::warn!(endpoint = %slot.endpoint, "broadcaster silent for {limit:?}");
            }
            if silent && self.sockets[i].is_some() {
                // Connected at the TCP level but silent: start afresh.
                self.retry_later(i, "silence");
                self.slots[i].last_traffic = Instant::now();
            }
        }
        if self.heard && !self.slots.iter().any(|s| s.heard) {
            self.heard = false;
            self.connected.send_replace(false);
            let reason = format!("nothing heard from any broadcaster for {limit:?}");
            let _ = self.task.events.send(ClientEvent::Disconnected { reason });
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
