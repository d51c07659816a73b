//! fanfare-client helpers: options for a broadcaster process, and receiving
//! deliveries and events with a timeout.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use fanfare_client::{
    Client, ClientEvent, ClientOptions, Delivery, EventStream, Message, Subscription,
};
use futures::StreamExt;

use crate::process::BroadcasterProcess;

/// Options for a client of `b` (heartbeat timeout and backoff sized for tests).
pub fn options(b: &BroadcasterProcess) -> ClientOptions {
    let e = b.endpoints();
    ClientOptions::new(e.pull.clone(), e.publish.clone(), e.replay.clone())
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// A client of `b` with [`options`], its connect bounded by `connect_timeout`.
pub async fn connect(b: &BroadcasterProcess, connect_timeout: Duration) -> Result<Client> {
    Ok(Client::connect(options(b).connect_timeout(connect_timeout)).await?)
}

/// The next delivery, failing after `timeout` or when the stream ends.
pub async fn next_delivery(sub: &mut Subscription, timeout: Duration) -> Result<Delivery> {
    tokio::time::timeout(timeout, sub.next())
        .await
        .with_context(|| format!("no delivery within {timeout:?}"))?
        .context("subscription stream ended")
}

/// The next message; a gap or a close is an error.
pub async fn next_message(sub: &mut Subscription, timeout: Duration) -> Result<Message> {
    match next_delivery(sub, timeout).await? {
        Delivery::Message(m) => Ok(m),
        other => bail!("expected a message, got {other:?}"),
    }
}

/// Waits for an event matching `pred` (others are skipped), at most `timeout`.
pub async fn wait_event(
    events: &mut EventStream,
    timeout: Duration,
    pred: impl Fn(&ClientEvent) -> bool,
) -> Result<ClientEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .with_context(|| format!("no matching client event within {timeout:?}"))?
            .context("event stream ended")?;
        if pred(&ev) {
            return Ok(ev);
        }
    }
}

/// Index carried in the first 8 bytes of a test payload.
pub fn index_of(payload: &[u8]) -> Option<u64> {
    let b: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// A test payload: index in 8 bytes, padded to `len`.
pub fn indexed_payload(i: u64, len: usize) -> bytes::Bytes {
    let mut p = vec![b'.'; len.max(8)];
    p[..8].copy_from_slice(&i.to_be_bytes());
    bytes::Bytes::from(p)
}

/// Makes sure every subscription hears `publisher`: publishes
/// `<namespace>.sync-probe` until each has delivered one. Later probes are
/// skipped by [`is_probe`].
pub async fn sync_subscriptions(
    publisher: &fanfare_client::Client,
    subs: &mut [&mut Subscription],
    namespace: &str,
) -> Result<()> {
    let topic = format!("{namespace}.{}", crate::sockets::PROBE_WORD);
    let mut synced = vec![false; subs.len()];
    let deadline = tokio::time::Instant::now() + crate::RECV_TIMEOUT;
    while synced.iter().any(|s| !s) {
        if tokio::time::Instant::now() > deadline {
            bail!("subscriptions never heard a probe: {synced:?}");
        }
        publisher.publish(&topic, "probe").await?;
        for (i, sub) in subs.iter_mut().enumerate() {
            while !synced[i] {
                match next_delivery(sub, Duration::from_millis(50)).await {
                    Ok(Delivery::Message(m)) if is_probe(&m) => synced[i] = true,
                    Ok(other) => bail!("unexpected delivery while syncing: {other:?}"),
                    Err(_) => break,
                }
            }
        }
    }
    Ok(())
}

/// Publishes with `publish_confirmed` and returns the stamp seq its ack
/// names.
pub async fn publish_seq(
    publisher: &fanfare_client::Client,
    topic: &str,
    payload: impl Into<bytes::Bytes>,
) -> Result<u64> {
    let c = publisher.publish_confirmed(topic, payload).await?;
    c.seq.context("the ack names the message")
}

/// True for probes of [`sync_subscriptions`].
pub fn is_probe(m: &Message) -> bool {
    m.topic.rsplit('.').next() == Some(crate::sockets::PROBE_WORD)
}

/// The next message that is not a probe; a gap or a close is an error.
pub async fn next_data(sub: &mut Subscription, timeout: Duration) -> Result<Message> {
    loop {
        let m = next_message(sub, timeout).await?;
        if !is_probe(&m) {
            return Ok(m);
        }
    }
}

/// Options for a client of every broadcaster in `list` (the first is
/// published through first), sized for tests like [`options`].
pub fn options_for(list: &[&BroadcasterProcess]) -> ClientOptions {
    let endpoints = list.iter().map(|b| {
        let e = b.endpoints();
        (e.pull.clone(), e.publish.clone(), e.replay.clone())
    });
    ClientOptions::with_broadcasters(endpoints)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// What a subscription delivered while [`collect_until`] read it.
#[derive(Debug, Default)]
pub struct Collected {
    /// Data messages (probes skipped), in delivery order.
    pub messages: Vec<Message>,
    /// Gaps reported.
    pub gaps: Vec<fanfare_client::Gap>,
}

impl Collected {
    /// Payload indices ([`index_of`]) in delivery order.
    pub fn indices(&self) -> Vec<u64> {
        self.messages
            .iter()
            .filter_map(|m| index_of(&m.payload))
            .collect()
    }

    /// Fails if an index came twice, or if publisher seqs of one session
    /// are not strictly increasing (per-publisher order).
    pub fn check_once_in_order(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for i in self.indices() {
            if !seen.insert(i) {
                bail!("index {i} delivered twice");
            }
        }
        let mut last = std::collections::HashMap::new();
        for m in &self.messages {
            let Some(p) = m.stamp.publisher_seq else {
                continue;
            };
            let prev = last.insert(p.session, p.seq).unwrap_or(0);
            if p.seq <= prev {
                bail!(
                    "publisher seq {} after {prev} (origin {}, seq {})",
                    p.seq,
                    m.stamp.origin,
                    m.stamp.seq
                );
            }
        }
        Ok(())
    }
}

/// Reads `sub` until a data message with index `last` arrived, at most
/// `timeout` in all; a close is an error.
pub async fn collect_until(
    sub: &mut Subscription,
    last: u64,
    timeout: Duration,
) -> Result<Collected> {
    collect_until_all(sub, &[last], timeout).await
}

/// Reads `sub` until data messages with every index of `last` arrived, at
/// most `timeout` in all; a close is an error.
pub async fn collect_until_all(
    sub: &mut Subscription,
    last: &[u64],
    timeout: Duration,
) -> Result<Collected> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Collected::default();
    let mut wanted: std::collections::HashSet<u64> = last.iter().copied().collect();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let d = next_delivery(sub, left).await.with_context(|| {
            format!(
                "waiting for indices {wanted:?}: {} messages, {} gaps so far",
                out.messages.len(),
                out.gaps.len()
            )
        })?;
        match d {
            Delivery::Message(m) if is_probe(&m) => {}
            Delivery::Message(m) => {
                if let Some(i) = index_of(&m.payload) {
                    wanted.remove(&i);
                }
                out.messages.push(m);
                if wanted.is_empty() {
                    return Ok(out);
                }
            }
            Delivery::Gap(g) => out.gaps.push(g),
            Delivery::Watermark(w) => bail!("a watermark nobody asked for: {w:?}"),
            Delivery::Closed(r) => bail!("subscription closed: {r:?}"),
        }
    }
}

/// Publishes indices `range` on `topic` with `publish_confirmed`, `window`
/// at a time, 32-byte payloads; bumps `confirmed` as each is confirmed.
pub async fn confirmed_stream(
    client: Client,
    topic: &'static str,
    range: std::ops::Range<u64>,
    window: usize,
    confirmed: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Vec<(u64, fanfare_client::Confirmation)>> {
    let timed = paced_stream(client, topic, range, window, None, 32, confirmed).await?;
    Ok(timed.into_iter().map(|(i, c, _)| (i, c)).collect())
}

/// Like [`confirmed_stream`] with `size`-byte payloads, message k not sent
/// before `start + k / rate` when `rate` (messages per second) is given;
/// records when each was confirmed.
pub async fn paced_stream(
    client: Client,
    topic: &'static str,
    range: std::ops::Range<u64>,
    window: usize,
    rate: Option<f64>,
    size: usize,
    confirmed: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Vec<(u64, fanfare_client::Confirmation, std::time::Instant)>> {
    let start = tokio::time::Instant::now();
    let first = range.start;
    let results: Vec<_> = futures::stream::iter(range)
        .map(|i| {
            let client = client.clone();
            let confirmed = confirmed.clone();
            async move {
                if let Some(r) = rate {
                    let at = start + Duration::from_secs_f64((i - first) as f64 / r);
                    tokio::time::sleep_until(at).await;
                }
                let c = client
                    .publish_confirmed(topic, indexed_payload(i, size))
                    .await
                    .with_context(|| format!("confirming {i}"))?;
                confirmed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                anyhow::Ok((i, c, std::time::Instant::now()))
            }
        })
        .buffer_unordered(window)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Waits (at most `timeout`) until `confirmed` reaches `at_least`.
pub async fn wait_confirmed(
    confirmed: &std::sync::atomic::AtomicU64,
    at_least: u64,
    timeout: Duration,
) -> Result<()> {
    crate::wait::eventually(timeout, "confirmations", || {
        let c = confirmed.load(std::sync::atomic::Ordering::Relaxed);
        async move { (c >= at_least).then_some(()) }
    })
    .await
}
