//! The replay (history) endpoint: a ROUTER-compatible server. Each
//! connection reads one request at a time and answers it on the same
//! connection, so a slow or greedy requester only delays itself.
//!
//! The work of one request is bounded and kept off the hot path:
//! * `scan` — at most `replay_scan_entries` entries (and
//!   `replay_scan_matches` entry × pattern tests, and `replay_scan_ms`) per
//!   reply; history's read lock is held only to copy those entries out, and
//!   the matching runs on a blocking thread. At most `replay_workers` scans
//!   run at once; a request waits [`WORKER_WAIT`] for one, else `busy`.
//! * `reply` — the reply is streamed, every write under
//!   `replay_write_timeout_ms`; all replies being written hold at most
//!   `replay_inflight_bytes`, past which a request is answered `busy`.
//! * `fair` — all connections of one peer address together get at most
//!   `replay_workers - 1` scans at once (at least 1) and half the in-flight
//!   bytes: one peer cannot take the endpoint from the others.

mod fair;
mod reply;
mod scan;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fanfare_protocol::replay::{ReplayError, ReplayRequest, Status};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub(crate) use fair::PeerShares;
pub(crate) use reply::InFlight;
pub(crate) use scan::{ReplyLimits, ScanBudget};

use crate::history::History;
use crate::listener::Conn;
use crate::metrics::{Busy, LogKind, Metrics};
use crate::zmtp::ReadError;
use reply::{Reply, WriteError};
use scan::{status_header, Scanned};

/// Largest frame of a replay request (a pattern or topic is at most 256
/// bytes, an id or origin 64; the READY command must fit too).
pub(crate) const MAX_REQUEST_FRAME: usize = 4 * 1024;
/// Frames kept per request (envelope + 7 fixed + 64 patterns, with room);
/// with [`MAX_REQUEST_FRAME`], a connection holds at most 320 KiB of request.
const MAX_REQUEST_FRAMES: usize = 80;
/// How long a request waits for a free scan worker before `busy`.
pub(crate) const WORKER_WAIT: Duration = Duration::from_millis(250);

/// What the replay server shares with the rest of the broadcaster.
pub(crate) struct ReplayContext {
    /// History to answer from.
    pub(crate) history: Arc<RwLock<History>>,
    /// This broadcaster's id (requests with no origin mean this one).
    pub(crate) own_id: String,
    /// Reply size limits.
    pub(crate) limits: ReplyLimits,
    /// Work allowed per reply.
    pub(crate) budget: ScanBudget,
    /// Scans running at once (`replay_workers` permits).
    pub(crate) workers: Arc<Semaphore>,
    /// Bytes held by replies being written.
    pub(crate) inflight: Arc<InFlight>,
    /// Each peer address's share of the workers and of the bytes.
    pub(crate) peers: Arc<PeerShares>,
    /// Deadline of each write.
    pub(crate) write_timeout: Duration,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
}

/// Serves one DEALER/REQ peer.
pub(crate) async fn serve(
    mut conn: Conn,
    ctx: Arc<ReplayContext>,
    shutdown: CancellationToken,
) -> Result<(), ReadError> {
    let mut frames = Vec::with_capacity(8);
    let timeout = ctx.write_timeout;
    let member = ctx.peers.join(conn.peer.ip());
    loop {
        let count = tokio::select! {
            r = conn.reader.next_message(&mut frames, MAX_REQUEST_FRAMES) => r?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let Some(count) = count else { return Ok(()) };
        if count == 0 {
            if let Some(pong) = conn.reader.take_pong() {
                let sent = reply::write_raw(&mut conn.writer, &pong, timeout);
                if !deliver(&ctx, conn.peer, &shutdown, sent).await? {
                    return Ok(());
                }
            }
            continue;
        }
        let received = Instant::now();
        let r = answer(&ctx, member.share(), &frames, count).await;
        frames.clear();
        let sent = reply::write(&mut conn.writer, &r, timeout);
        if !deliver(&ctx, conn.peer, &shutdown, sent).await? {
            return Ok(());
        }
        let m = &ctx.metrics;
        m.replay_messages.inc_by(r.messages.len() as u64);
        m.replay_duration.observe(received.elapsed().as_secs_f64());
    }
}

/// Runs a write; `Ok(false)` when the connection must end (the peer
/// stalled, counted, or shutdown).
async fn deliver(
    ctx: &ReplayContext,
    peer: std::net::SocketAddr,
    shutdown: &CancellationToken,
    write: impl Future<Output = Result<(), WriteError>>,
) -> Result<bool, ReadError> {
    let result = tokio::select! {
        r = write => r,
        _ = shutdown.cancelled() => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(WriteError::Stalled) => {
            ctx.metrics.replay.write_timeouts.inc();
            if ctx.metrics.log_allowed(LogKind::Replay) {
                tracing::warn!(%peer, "replay peer stopped reading; disconnected");
            }
            Ok(false)
        }
        Err(WriteError::Io(e)) => Err(e.into()),
    }
}

/// Computes the reply to one request (a `busy` one when over a limit).
async fn answer(
    ctx: &ReplayContext,
    share: Option<&fair::Share>,
    frames: &[Bytes],
    count: usize,
) -> Reply {
    // A REQ peer puts an empty delimiter first; echo it.
    let envelope = frames.first().is_some_and(Bytes::is_empty);
    let body = if envelope { &frames[1..] } else { frames };
    let req_id = body.first().cloned().unwrap_or_default();
    let parsed = if count > MAX_REQUEST_FRAMES {
        Err(ReplayError::Malformed("too many frames"))
    } else {
        ReplayRequest::from_frames(body)
    };
    let reply = |s: Scanned| Reply {
        envelope,
        req_id: req_id.clone(),
        header: s.header,
        bytes: s.bytes,
        messages: s.messages,
        held: None,
    };
    let req = match parsed {
        Ok(req) => req,
        Err(e) => {
            ctx.metrics.replay_bad_requests.inc();
            if ctx.metrics.log_allowed(LogKind::Replay) {
                tracing::warn!(error = %e, "bad replay request");
            }
            return reply(Scanned::status_only(status_header(Status::BadRequest, 0)));
        }
    };
    ctx.metrics.replay_requests.inc();
    let from = req.from;
    let busy = |why: Busy| {
        ctx.metrics.replay.busy(why);
        reply(Scanned::status_only(status_header(Status::Busy, from)))
    };
    let scanned = match scan_off_the_workers(ctx, share, req).await {
        Some(s) => s,
        None => return busy(Busy::Workers),
    };
    let m = &ctx.metrics.replay;
    m.scan_cut.inc_by(u64::from(scanned.budget_cut));
    m.empty_ranges.inc_by(u64::from(scanned.empty_range));
    if scanned.messages.is_empty() {
        return reply(scanned);
    }
    // The peer's share first, then the global budget.
    let own = match share {
        Some(s) => match s.bytes.try_reserve(scanned.bytes) {
            Some(r) => Some(r),
            None => return busy(Busy::Bytes),
        },
        None => None,
    };
    let Some(held) = ctx.inflight.try_reserve(scanned.bytes) else {
        return busy(Busy::Bytes);
    };
    Reply {
        held: Some((held, own)),
        ..reply(scanned)
    }
}

/// Runs the scan on a blocking thread once the peer's share and a worker
/// permit are free (waiting at most [`WORKER_WAIT`] for both); `None` when
/// they were not.
async fn scan_off_the_workers(
    ctx: &ReplayContext,
    share: Option<&fair::Share>,
    req: ReplayRequest,
) -> Option<Scanned> {
    let deadline = tokio::time::Instant::now() + WORKER_WAIT;
    let own = match share {
        Some(s) => Some(
            tokio::time::timeout_at(deadline, s.scans.clone().acquire_owned())
                .await
                .ok()?
                .ok()?,
        ),
        None => None,
    };
    let permit = tokio::time::timeout_at(deadline, ctx.workers.clone().acquire_owned())
        .await
        .ok()?
        .ok()?;
    let history = ctx.history.clone();
    let origin = if req.origin.is_empty() {
        ctx.own_id.clone()
    } else {
        req.origin.clone()
    };
    let (limits, budget) = (ctx.limits, ctx.budget);
    let metrics = ctx.metrics.clone();
    let job = tokio::task::spawn_blocking(move || {
        let _permits = (permit, own);
        let s = scan::run(&history, &origin, &req, limits, budget);
        metrics.replay.scanned.inc_by(s.examined as u64);
        s
    });
    match job.await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "replay scan failed");
            None
        }
    }
}
