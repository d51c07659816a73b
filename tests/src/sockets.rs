//! zeromq (zmq.rs) helpers for tests: connected sockets, a timeout on every
//! receive, and decoding of broadcast messages `[topic, stamp, payload]`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use fanfare_protocol::stamp::StampRef;
use zeromq::{DealerSocket, PushSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

use crate::RECV_TIMEOUT;

/// Last word of probe topics: [`sync_subscription`] publishes them and
/// [`recv_broadcast`] skips them.
pub const PROBE_WORD: &str = "sync-probe";

/// Receives one message, failing after `timeout`.
pub async fn recv_timeout<S: SocketRecv>(socket: &mut S, timeout: Duration) -> Result<ZmqMessage> {
    tokio::time::timeout(timeout, socket.recv())
        .await
        .with_context(|| format!("no message within {timeout:?}"))?
        .context("recv failed")
}

/// Sends one message, failing after `timeout`.
pub async fn send_timeout<S: SocketSend>(
    socket: &mut S,
    frames: Vec<Bytes>,
    timeout: Duration,
) -> Result<()> {
    let msg = message(frames)?;
    tokio::time::timeout(timeout, socket.send(msg))
        .await
        .with_context(|| format!("send blocked for {timeout:?}"))?
        .context("send failed")
}

/// Builds a multipart message.
pub fn message(frames: Vec<Bytes>) -> Result<ZmqMessage> {
    ZmqMessage::try_from(frames).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A PUSH socket connected to `endpoint` (the broadcaster's ingress).
pub async fn push(endpoint: &str) -> Result<PushSocket> {
    let mut s = PushSocket::new();
    tokio::time::timeout(RECV_TIMEOUT, s.connect(endpoint))
        .await
        .context("PUSH connect timed out")??;
    Ok(s)
}

/// A SUB socket connected to `endpoint` with the given prefixes.
pub async fn sub(endpoint: &str, prefixes: &[&str]) -> Result<SubSocket> {
    let mut s = SubSocket::new();
    for p in prefixes {
        s.subscribe(p).await?;
    }
    tokio::time::timeout(RECV_TIMEOUT, s.connect(endpoint))
        .await
        .context("SUB connect timed out")??;
    Ok(s)
}

/// A replay request (id `r`) for `[from, to]` of the broadcaster's own
/// origin in its current epoch, filtered by `patterns` (none = all).
pub fn replay_range(
    from: u64,
    to: u64,
    patterns: Vec<fanfare_protocol::pattern::Pattern>,
) -> fanfare_protocol::replay::ReplayRequest {
    fanfare_protocol::replay::ReplayRequest {
        req_id: Bytes::from_static(b"r"),
        origin: String::new(),
        epoch: 0,
        from,
        to,
        lane: None,
        patterns,
    }
}

/// A DEALER socket connected to `endpoint` (the replay endpoint).
pub async fn dealer(endpoint: &str) -> Result<DealerSocket> {
    let mut s = DealerSocket::new();
    tokio::time::timeout(RECV_TIMEOUT, s.connect(endpoint))
        .await
        .context("DEALER connect timed out")??;
    Ok(s)
}

/// A decoded broadcast message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Topic frame.
    pub topic: String,
    /// Origin id from the stamp.
    pub origin: String,
    /// Stamp flags.
    pub flags: u8,
    /// Hops.
    pub hops: u8,
    /// Lane.
    pub lane: u16,
    /// Origin epoch.
    pub epoch: u64,
    /// Seq within the epoch.
    pub seq: u64,
    /// Seq within the lane.
    pub lane_seq: u64,
    /// When stamped (µs since the Unix epoch).
    pub timestamp_us: u64,
    /// Publisher metadata, if any.
    pub meta: Option<Bytes>,
    /// Payload frame.
    pub payload: Bytes,
}

impl Broadcast {
    /// Decodes `[topic, stamp, payload]`.
    pub fn decode(frames: &[Bytes]) -> Result<Self> {
        ensure!(frames.len() == 3, "expected 3 frames, got {}", frames.len());
        let topic = std::str::from_utf8(&frames[0])
            .context("topic not UTF-8")?
            .to_owned();
        let s = StampRef::decode(&frames[1]).context("bad stamp")?;
        Ok(Self {
            topic,
            origin: s.origin.to_owned(),
            flags: s.flags,
            hops: s.hops,
            lane: s.lane,
            epoch: s.epoch,
            seq: s.seq,
            lane_seq: s.lane_seq,
            timestamp_us: s.timestamp_us,
            meta: s.meta.map(Bytes::copy_from_slice),
            payload: frames[2].clone(),
        })
    }

    /// True for the broadcaster's own messages (`_fanfare.…`, heartbeats).
    pub fn is_internal(&self) -> bool {
        self.topic.starts_with(fanfare_protocol::RESERVED_PREFIX)
    }

    /// True for probes sent by [`sync_subscription`].
    pub fn is_probe(&self) -> bool {
        self.topic.rsplit('.').next() == Some(PROBE_WORD)
    }
}

/// Receives the next broadcast that is neither internal nor a probe.
pub async fn recv_broadcast(sub: &mut SubSocket, timeout: Duration) -> Result<Broadcast> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = recv_timeout(sub, left).await?;
        let b = Broadcast::decode(&msg.into_vec())?;
        if !b.is_internal() && !b.is_probe() {
            return Ok(b);
        }
    }
}

/// Receives the next heartbeat (topic `_fanfare.hb.…`).
pub async fn recv_heartbeat(sub: &mut SubSocket, timeout: Duration) -> Result<Broadcast> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = recv_timeout(sub, left).await?;
        let b = Broadcast::decode(&msg.into_vec())?;
        if b.topic.starts_with(fanfare_protocol::HEARTBEAT_PREFIX) {
            return Ok(b);
        }
    }
}

/// Makes sure the PUB side has `sub`'s subscription: publishes
/// `<namespace>.sync-probe` through `push` until `sub` receives one. The
/// subscriber must cover `<namespace>.`; later probes are skipped by
/// [`recv_broadcast`].
pub async fn sync_subscription(
    push: &mut PushSocket,
    sub: &mut SubSocket,
    namespace: &str,
) -> Result<()> {
    let topic = Bytes::from(format!("{namespace}.{PROBE_WORD}"));
    let deadline = Instant::now() + RECV_TIMEOUT;
    while Instant::now() < deadline {
        send_timeout(
            push,
            vec![topic.clone(), Bytes::from_static(b"probe")],
            RECV_TIMEOUT,
        )
        .await?;
        if let Ok(msg) = recv_timeout(sub, Duration::from_millis(100)).await {
            if Broadcast::decode(&msg.into_vec()).is_ok_and(|b| b.is_probe()) {
                return Ok(());
            }
        }
    }
    bail!("subscription for {namespace}. never became active")
}

/// Pushes a two-frame message `[topic, payload]`.
pub async fn publish(push: &mut PushSocket, topic: &str, payload: impl Into<Bytes>) -> Result<()> {
    send_timeout(
        push,
        vec![Bytes::copy_from_slice(topic.as_bytes()), payload.into()],
        RECV_TIMEOUT,
    )
    .await
}

/// Receives everything (internal messages included, probes excluded) until
/// a message on `topic` arrives; returns what came before it and it.
pub async fn recv_until_topic(
    sub: &mut SubSocket,
    topic: &str,
    timeout: Duration,
) -> Result<(Vec<Broadcast>, Broadcast)> {
    let deadline = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = recv_timeout(sub, left)
            .await
            .with_context(|| format!("waiting for a message on {topic}"))?;
        let b = Broadcast::decode(&msg.into_vec())?;
        if b.topic == topic {
            return Ok((before, b));
        }
        if !b.is_probe() {
            before.push(b);
        }
    }
}
