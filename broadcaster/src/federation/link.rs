//! One federation link: connects out to a peer's PUB as a ZMTP SUB (our
//! own `zmtp/` code: greeting, READY as SUB, frame limit, frame deadline,
//! idle bound), announces interest and subscribes as the relay's plan says
//! (and follows its changes), validates what comes and hands it to the
//! forwarder in batches. Reconnects with bounded backoff (100 ms doubling
//! to 5 s, reset after a session that brought messages); a peer silent for
//! the stall bound (no heartbeat) is reconnected. Learns the peer's origin
//! and replay endpoint from its hop-0 heartbeats; stops for good on a
//! self-link.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::heartbeat::Heartbeat;
use fanfare_protocol::stamp::{self, StampRef};
use fanfare_protocol::{topic, HEARTBEAT_PREFIX};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::interest::Plan;
use super::{FromLink, Linked, Shared};
use crate::config::PeerConfig;
use crate::liveness::Activity;
use crate::metrics::{LinkMetrics, LinkState, LogKind};
use crate::zmtp::{
    encode_multipart, handshake, pong_for, FrameReader, ReadError, SocketKind, Timeouts, ZmtpFrame,
};

/// Most messages per batch to the forwarder.
const MAX_BATCH: usize = 512;
/// Connect and handshake bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Room for the stamp and topic beside the payload in a frame.
const FRAME_ROOM: usize = 4096;

/// How a session ended.
enum End {
    /// Shutdown, or the forwarder is gone.
    Stop,
    /// The peer is this broadcaster.
    SelfLink,
    /// The connection failed or ended; reconnect.
    Lost(String),
}

/// Runs link `idx` until shutdown (or a self-link).
pub(super) async fn run(
    shared: Arc<Shared>,
    idx: usize,
    peer: PeerConfig,
    tx: mpsc::Sender<FromLink>,
) {
    let m = shared.link(idx);
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        m.state.set(LinkState::Connecting as u64);
        if !first {
            m.reconnects.inc();
        }
        first = false;
        let before = m.messages_in.get() + m.heartbeats_in.get();
        let end = tokio::select! {
            e = session(&shared, idx, &peer, &tx) => e,
            () = shared.shutdown.cancelled() => End::Stop,
        };
        match end {
            End::Stop => return,
            End::SelfLink => {
                m.state.set(LinkState::Stopped as u64);
                return;
            }
            End::Lost(why) => {
                if shared.metrics.log_allowed(LogKind::Federation) {
                    tracing::warn!(link = %m.name, %why, "federation link lost; reconnecting");
                }
            }
        }
        if m.messages_in.get() + m.heartbeats_in.get() > before {
            backoff = MIN_BACKOFF;
        }
        // ±25 % jitter, so links to one restarted peer do not reconnect in step.
        let jitter = 0.75 + f64::from(stamp::now_us() as u32 % 1000) / 2000.0;
        tokio::select! {
            () = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
            () = shared.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection to the peer.
async fn session(
    shared: &Shared,
    idx: usize,
    peer: &PeerConfig,
    tx: &mpsc::Sender<FromLink>,
) -> End {
    let m = shared.link(idx);
    let max_payload = peer.max_payload.unwrap_or(shared.max_payload);
    let max_frame = max_payload.saturating_add(FRAME_ROOM);
    let addr = match crate::endpoint::tcp_host_port(&peer.publish) {
        Ok(a) => a,
        Err(e) => return End::Lost(e.to_string()),
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return End::Lost(format!("connect: {e}")),
        Err(_) => return End::Lost("connect timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = FrameReader::new(r, max_frame);
    let mut writer = BufWriter::new(w);
    let shake = handshake(&mut reader, &mut writer, SocketKind::Sub, max_frame);
    match tokio::time::timeout(CONNECT_TIMEOUT, shake).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return End::Lost(format!("handshake: {e}")),
        Err(_) => return End::Lost("handshake timed out".into()),
    }
    reader.set_timeouts(
        Timeouts {
            frame: shared.timeouts.frame,
            idle: Some(shared.stall),
        },
        Activity::new(),
    );
    let mut subs = Subscriptions::default();
    let plan = shared.plan.borrow().clone();
    if let Err(e) = subs.apply(&mut writer, &plan).await {
        return End::Lost(format!("subscribe: {e}"));
    }
    m.interest.set(plan.data.len() as u64);
    let mut plans = shared.plan.clone();
    plans.mark_unchanged();
    m.state.set(LinkState::Up as u64);
    tracing::info!(link = %m.name, endpoint = %peer.publish, "federation link up");
    let session = m.reconnects.get() + 1;
    let mut frames: Vec<Bytes> = Vec::with_capacity(4);
    let mut count = 0usize;
    let mut batch: Vec<Linked> = Vec::with_capacity(MAX_BATCH);
    let mut lag_us = None;
    // The stall bound is about heartbeats, not bytes: a peer that stopped
    // sending us data and heartbeats (e.g. it cut this link off after its
    // queue overflowed) may still send other frames (ZMTP commands, acks
    // our interest matched), which keep the reader's idle timer quiet.
    let mut last_heartbeat = tokio::time::Instant::now();
    loop {
        if last_heartbeat.elapsed() >= shared.stall {
            return End::Lost(format!("no heartbeat for {:?}: peer stalled", shared.stall));
        }
        if !reader.has_buffered_message() {
            if let Some(l) = lag_us.take() {
                m.lag.observe(l as f64 / 1e6);
            }
            if !flush(tx, idx, session, &mut batch).await {
                return End::Stop;
            }
        }
        // `next_frame` is cancel-safe (a frame is taken whole or not at
        // all); the message is assembled here.
        let frame = tokio::select! {
            f = reader.next_frame() => f,
            changed = plans.changed() => {
                if changed.is_err() {
                    return End::Stop;
                }
                let plan = plans.borrow_and_update().clone();
                if let Err(e) = subs.apply(&mut writer, &plan).await {
                    return End::Lost(format!("subscribe: {e}"));
                }
                m.interest.set(plan.data.len() as u64);
                continue;
            }
        };
        let (more, body) = match frame {
            Ok(Some(ZmtpFrame::Message { more, body })) => (more, body),
            Ok(Some(ZmtpFrame::Command(body))) => {
                if let Some(pong) = pong_for(&body) {
                    if writer.write_all(&pong).await.is_err() || writer.flush().await.is_err() {
                        return End::Lost("write failed".into());
                    }
                }
                continue;
            }
            Ok(None) => return End::Lost("peer closed the connection".into()),
            Err(ReadError::Idle(d)) => {
                return End::Lost(format!("no heartbeat for {d:?}: peer stalled"));
            }
            Err(e) => {
                // Oversize frames, bad flags, the frame deadline: the
                // connection is cut like any exposed socket's peer.
                m.invalid.inc();
                return End::Lost(e.to_string());
            }
        };
        count += 1;
        if frames.len() < 3 {
            frames.push(body);
        }
        if more {
            continue;
        }
        let n = std::mem::take(&mut count);
        let checked = check(&frames, n, max_payload);
        frames.clear();
        match checked {
            Ok(Some(Checked {
                msg,
                heartbeat,
                stamped_us,
            })) => {
                if let Some(end) = learn(shared, idx, &msg, heartbeat.as_ref()) {
                    return end;
                }
                if heartbeat.is_some() {
                    m.heartbeats_in.inc();
                    last_heartbeat = tokio::time::Instant::now();
                } else {
                    m.messages_in.inc();
                    m.bytes_in.inc_by(msg.payload.len() as u64);
                    let l = stamp::now_us().saturating_sub(stamped_us);
                    m.lag_last_us.set(l);
                    lag_us = Some(l);
                }
                batch.push(msg);
            }
            // Acks are for this peer's own publishers: never relayed.
            Ok(None) => {}
            Err(why) => {
                m.invalid.inc();
                if shared.metrics.log_allowed(LogKind::Federation) {
                    tracing::warn!(link = %m.name, reason = why, "federation message dropped");
                }
            }
        }
        if batch.len() >= MAX_BATCH && !flush(tx, idx, session, &mut batch).await {
            return End::Stop;
        }
    }
}

/// What one session has subscribed to and announced at the peer.
#[derive(Default)]
struct Subscriptions {
    data: BTreeSet<Bytes>,
    announced: HashMap<String, u64>,
}

impl Subscriptions {
    /// Sends what `plan` adds or removes: announcements first (so the peer
    /// knows us for a link before our data prefixes arrive), then data
    /// SUBSCRIBEs and CANCELs.
    async fn apply<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        plan: &Plan,
    ) -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut msg = Vec::new();
        for (who, version, body) in plan.announcements.iter() {
            if self.announced.get(who) != Some(version) {
                msg.clear();
                msg.push(1);
                msg.extend_from_slice(body);
                encode_multipart(&mut out, &[&msg]);
                self.announced.insert(who.clone(), *version);
            }
        }
        self.announced
            .retain(|who, _| plan.announcements.iter().any(|(w, _, _)| w == who));
        for p in plan.data.difference(&self.data) {
            msg.clear();
            msg.push(1);
            msg.extend_from_slice(p);
            encode_multipart(&mut out, &[&msg]);
        }
        for p in self.data.difference(&plan.data) {
            msg.clear();
            msg.push(0);
            msg.extend_from_slice(p);
            encode_multipart(&mut out, &[&msg]);
        }
        self.data = (*plan.data).clone();
        if !out.is_empty() {
            w.write_all(&out).await?;
            w.flush().await?;
        }
        Ok(())
    }
}

/// Sends the batch; false if the forwarder is gone.
async fn flush(
    tx: &mpsc::Sender<FromLink>,
    link: usize,
    session: u64,
    batch: &mut Vec<Linked>,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let hint = batch.len().next_power_of_two().min(MAX_BATCH);
    let msgs = std::mem::replace(batch, Vec::with_capacity(hint));
    tx.send(FromLink::Messages {
        link,
        session,
        msgs,
        repaired: false,
    })
    .await
    .is_ok()
}

/// A peer's message that passed [`check`].
#[derive(Debug)]
pub(super) struct Checked {
    pub(super) msg: Linked,
    /// Its decoded payload, for a heartbeat.
    pub(super) heartbeat: Option<Heartbeat>,
    /// When its origin stamped it (µs since the Unix epoch).
    pub(super) stamped_us: u64,
}

/// Validates one egress message of a peer: `[topic, stamp, payload]`, a
/// valid topic (reserved only for a heartbeat of the stamp's origin), a
/// stamp that decodes with seq ≥ 1 (data), a payload within the bound.
/// `Ok(None)` for an ack: valid, but local to the peer (never relayed, no
/// error).
pub(super) fn check(
    frames: &[Bytes],
    count: usize,
    max_payload: usize,
) -> Result<Option<Checked>, &'static str> {
    let [t, s, p] = frames else {
        return Err("frame count");
    };
    if count != 3 {
        return Err("frame count");
    }
    if p.len() > max_payload {
        return Err("oversize payload");
    }
    let st = StampRef::decode(s).map_err(|_| "bad stamp")?;
    if st.is_ack() {
        return Ok(None);
    }
    let heartbeat = if st.is_heartbeat() {
        let name = t
            .strip_prefix(HEARTBEAT_PREFIX.as_bytes())
            .ok_or("heartbeat on a non-heartbeat topic")?;
        if name != st.origin.as_bytes() {
            return Err("heartbeat topic does not name its origin");
        }
        Some(Heartbeat::decode(p).map_err(|_| "bad heartbeat")?)
    } else {
        topic::validate(t).map_err(|_| "bad topic")?;
        if st.seq == 0 || st.lane_seq == 0 || st.lane_seq > st.seq {
            return Err("bad seq");
        }
        if st.lane != stamp::lane_of(t) {
            return Err("lane does not match topic");
        }
        None
    };
    let msg = Linked {
        topic: t.clone(),
        stamp: s.clone(),
        payload: p.clone(),
    };
    Ok(Some(Checked {
        msg,
        heartbeat,
        stamped_us: st.timestamp_us,
    }))
}

/// Learns from a hop-0 message (sent by the peer itself): its origin (a
/// self-link ends the link; a second link to one origin is counted) and,
/// from a heartbeat, its replay endpoint unless one is configured.
fn learn(shared: &Shared, idx: usize, msg: &Linked, hb: Option<&Heartbeat>) -> Option<End> {
    let s = StampRef::decode(&msg.stamp).ok()?;
    if s.hops != 0 {
        return None;
    }
    let m = shared.link(idx);
    if s.origin == shared.own_id {
        m.self_link.inc();
        tracing::error!(
            link = %m.name,
            "federation link leads back to this broadcaster (self-link); link stopped"
        );
        return Some(End::SelfLink);
    }
    let known = m
        .peer_origin
        .lock()
        .ok()
        .is_some_and(|p| p.as_deref() == Some(s.origin));
    if !known {
        note_peer(shared, idx, m, s.origin);
    }
    if let Some(advertised) = hb.and_then(|h| h.replay.as_deref()) {
        if let Ok(mut r) = m.replay.lock() {
            let configured = r.is_some() && m.replay_configured;
            if !configured {
                *r = Some(reachable(advertised, &m.endpoint));
            }
        }
    }
    None
}

/// Records the peer's origin; counts a duplicate link.
fn note_peer(shared: &Shared, idx: usize, m: &LinkMetrics, origin: &str) {
    if let Ok(mut p) = m.peer_origin.lock() {
        *p = Some(origin.to_owned());
    }
    let Ok(mut peers) = shared.peers.lock() else {
        return;
    };
    // Bounded: at most one entry per link.
    peers.retain(|_, l| *l != idx);
    match peers.get(origin) {
        Some(&other) if other != idx => {
            m.duplicate_link.inc();
            tracing::warn!(
                link = %m.name,
                other = %shared.link(other).name,
                peer = origin,
                "two federation links reach the same peer (duplicate link); deduplication keeps it exactly once"
            );
        }
        _ => {
            peers.insert(origin.to_owned(), idx);
            tracing::info!(link = %m.name, peer = origin, "federation peer identified");
        }
    }
}

/// The advertised replay endpoint, with an unspecified host (`0.0.0.0`,
/// `[::]`) replaced by the host of the PUB endpoint we reached.
fn reachable(advertised: &str, pub_endpoint: &str) -> String {
    let host_of = |e: &str| {
        e.strip_prefix("tcp://")
            .and_then(|hp| hp.rsplit_once(':'))
            .map(|(h, p)| (h.to_owned(), p.to_owned()))
    };
    match (host_of(advertised), host_of(pub_endpoint)) {
        (Some((h, port)), Some((ours, _))) if h == "0.0.0.0" || h == "[::]" || h == "*" => {
            format!("tcp://{ours}:{port}")
        }
        _ => advertised.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanfare_protocol::stamp::StampFields;

    fn data(topic: &str, seq: u64) -> Vec<Bytes> {
        let f = StampFields {
            seq,
            lane_seq: 1,
            lane: stamp::lane_of(topic.as_bytes()),
            epoch: 1,
            ..StampFields::default()
        };
        vec![
            Bytes::from(topic.to_owned()),
            stamp::to_bytes(&f, b"b1", None),
            Bytes::from_static(b"x"),
        ]
    }

    #[test]
    fn validation() {
        assert!(check(&data("a.b", 1), 3, 10).is_ok());
        assert_eq!(check(&data("a.b", 1), 4, 10).unwrap_err(), "frame count");
        assert_eq!(check(&data("a.b", 0), 3, 10).unwrap_err(), "bad seq");
        assert_eq!(check(&data("a..b", 1), 3, 10).unwrap_err(), "bad topic");
        assert_eq!(
            check(&data("a.b", 1), 3, 0).unwrap_err(),
            "oversize payload"
        );
        let mut f = data("a.b", 1);
        f[1] = Bytes::from_static(b"short");
        assert_eq!(check(&f, 3, 10).unwrap_err(), "bad stamp");
        let mut f = data("_fanfare.hb.b1", 1);
        assert_eq!(check(&f, 3, 10).unwrap_err(), "bad topic");
        let hb = StampFields {
            flags: stamp::FLAG_HEARTBEAT,
            ..StampFields::default()
        };
        f[1] = stamp::to_bytes(&hb, b"b1", None);
        assert_eq!(check(&f, 3, 10).unwrap_err(), "bad heartbeat");
        let mut p = Vec::new();
        Heartbeat::default().encode(&mut p);
        f[2] = Bytes::from(p);
        assert!(check(&f, 3, 100).unwrap().unwrap().heartbeat.is_some());
        f[0] = Bytes::from_static(b"_fanfare.hb.b2");
        assert!(check(&f, 3, 100).is_err());
        let ack = StampFields {
            flags: stamp::FLAG_ACK,
            ..StampFields::default()
        };
        let f = [
            Bytes::from_static(b"_fanfare.ack.0123456789abcdef"),
            stamp::to_bytes(&ack, b"b1", None),
            Bytes::from_static(b"x"),
        ];
        assert!(
            check(&f, 3, 100).unwrap().is_none(),
            "an ack is skipped, not an error"
        );
    }

    #[test]
    fn unspecified_hosts_are_replaced() {
        assert_eq!(
            reachable("tcp://0.0.0.0:5559", "tcp://10.1.2.3:5558"),
            "tcp://10.1.2.3:5559"
        );
        assert_eq!(
            reachable("tcp://127.0.0.1:5559", "tcp://10.1.2.3:5558"),
            "tcp://127.0.0.1:5559"
        );
    }
}
