//! Sessions on the broadcaster's PUB, against the real binary, seen from a
//! raw ZMTP SUB (our own frames, so it can stop reading at will): a
//! subscriber that SUBSCRIBEs `_fanfare.sess` gets a session marker first,
//! then a jump in seq within a session is filtering only; after it could
//! not take messages it gets a new marker before the next message, and the
//! marker counts exactly what it missed; each marker says how many
//! subscription commands were applied before it. A plain subscriber (zmq.rs SUB on
//! everything) never sees a marker.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_protocol::session::Marker;
use fanfare_protocol::stamp::FLAG_SESSION;
use fanfare_protocol::SESSION_TOPIC;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::sockets::{self, Broadcast};
use fanfare_tests::zmtp::RawPeer;
use fanfare_tests::{metrics, RECV_TIMEOUT};
use tokio::sync::mpsc;

/// Reads the raw SUB into a bounded channel: when the test stops taking
/// from it, the reader blocks and the socket is no longer read.
fn reader(mut raw: RawPeer) -> mpsc::Receiver<Result<Broadcast>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let m = raw.read_message().await.and_then(|frames| {
                Broadcast::decode(&frames.into_iter().map(Bytes::from).collect::<Vec<_>>())
            });
            let failed = m.is_err();
            if tx.send(m).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// The next message of the raw SUB, within `timeout`.
async fn next_within(
    rx: &mut mpsc::Receiver<Result<Broadcast>>,
    timeout: Duration,
) -> Result<Broadcast> {
    tokio::time::timeout(timeout, rx.recv())
        .await
        .context("raw SUB: nothing within the receive timeout")?
        .context("raw SUB reader ended")?
}

async fn next(rx: &mut mpsc::Receiver<Result<Broadcast>>) -> Result<Broadcast> {
    next_within(rx, RECV_TIMEOUT).await
}

/// What a session marker carries.
fn marker(b: &Broadcast) -> Result<Marker> {
    ensure!(b.topic == SESSION_TOPIC, "not a marker: {}", b.topic);
    ensure!(
        b.flags & FLAG_SESSION != 0,
        "marker without the session flag"
    );
    Marker::decode(&b.payload).context("a marker's payload is two u64s")
}

/// The count of missed messages a session marker carries.
fn missed(b: &Broadcast) -> Result<u64> {
    Ok(marker(b)?.missed)
}

#[tokio::test]
async fn a_marker_comes_first_and_before_every_hole_and_counts_it() -> Result<()> {
    // A small queue, so that a subscriber that stops reading misses soon;
    // a long write stall bound, so that it is not cut off meanwhile.
    let b = BroadcasterProcess::spawn(&[
        "--id",
        "sess",
        "--subscriber-queue-bytes",
        "65536",
        "--write-stall-ms",
        "60000",
    ])
    .await?;
    let ep = b.endpoints().clone();
    let mut push = sockets::push(&ep.pull).await?;
    let mut plain = sockets::sub(&ep.publish, &[""]).await?;
    sockets::sync_subscription(&mut push, &mut plain, "s").await?;

    let mut raw = RawPeer::handshake(&ep.publish, "SUB").await?;
    raw.subscribe(SESSION_TOPIC).await?;
    raw.subscribe("s.").await?;
    let mut rx = reader(raw);
    // A marker at once, and one after the `s.` subscription was applied
    // (they may be one): the last says both commands were applied.
    loop {
        let m = marker(&next(&mut rx).await?)?;
        ensure!(m.missed == 0, "the first markers missed nothing");
        ensure!(m.changes <= 2, "{} changes applied of 2 sent", m.changes);
        if m.changes == 2 {
            break;
        }
    }

    // In step with the raw SUB: probes until one arrives (its `s.`
    // subscription is in force).
    let deadline = Instant::now() + RECV_TIMEOUT;
    loop {
        ensure!(
            Instant::now() < deadline,
            "the raw SUB's s. never took effect"
        );
        sockets::publish(&mut push, "s.probe", &b"p"[..]).await?;
        if let Ok(m) = next_within(&mut rx, Duration::from_millis(200)).await {
            ensure!(m.topic == "s.probe", "unexpected {}", m.topic);
            break;
        }
    }
    // A filtered topic between two wanted ones: a jump with no marker
    // (filtering, not loss). Probes still in flight come first.
    sockets::publish(&mut push, "s.a", &b"a"[..]).await?;
    sockets::publish(&mut push, "x.filtered", &b"x"[..]).await?;
    sockets::publish(&mut push, "s.b", &b"b"[..]).await?;
    let mut a = next(&mut rx).await?;
    while a.topic == "s.probe" {
        a = next(&mut rx).await?;
    }
    let bb = next(&mut rx).await?;
    ensure!(
        a.topic == "s.a" && bb.topic == "s.b",
        "{} then {}",
        a.topic,
        bb.topic
    );
    ensure!(bb.seq == a.seq + 2, "x.filtered was stamped between them");

    // The raw SUB stops reading; 30 MB of `s.` messages go past its 64 KiB
    // queue and the socket buffers (a few MiB at most on loopback), so it
    // must miss some.
    let admin = ep.admin_addr()?.to_owned();
    let payload = Bytes::from(vec![b'y'; 1000]);
    let sent = 30_000u64;
    for _ in 0..sent {
        sockets::publish(&mut push, "s.big", payload.clone()).await?;
    }
    sockets::publish(&mut push, "s.end", &b"end"[..]).await?;

    // Reads all of it: every jump in seq has a marker right before the
    // message after it, and the marker counts exactly the missing seqs
    // (every message published here matches `s.`).
    eprintln!("stall phase: {sent} sent");
    let mut prev = bb.seq;
    let mut pending: Option<u64> = None;
    let (mut markers, mut holes, mut data, mut ends) = (0u64, 0u64, 0u64, 0u32);
    loop {
        // `s.end` itself may be missed (with a marker owed after it): one
        // more is published whenever the stream pauses.
        let m = match next_within(&mut rx, Duration::from_millis(500)).await {
            Ok(m) => m,
            Err(_) if ends < 20 => {
                sockets::publish(&mut push, "s.end", &b"end"[..]).await?;
                ends += 1;
                continue;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "after {data} data messages, {markers} markers, last seq {prev}"
                )))
            }
        };
        if m.topic == SESSION_TOPIC {
            // Markers in a row (nothing fit between them) add up.
            pending = Some(pending.unwrap_or(0) + missed(&m)?);
            markers += 1;
            continue;
        }
        ensure!(m.topic.starts_with("s."), "unexpected {}", m.topic);
        let jump = m.seq.checked_sub(prev + 1).context("seq went back")?;
        match pending.take() {
            Some(n) => {
                ensure!(
                    n == jump,
                    "a marker counted {n}, the hole is {jump} seqs (at {})",
                    m.seq
                );
                holes += jump;
            }
            None => ensure!(
                jump == 0,
                "a hole of {jump} seqs at {} without a marker",
                m.seq
            ),
        }
        prev = m.seq;
        data += 1;
        if m.topic == "s.end" {
            break;
        }
    }
    ensure!(markers >= 1 && holes > 0, "the stall made no marked hole");
    let text = metrics::fetch(&admin).await?;
    let counted = metrics::value_or_zero(&text, "fanfare_egress_session_markers_total", &[]);
    ensure!(
        counted >= 1.0 + markers as f64,
        "markers counted: {counted}"
    );
    eprintln!(
        "FIGURE sessions: {sent} sent while stalled, {data} read after, {holes} missed in {markers} marked hole(s)"
    );

    // The plain subscriber never saw a marker (it asked for everything,
    // not for sessions).
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(msg) = sockets::recv_timeout(&mut plain, Duration::from_millis(200)).await else {
            break;
        };
        let m = Broadcast::decode(&msg.into_vec())?;
        ensure!(
            m.flags & FLAG_SESSION == 0 && m.topic != SESSION_TOPIC,
            "a plain SUB got a marker"
        );
    }
    Ok(())
}
