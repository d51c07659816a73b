//! The publisher task: owns the PUSH socket, drains the outbox into it and
//! reconnects when the broadcaster goes away.
//!
//! zmq.rs's PUSH neither reconnects nor queues without a peer: a send then
//! fails and hands the message back (`ReturnToSender`). So the outbox is
//! ours: a bounded channel of `outbox_capacity` messages between
//! [`PublisherHandle`] and this task. While connected, a full outbox makes
//! `publish` wait (backpressure); while disconnected it fails at once with
//! [`PublishError::OutboxFull`]. The task keeps a copy of the message it is
//! sending and resends it on the next socket when the send fails, so
//! per-publisher order is kept and nothing handed to this task is dropped
//! (except what the old connection had already taken into its kernel
//! buffers when the broadcaster died: PUSH has no acknowledgements).

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeromq::{PushSocket, Socket, SocketOptions, SocketSend, ZmqError, ZmqMessage};

use crate::backoff::Backoff;
use crate::error::PublishError;
use crate::events::ClientEvent;

/// One item of the outbox.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// `[topic, meta, payload]`.
    Message(ZmqMessage),
    /// Answered once everything queued before it was handed to the socket.
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
    pub(crate) async fn send(&self, msg: ZmqMessage) -> Result<(), PublishError> {
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

    /// Waits (at most `limit`) until everything queued so far was handed to
    /// the socket. Returns false on timeout.
    pub(crate) async fn flush(&self, limit: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let done = async { self.tx.send(Outgoing::Flush(tx)).await.is_ok() && rx.await.is_ok() };
        tokio::time::timeout(limit, done).await.unwrap_or(false)
    }
}

/// Everything the task needs.
pub(crate) struct PublisherTask {
    pub endpoint: String,
    pub backoff: Backoff,
    pub connect_timeout: Duration,
    pub events: broadcast::Sender<ClientEvent>,
    /// On cancellation the task still sends what is queued, for at most
    /// `drain_timeout`, then stops.
    pub shutdown: CancellationToken,
    pub drain_timeout: Duration,
    pub drain_deadline: Option<Instant>,
}

/// Creates the outbox and spawns the task that drains it.
pub(crate) fn spawn(task: PublisherTask, capacity: usize) -> PublisherHandle {
    let (tx, rx) = mpsc::channel(capacity);
    let (connected_tx, connected) = watch::channel(false);
    tokio::spawn(task.run(rx, connected_tx));
    PublisherHandle {
        tx,
        connected,
        capacity,
    }
}

impl PublisherTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>, connected: watch::Sender<bool>) {
        let mut socket: Option<PushSocket> = None;
        // A message whose send failed: it goes first on the next socket.
        let mut retry: Option<ZmqMessage> = None;
        loop {
            let Some(sock) = socket.as_mut() else {
                match self.connect().await {
                    Some(s) => {
                        socket = Some(s);
                        connected.send_replace(true);
                        let _ = self.events.send(ClientEvent::PublisherConnected);
                    }
                    None if self.past_deadline() => return,
                    None => {}
                }
                continue;
            };
            let msg = match retry.take() {
                Some(m) => m,
                None => {
                    let item = if self.drain_deadline.is_some() {
                        // Shutting down: send what is queued, then stop.
                        match rx.try_recv() {
                            Ok(item) => Some(item),
                            Err(_) => return,
                        }
                    } else {
                        tokio::select! {
                            biased;
                            _ = self.shutdown.cancelled() => {
                                self.start_draining();
                                continue;
                            }
                            item = rx.recv() => item,
                        }
                    };
                    match item {
                        Some(Outgoing::Message(m)) => m,
                        Some(Outgoing::Flush(ack)) => {
                            let _ = ack.send(());
                            continue;
                        }
                        None => return,
                    }
                }
            };
            let copy = msg.clone();
            let sent = match self.drain_deadline {
                Some(d) => match tokio::time::timeout_at(d, sock.send(msg)).await {
                    Ok(r) => r,
                    Err(_) => return,
                },
                None => sock.send(msg).await,
            };
            if let Err(e) = sent {
                let reason = e.to_string();
                retry = Some(match e {
                    ZmqError::ReturnToSender { message, .. } => message,
                    _ => copy,
                });
                tracing::warn!(error = %reason, endpoint = %self.endpoint, "publish failed; reconnecting");
                socket = None;
                connected.send_replace(false);
                let _ = self
                    .events
                    .send(ClientEvent::PublisherDisconnected { reason });
            }
        }
    }

    fn start_draining(&mut self) {
        if self.drain_deadline.is_none() {
            self.drain_deadline = Some(Instant::now() + self.drain_timeout);
        }
    }

    fn past_deadline(&self) -> bool {
        self.drain_deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Connects a fresh PUSH socket, retrying with backoff. `None` when
    /// shutdown starts (then retried until the drain deadline) or the drain
    /// deadline passed.
    async fn connect(&mut self) -> Option<PushSocket> {
        loop {
            if self.past_deadline() {
                return None;
            }
            let mut opts = SocketOptions::default();
            opts.connect_timeout(self.connect_timeout);
            let mut s = PushSocket::with_options(opts);
            let deadline = self.drain_deadline;
            let attempt = tokio::select! {
                _ = self.shutdown.cancelled(), if deadline.is_none() => {
                    self.start_draining();
                    return None;
                }
                _ = sleep_opt(deadline) => return None,
                r = s.connect(&self.endpoint) => r,
            };
            match attempt {
                Ok(()) => {
                    self.backoff.reset();
                    return Some(s);
                }
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    tracing::debug!(error = %e, endpoint = %self.endpoint, ?delay, "push connect failed");
                    let deadline = self.drain_deadline;
                    tokio::select! {
                        _ = self.shutdown.cancelled(), if deadline.is_none() => {
                            self.start_draining();
                            return None;
                        }
                        _ = sleep_opt(deadline) => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
