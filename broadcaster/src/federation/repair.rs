//! A link's repair task: a ZMTP DEALER client of the peer's replay endpoint
//! (our own `zmtp/` code). For each [`RepairRequest`] it asks for the range
//! in rounds (at most [`MAX_ROUNDS`], each reply bounded in frames and
//! bytes), hands the messages to the forwarder as repaired, says which seqs
//! the peer no longer holds ([`FromLink::Unrecoverable`]) and always ends
//! with [`FromLink::RepairDone`]. A request is bounded by
//! [`REPAIR_DEADLINE`]; a failed connection is dropped and made again on
//! the next request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status, REPLY_HEADER_FRAMES};
use fanfare_protocol::stamp::StampRef;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{link, FromLink, RepairRequest, Shared};
use crate::liveness::Activity;
use crate::metrics::LogKind;
use crate::zmtp::{encode_multipart, handshake, FrameReader, SocketKind, Timeouts, ZmtpFrame};

/// Whole bound of one repair request.
const REPAIR_DEADLINE: Duration = Duration::from_secs(10);
/// Reply rounds per request (each up to the peer's reply limit).
const MAX_ROUNDS: usize = 16;
/// Most frames read of one reply (header + 3 × 4096 messages).
const MAX_REPLY_FRAMES: usize = REPLY_HEADER_FRAMES + 3 * 4096;
/// Most bytes read of one reply.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
/// Wait after a `busy` answer.
const BUSY_WAIT: Duration = Duration::from_millis(50);

/// A DEALER connection to the peer's replay endpoint.
struct Dealer {
    reader: FrameReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
}

/// Serves link `idx`'s repair requests until shutdown.
pub(super) async fn run(
    shared: Arc<Shared>,
    idx: usize,
    mut rx: mpsc::Receiver<RepairRequest>,
    tx: mpsc::Sender<FromLink>,
) {
    let mut conn: Option<Dealer> = None;
    loop {
        let req = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => return },
            () = shared.shutdown.cancelled() => return,
        };
        let m = shared.link(idx);
        m.repairs.inc();
        let done = tokio::time::timeout(REPAIR_DEADLINE, async {
            match &req.direct {
                // A one-off connection to the origin itself.
                Some(endpoint) => {
                    let mut direct = Some(connect(&shared, endpoint, shared.max_payload).await?);
                    repair(&shared, idx, &mut direct, &req, &tx).await
                }
                None => repair(&shared, idx, &mut conn, &req, &tx).await,
            }
        });
        let outcome = tokio::select! {
            r = done => r.unwrap_or_else(|_| Err("repair timed out".into())),
            () = shared.shutdown.cancelled() => return,
        };
        tracing::debug!(?req, ?outcome, "federation repair");
        if let Err(why) = outcome {
            if req.direct.is_none() {
                conn = None;
            }
            if shared.metrics.log_allowed(LogKind::Federation) {
                tracing::warn!(
                    link = %m.name, origin = %req.origin, from = req.from, to = req.to, %why,
                    "federation repair failed"
                );
            }
        }
        let done = FromLink::RepairDone {
            link: idx,
            origin: req.origin,
            epoch: req.epoch,
            direct: req.direct.is_some(),
        };
        if tx.send(done).await.is_err() {
            return;
        }
    }
}

/// Fetches `req` from the peer in rounds.
async fn repair(
    shared: &Shared,
    idx: usize,
    conn: &mut Option<Dealer>,
    req: &RepairRequest,
    tx: &mpsc::Sender<FromLink>,
) -> Result<(), String> {
    let m = shared.link(idx);
    let max_payload = shared.max_payload;
    if conn.is_none() {
        let endpoint = m
            .replay
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .ok_or("the peer's replay endpoint is not known yet")?;
        *conn = Some(connect(shared, &endpoint, max_payload).await?);
    }
    let Some(d) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let mut from = req.from;
    let mut frames = Vec::new();
    let mut round = 0;
    while round < MAX_ROUNDS && from <= req.to {
        let ask = ReplayRequest {
            req_id: Bytes::copy_from_slice(&(round as u32).to_be_bytes()),
            origin: req.origin.clone(),
            epoch: req.epoch,
            from,
            to: req.to,
            lane: None,
            patterns: Vec::new(),
        };
        let parts = ask.to_frames();
        let refs: Vec<&[u8]> = parts.iter().map(|b| &b[..]).collect();
        let mut out = Vec::new();
        encode_multipart(&mut out, &refs);
        d.writer.write_all(&out).await.map_err(|e| e.to_string())?;
        d.writer.flush().await.map_err(|e| e.to_string())?;
        read_reply(&mut d.reader, &mut frames).await?;
        let h = ReplyHeader::from_frames(&frames).map_err(|e| e.to_string())?;
        tracing::debug!(?h, frames = frames.len(), from, "federation repair reply");
        match h.status {
            Status::Ok => {}
            Status::Busy => {
                tokio::time::sleep(BUSY_WAIT).await;
                round += 1;
                continue;
            }
            Status::UnknownOrigin | Status::UnknownEpoch => {
                // The peer holds nothing of this (origin, epoch).
                let lost = FromLink::Unrecoverable {
                    link: idx,
                    origin: req.origin.clone(),
                    epoch: req.epoch,
                    to: req.to,
                    direct: req.direct.is_some(),
                };
                tx.send(lost).await.map_err(|_| "forwarder gone")?;
                return Ok(());
            }
            other => return Err(format!("peer answered {other:?}")),
        }
        if h.epoch != req.epoch {
            return Err("peer answered for another epoch".into());
        }
        if h.oldest > from {
            // The peer's history starts after `from`: that much is lost there.
            let to = (h.oldest - 1).min(req.to);
            let lost = FromLink::Unrecoverable {
                link: idx,
                origin: req.origin.clone(),
                epoch: req.epoch,
                to,
                direct: req.direct.is_some(),
            };
            tx.send(lost).await.map_err(|_| "forwarder gone")?;
        }
        let mut msgs = Vec::with_capacity((frames.len() - REPLY_HEADER_FRAMES) / 3);
        for t in frames[REPLY_HEADER_FRAMES..].chunks_exact(3) {
            let Ok(Some(link::Checked {
                msg,
                heartbeat: None,
                ..
            })) = link::check(t, 3, max_payload)
            else {
                m.invalid.inc();
                continue;
            };
            let ours = StampRef::decode(&msg.stamp)
                .is_ok_and(|s| s.origin == req.origin && s.epoch == req.epoch);
            if ours {
                msgs.push(msg);
            } else {
                m.invalid.inc();
            }
        }
        if !msgs.is_empty() {
            let batch = FromLink::Messages {
                link: idx,
                session: 0,
                msgs,
                repaired: true,
            };
            tx.send(batch).await.map_err(|_| "forwarder gone")?;
        }
        // `next` always moves forward on `ok`; anything else ends the loop.
        if h.next <= from || h.next > h.newest {
            break;
        }
        from = h.next;
        round += 1;
    }
    Ok(())
}

/// Connects and does the DEALER handshake.
async fn connect(shared: &Shared, endpoint: &str, max_payload: usize) -> Result<Dealer, String> {
    let addr = crate::endpoint::tcp_host_port(endpoint).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let max_frame = max_payload.saturating_add(4096);
    let mut reader = FrameReader::new(r, max_frame);
    let mut writer = BufWriter::new(w);
    handshake(&mut reader, &mut writer, SocketKind::Dealer, max_frame)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    reader.set_timeouts(
        Timeouts {
            frame: shared.timeouts.frame,
            idle: Some(REPAIR_DEADLINE),
        },
        Activity::new(),
    );
    Ok(Dealer { reader, writer })
}

/// Reads one reply's frames, bounded in count and bytes (commands between
/// frames are skipped).
async fn read_reply(
    reader: &mut FrameReader<OwnedReadHalf>,
    frames: &mut Vec<Bytes>,
) -> Result<(), String> {
    frames.clear();
    let mut bytes = 0usize;
    loop {
        match reader.next_frame().await.map_err(|e| e.to_string())? {
            None => return Err("peer closed the replay connection".into()),
            Some(ZmtpFrame::Command(_)) => {}
            Some(ZmtpFrame::Message { more, body }) => {
                bytes = bytes.saturating_add(body.len());
                if frames.len() >= MAX_REPLY_FRAMES || bytes > MAX_REPLY_BYTES {
                    return Err("reply over the repair bounds".into());
                }
                frames.push(body);
                if !more {
                    return Ok(());
                }
            }
        }
    }
}
