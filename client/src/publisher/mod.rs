//! The publisher task: drains the outbox into the broadcaster in use, keeps
//! every sent message until that broadcaster acknowledges it, and moves to
//! the next broadcaster (re-sending what is unacknowledged) when the one in
//! use fails.
//!
//! Every message gets a publisher seq (per client session, first 1, +1 per
//! message) in its version 2 metadata. A broadcaster drops a message whose
//! seq it already stamped and acknowledges, after each forwarder round, the
//! highest seq it stamped for the session (`_fanfare.ack.<session>`, read by
//! [`link::Link`]'s SUB socket). An ack confirms every message up to it.
//!
//! Queues and their full policy:
//! * the outbox (`outbox_capacity`): while connected a full outbox makes
//!   `publish` wait (backpressure); while disconnected it fails at once with
//!   [`PublishError::OutboxFull`];
//! * the unacknowledged window (also `outbox_capacity` messages): while it
//!   is full the task takes nothing more from the outbox (so the outbox
//!   fills, see above). At most 2 × `outbox_capacity` messages are held.
//!
//! The broadcaster in use counts as failed when a connect fails, a send does
//! not go through within `ack_timeout`, the oldest unacknowledged message
//! waits longer than `ack_timeout` without an ack moving on, or its SUB hears
//! nothing (not even a heartbeat) for `heartbeat_timeout`. Then the next
//! broadcaster of the list is tried (the same one again when there is only
//! one), with backoff after a whole round of failures, and every
//! unacknowledged message is re-sent there, in order — and so are the (at
//! most 1024) messages acknowledged within `heartbeat_timeout +
//! ack_timeout` before the failure was noticed: an ack says the broadcaster
//! stamped a message and queued it to its subscribers, and one killed right
//! after that never wrote it to them. A re-send through another broadcaster
//! (or a restarted one) gets a new stamp; subscribers drop the second copy
//! by `(session, publisher seq)`.

mod link;
mod unacked;

use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::meta::PublisherSeq;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeromq::ZmqMessage;

use crate::backoff::Backoff;
use crate::error::PublishError;
use crate::events::ClientEvent;
use crate::message::{Confirmation, Origins};
use crate::options::Endpoints;
use link::Link;
use unacked::{Sent, Unacked};

/// A message handed to the publisher task; it adds the metadata.
#[derive(Debug)]
pub(crate) struct Draft {
    pub(crate) topic: Bytes,
    pub(crate) payload: Bytes,
    pub(crate) published_us: u64,
    /// Answered when a broadcaster acknowledged it.
    pub(crate) confirm: Option<oneshot::Sender<Confirmation>>,
}

/// One item of the outbox.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Message(Draft),
    /// Answered once everything queued before it was acknowledged.
    Flush(oneshot::Sender<()>),
}

/// The sending side of the outbox.
#[derive(Debug, Clone)]
pub(crate) struct PublisherHandle {
    tx: mpsc::Sender<Outgoing>,
    connected: watch::Receiver<bool>,
    capacity: usize,
}

impl PublisherHandle {
    /// Queues a message (see the module docs for the full-outbox policy).
    pub(crate) async fn send(&self, msg: Draft) -> Result<(), PublishError> {
        let item = match self.tx.try_send(Outgoing::Message(msg)) {
            Ok(()) => {
                // `try_send` is outside Tokio's cooperative budget: without
                // this a publishing loop would never yield while the outbox
                // has room, starving the client's own tasks.
                tokio::task::consume_budget().await;
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(PublishError::Closed),
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        let full = PublishError::OutboxFull {
            capacity: self.capacity,
        };
        if !*self.connected.borrow() {
            return Err(full);
        }
        let mut connected = self.connected.clone();
        tokio::select! {
            permit = self.tx.reserve() => {
                permit.map_err(|_| PublishError::Closed)?.send(item);
                Ok(())
            }
            _ = connected.wait_for(|c| !*c) => Err(full),
        }
    }

    /// Waits (at most `limit`) until everything queued so far was
    /// acknowledged by a broadcaster. Returns false on timeout.
    pub(crate) async fn flush(&self, limit: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let done = async { self.tx.send(Outgoing::Flush(tx)).await.is_ok() && rx.await.is_ok() };
        tokio::time::timeout(limit, done).await.unwrap_or(false)
    }
}

/// Everything the task needs.
pub(crate) struct PublisherTask {
    pub broadcasters: Vec<Endpoints>,
    pub publisher_id: String,
    pub session: u64,
    pub ack_timeout: Duration,
    pub heartbeat_timeout: Duration,
    pub backoff: Backoff,
    pub connect_timeout: Duration,
    pub events: broadcast::Sender<ClientEvent>,
    /// On cancellation the task still sends what is queued and waits for its
    /// acks, for at most `drain_timeout`, then stops.
    pub shutdown: CancellationToken,
    pub drain_timeout: Duration,
    pub drain_deadline: Option<Instant>,
}

/// Creates the outbox and spawns the task that drains it.
pub(crate) fn spawn(task: PublisherTask, capacity: usize) -> PublisherHandle {
    let (tx, rx) = mpsc::channel(capacity);
    let (connected_tx, connected) = watch::channel(false);
    let run = Run {
        window: capacity,
        unacked: Unacked::default(),
        next_seq: 1,
        current: 0,
        failures: 0,
        rx_closed: false,
        origins: Origins::default(),
        connected: connected_tx,
        ack_topic: fanfare_protocol::ack::topic(task.session),
        task,
    };
    tokio::spawn(run.run(rx));
    PublisherHandle {
        tx,
        connected,
        capacity,
    }
}

/// The task's state.
struct Run {
    task: PublisherTask,
    window: usize,
    unacked: Unacked,
    next_seq: u64,
    /// Index of the broadcaster in use (or tried next).
    current: usize,
    /// Failures in a row (connects and links).
    failures: usize,
    rx_closed: bool,
    origins: Origins,
    connected: watch::Sender<bool>,
    ack_topic: String,
}

impl Run {
    async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>) {
        let period = (self.task.ack_timeout.min(self.task.heartbeat_timeout) / 4)
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut link: Option<Link> = None;
        loop {
            if self.task.drain_deadline.is_some() {
                let nothing_left = (self.rx_closed || rx.is_empty()) && self.unacked.is_empty();
                if nothing_left || self.past_deadline() {
                    return;
                }
            } else if self.rx_closed && self.unacked.is_empty() {
                return;
            }
            let Some(l) = link.as_mut() else {
                link = self.open().await;
                continue;
            };
            let room = self.unacked.len() < self.window && !self.rx_closed;
            let failed = tokio::select! {
                biased;
                _ = self.task.shutdown.cancelled(), if self.task.drain_deadline.is_none() => {
                    self.start_draining();
                    None
                }
                m = l.recv() => match m {
                    Ok(m) => {
                        if let Some(a) = l.on_frames(m, &mut self.origins) {
                            self.unacked.ack(&a, Instant::now());
                        }
                        None
                    }
                    Err(e) => Some(e.to_string()),
                },
                item = rx.recv(), if room => self.take(item, l).await,
                _ = tick.tick() => self.check(l),
            };
            if let Some(reason) = failed {
                link = None;
                self.fail(reason);
            }
        }
    }

    /// One outbox item; `Some(reason)` when the link failed.
    async fn take(&mut self, item: Option<Outgoing>, l: &mut Link) -> Option<String> {
        let d = match item {
            Some(Outgoing::Message(d)) => d,
            Some(Outgoing::Flush(answer)) => {
                self.unacked.flush(self.next_seq - 1, answer);
                return None;
            }
            None => {
                // Every handle is gone: wait for the acks, within the drain.
                self.rx_closed = true;
                self.start_draining();
                return None;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let meta = fanfare_protocol::meta::encode_seq(
            &self.task.publisher_id,
            b"",
            d.published_us,
            PublisherSeq {
                session: self.task.session,
                seq,
            },
        );
        let mut msg = ZmqMessage::from(d.topic);
        msg.push_back(Bytes::from(meta));
        msg.push_back(d.payload);
        let now = Instant::now();
        self.unacked.push(Sent {
            seq,
            msg: msg.clone(),
            confirm: d.confirm,
            sent_at: now,
        });
        l.send(msg, self.task.ack_timeout).await.err()
    }

    /// The periodic check of the link in use.
    fn check(&mut self, l: &Link) -> Option<String> {
        let now = Instant::now();
        if self.unacked.overdue(now, self.task.ack_timeout) {
            return Some(format!("no ack within {:?}", self.task.ack_timeout));
        }
        if now.saturating_duration_since(l.last_heard) > self.task.heartbeat_timeout {
            return Some(format!(
                "nothing heard for {:?}",
                self.task.heartbeat_timeout
            ));
        }
        None
    }

    fn fail(&mut self, reason: String) {
        let ep = &self.task.broadcasters[self.current].pull;
        tracing::warn!(%reason, endpoint = %ep, "publishing broadcaster failed; moving on");
        // What it acknowledged lately may not have reached its subscribers
        // (killed right after the ack): send that again too.
        let horizon = self.task.heartbeat_timeout + self.task.ack_timeout;
        let now = Instant::now();
        self.unacked
            .requeue_recent(now.checked_sub(horizon).unwrap_or(now));
        self.connected.send_replace(false);
        let _ = self
            .task
            .events
            .send(ClientEvent::PublisherDisconnected { reason });
        self.next_broadcaster();
    }

    fn next_broadcaster(&mut self) {
        self.failures += 1;
        self.current = (self.current + 1) % self.task.broadcasters.len().max(1);
    }

    /// Connects to the current broadcaster and re-sends what is
    /// unacknowledged; on failure moves to the next one (after a backoff
    /// delay once every broadcaster failed in a row).
    async fn open(&mut self) -> Option<Link> {
        let n = self.task.broadcasters.len().max(1);
        if self.failures >= n {
            let delay = self.task.backoff.next_delay();
            let deadline = self.task.drain_deadline;
            tokio::select! {
                _ = self.task.shutdown.cancelled(), if deadline.is_none() => self.start_draining(),
                _ = sleep_opt(deadline) => return None,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        let ep = self.task.broadcasters.get(self.current)?.clone();
        let opening = Link::open(
            ep.clone(),
            self.ack_topic.clone(),
            self.task.connect_timeout,
            self.task.heartbeat_timeout,
        );
        tokio::pin!(opening);
        let opened = loop {
            let deadline = self.task.drain_deadline;
            tokio::select! {
                r = &mut opening => break r,
                _ = self.task.shutdown.cancelled(), if deadline.is_none() => self.start_draining(),
                _ = sleep_opt(deadline) => return None,
            }
        };
        let mut l = match opened {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, endpoint = %ep.pull, "publisher connect failed");
                self.next_broadcaster();
                return None;
            }
        };
        let now = Instant::now();
        let limit = self.task.ack_timeout;
        let mut resent = Ok(());
        for s in self.unacked.iter_mut() {
            s.sent_at = now;
            resent = l.send(s.msg.clone(), limit).await;
            if resent.is_err() {
                break;
            }
        }
        if let Err(e) = resent {
            tracing::debug!(error = %e, endpoint = %ep.pull, "re-send failed");
            self.next_broadcaster();
            return None;
        }
        self.unacked.restart_clock(Instant::now());
        self.failures = 0;
        self.task.backoff.reset();
        self.connected.send_replace(true);
        tracing::debug!(endpoint = %ep.pull, resent = self.unacked.len(), "publishing through broadcaster");
        let _ = self.task.events.send(ClientEvent::PublisherConnected);
        Some(l)
    }

    fn start_draining(&mut self) {
        if self.task.drain_deadline.is_none() {
            self.task.drain_deadline = Some(Instant::now() + self.task.drain_timeout);
        }
    }

    fn past_deadline(&self) -> bool {
        self.task
            .drain_deadline
            .is_some_and(|d| Instant::now() >= d)
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
