//! The replay task: owns the DEALER socket to the replay endpoint and
//! serves requests one at a time.
//!
//! Every attempt has a deadline (`replay_timeout`). zmq.rs's DEALER does not
//! reconnect, so on a timeout or a socket error the socket is dropped and a
//! new one connected for the next attempt; a `busy` answer is retried after
//! a backoff. After `replay_attempts` attempts the request fails with
//! [`ReplayError::Unavailable`]: callers never hang. Requests wait in a
//! bounded queue (`QUEUE`); senders wait for room.

use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

use crate::backoff::Backoff;
use crate::error::ReplayError;

/// Requests waiting for the replay task.
const QUEUE: usize = 256;

/// A reply: its header and the `(topic, stamp, payload)` frames after it.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub header: ReplyHeader,
    pub frames: Vec<Bytes>,
}

struct Job {
    request: ReplayRequest,
    reply: oneshot::Sender<Result<RawReply, ReplayError>>,
}

/// Cloneable handle to one replay task (one broadcaster's replay endpoint);
/// [`crate::replay_sources::ReplayHandle`] chooses among them.
#[derive(Clone, Debug)]
pub(crate) struct SourceHandle {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("request", &self.request)
            .finish()
    }
}

impl SourceHandle {
    /// Sends a request (its `req_id` is replaced) and waits for the answer.
    pub(crate) async fn request(&self, request: ReplayRequest) -> Result<RawReply, ReplayError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job { request, reply: tx })
            .await
            .map_err(|_| ReplayError::Closed)?;
        rx.await.map_err(|_| ReplayError::Closed)?
    }
}

/// Settings of the replay task.
pub(crate) struct ReplayTask {
    pub endpoint: String,
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Backoff,
    pub shutdown: CancellationToken,
}

/// Spawns the replay task.
pub(crate) fn spawn(task: ReplayTask) -> SourceHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(task.run(rx));
    SourceHandle { tx }
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Zmq(#[from] zeromq::ZmqError),
    #[error("malformed reply: {0}")]
    Malformed(#[from] fanfare_protocol::replay::ReplayError),
    #[error("replay endpoint is busy")]
    Busy,
}

impl ReplayTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut dealer: Option<DealerSocket> = None;
        let mut next_id: u64 = 0;
        loop {
            let job = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                job = rx.recv() => match job { Some(j) => j, None => return },
            };
            if job.reply.is_closed() {
                continue;
            }
            let shutdown = self.shutdown.clone();
            let served = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.serve(&mut dealer, &mut next_id, job.request) => r,
            };
            let _ = job.reply.send(served);
        }
    }

    async fn serve(
        &mut self,
        dealer: &mut Option<DealerSocket>,
        next_id: &mut u64,
        mut request: ReplayRequest,
    ) -> Result<RawReply, ReplayError> {
        for attempt in 1..=self.attempts {
            *next_id += 1;
            request.req_id = Bytes::copy_from_slice(&next_id.to_be_bytes());
            let outcome = tokio::time::timeout(self.timeout, self.attempt(dealer, &request))
                .await
                .unwrap_or(Err(AttemptError::Timeout));
            match outcome {
                Ok(reply) => {
                    self.backoff.reset();
                    return Ok(reply);
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, endpoint = %self.endpoint, "replay attempt failed");
                    if !matches!(e, AttemptError::Busy) {
                        // zmq.rs DEALER does not reconnect: start afresh.
                        *dealer = None;
                    }
                    if attempt < self.attempts {
                        tokio::time::sleep(self.backoff.next_delay()).await;
                    }
                }
            }
        }
        tracing::warn!(endpoint = %self.endpoint, attempts = self.attempts, "replay endpoint unavailable");
        Err(ReplayError::Unavailable {
            attempts: self.attempts,
        })
    }

    async fn attempt(
        &self,
        dealer: &mut Option<DealerSocket>,
        request: &ReplayRequest,
    ) -> Result<RawReply, AttemptError> {
        let sock = match dealer {
            Some(s) => s,
            None => {
                let mut opts = SocketOptions::default();
                opts.connect_timeout(self.timeout);
                let mut s = DealerSocket::with_options(opts);
                s.connect(&self.endpoint).await?;
                dealer.insert(s)
            }
        };
        let msg = ZmqMessage::try_from(request.to_frames())
            .map_err(|_| zeromq::ZmqError::Other("empty request"))?;
        sock.send(msg).await?;
        loop {
            let frames = sock.recv().await?.into_vec();
            // Replies to earlier, timed-out requests are skipped.
            if frames.first() != Some(&request.req_id) {
                continue;
            }
            let header = ReplyHeader::from_frames(&frames)?;
            if header.status == Status::Busy {
                return Err(AttemptError::Busy);
            }
            let frames = frames
                .into_iter()
                .skip(fanfare_protocol::replay::REPLY_HEADER_FRAMES)
                .collect();
            return Ok(RawReply { header, frames });
        }
    }
}
