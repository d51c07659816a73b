//! The replay (history) endpoint: a ROUTER-compatible server. Each
//! connection reads one request at a time and answers it on the same
//! connection, so a slow or greedy requester only delays itself.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::history::{History, ReplyLimits};
use crate::listener::Conn;
use crate::metrics::Metrics;
use crate::zmtp::{encode_multipart, ReadError};

/// Largest frame of a replay request.
pub(crate) const MAX_REQUEST_FRAME: usize = 16 * 1024;
/// Frames kept per request (envelope + 7 fixed + 16 patterns, with room).
const MAX_REQUEST_FRAMES: usize = 32;

/// What the replay server shares with the rest of the broadcaster.
pub(crate) struct ReplayContext {
    /// History to answer from.
    pub(crate) history: Arc<RwLock<History>>,
    /// This broadcaster's id (requests with no origin mean this one).
    pub(crate) own_id: String,
    /// Reply size limits.
    pub(crate) limits: ReplyLimits,
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
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let count = tokio::select! {
            r = conn.reader.next_message(&mut frames, MAX_REQUEST_FRAMES) => r?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let Some(count) = count else { return Ok(()) };
        if count == 0 {
            if let Some(pong) = conn.reader.take_pong() {
                conn.writer.write_all(&pong).await?;
            }
            continue;
        }
        let received = Instant::now();
        out.clear();
        answer(&ctx, &frames, count, &mut out);
        conn.writer.write_all(&out).await?;
        ctx.metrics
            .replay_duration
            .observe(received.elapsed().as_secs_f64());
    }
}

/// Encodes the reply to one request into `out`.
fn answer(ctx: &ReplayContext, frames: &[Bytes], count: usize, out: &mut Vec<u8>) {
    // A REQ peer puts an empty delimiter first; echo it.
    let envelope = frames.first().is_some_and(Bytes::is_empty);
    let body = if envelope { &frames[1..] } else { frames };
    let req_id = body.first().cloned().unwrap_or_default();
    let parsed = if count > MAX_REQUEST_FRAMES {
        Err(fanfare_protocol::replay::ReplayError::Malformed(
            "too many frames",
        ))
    } else {
        ReplayRequest::from_frames(body)
    };
    let (header, msgs) = match parsed {
        Ok(req) => {
            ctx.metrics.replay_requests.inc();
            match ctx.history.read() {
                Ok(h) => h.query(&req, &ctx.own_id, ctx.limits),
                Err(_) => (status_only(Status::Busy, req.from), Vec::new()),
            }
        }
        Err(e) => {
            ctx.metrics.replay_bad_requests.inc();
            if ctx.metrics.log_allowed(crate::metrics::LogKind::Replay) {
                tracing::warn!(error = %e, "bad replay request");
            }
            (status_only(Status::BadRequest, 0), Vec::new())
        }
    };
    ctx.metrics.replay_messages.inc_by(msgs.len() as u64);
    let head = header.to_frames();
    let mut refs: Vec<&[u8]> = Vec::with_capacity(2 + head.len() + msgs.len() * 3);
    if envelope {
        refs.push(&[]);
    }
    refs.push(&req_id);
    refs.extend(head.iter().map(|b| &b[..]));
    for m in &msgs {
        refs.extend(m.iter().map(|b| &b[..]));
    }
    encode_multipart(out, &refs);
}

fn status_only(status: Status, next: u64) -> ReplyHeader {
    ReplyHeader {
        status,
        epoch: 0,
        oldest: 0,
        newest: 0,
        next,
    }
}
