//! fanfare-client's data connections are sessions (PROTOCOL.md,
//! "Sessions"), against the real broadcaster: a narrow subscription in a
//! busy lane (`room.5.#` among ten rooms that share the lane `room`) gets
//! its messages in order with no replay asked, where every lane jump used
//! to cost one. That a subscriber that misses messages inside a session
//! (a marker with a count) still gets every one back from history is
//! `client_gap_repair`'s `messages_dropped_by_the_pub_are_repaired_in_order`:
//! its proxy keeps the one connection, so the loss falls inside a session.

use anyhow::{ensure, Context, Result};
use fanfare_client::{Client, Delivery};
use fanfare_tests::client::{
    index_of, indexed_payload, is_probe, next_data, next_delivery, options, publish_seq,
    sync_subscriptions,
};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::{metrics, RECV_TIMEOUT};

const ROOMS: u64 = 10;
const ROUNDS: u64 = 50;

async fn counter(b: &BroadcasterProcess, name: &str) -> Result<f64> {
    let text = metrics::fetch(b.endpoints().admin_addr()?).await?;
    Ok(metrics::value_or_zero(&text, name, &[]))
}

async fn replay_requests(b: &BroadcasterProcess) -> Result<f64> {
    counter(b, "fanfare_replay_requests_total").await
}

/// Waits (at most the receive timeout) until counter `name` of `b` is
/// above `above`.
async fn wait_above(b: &BroadcasterProcess, name: &str, above: f64) -> Result<()> {
    fanfare_tests::wait::eventually(RECV_TIMEOUT, name, || async move {
        let now = counter(b, name).await.ok()?;
        (now > above).then_some(())
    })
    .await
}

/// A broadcaster with `id` (heartbeats every 100 ms), a publisher and a
/// subscriber client of it.
async fn fabric(id: &str) -> Result<(BroadcasterProcess, Client, Client)> {
    let b = BroadcasterProcess::spawn(&["--id", id, "--heartbeat-ms", "100"]).await?;
    let publisher = Client::connect(options(&b)).await?;
    let subscriber = Client::connect(options(&b)).await?;
    Ok((b, publisher, subscriber))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_subscription_in_a_busy_lane_asks_no_replay() -> Result<()> {
    let (b, publisher, subscriber) = fabric("sess-c").await?;
    let mut sub = subscriber.subscribe("room.5.#").await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "room.5").await?;
    let before = replay_requests(&b).await?;
    // Ten rooms round-robin: nine of ten seqs of the lane are filtered.
    for round in 0..ROUNDS {
        for room in 0..ROOMS {
            let i = round * ROOMS + room;
            publisher
                .publish_confirmed(&format!("room.{room}.msg"), indexed_payload(i, 16))
                .await?;
        }
    }
    let mut expected = 5;
    while expected < ROUNDS * ROOMS {
        match next_delivery(&mut sub, RECV_TIMEOUT).await? {
            Delivery::Message(m) if is_probe(&m) => {}
            Delivery::Message(m) => {
                let i = index_of(&m.payload).context("an indexed payload")?;
                ensure!(i == expected, "expected {expected}, got {i} ({})", m.topic);
                expected += ROOMS;
            }
            other => anyhow::bail!("expected message {expected}, got {other:?}"),
        }
    }
    // Heartbeats show the lane further on than room.5's last: no repair
    // either. Three of them, then one more room.5 message behind them.
    let beats = counter(&b, "fanfare_heartbeats_total").await?;
    wait_above(&b, "fanfare_heartbeats_total", beats + 2.0).await?;
    let last = ROUNDS * ROOMS + 5;
    publisher
        .publish_confirmed("room.5.msg", indexed_payload(last, 16))
        .await?;
    match next_delivery(&mut sub, RECV_TIMEOUT).await? {
        Delivery::Message(m) if index_of(&m.payload) == Some(last) => {}
        other => anyhow::bail!("expected message {last}, got {other:?}"),
    }
    let asked = replay_requests(&b).await? - before;
    eprintln!(
        "FIGURE sessions: {ROUNDS} messages of room.5 among {} in its lane, {asked} replay requests",
        ROUNDS * ROOMS
    );
    ensure!(
        asked == 0.0,
        "{asked} replay requests for filtered lane jumps"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_a_refused_prefix_has_no_session_and_loses_nothing() -> Result<()> {
    // 1000 distinct prefixes of 110 bytes on one connection (zero-padded,
    // so that none is a prefix of another): the broadcaster refuses those
    // past its 64 KiB of prefixes per subscriber. A refused SUBSCRIBE is not
    // counted, so no marker matches the client's count: the connection
    // never has a session, and the rooms whose prefix was refused are
    // repaired from history (heartbeat lane marks show the lane moved).
    const MANY: u64 = 1000;
    const PAD: &str = "padding-to-reach-the-byte-cap-of-the-broadcaster-with-fewer-rooms-than-prefixes-allowed-in-count";
    let (b, publisher, subscriber) = fabric("sess-r").await?;
    let mut subs = Vec::new();
    for k in 0..MANY {
        subs.push(
            subscriber
                .subscribe(&format!("room.{k:04}.{PAD}.#"))
                .await?,
        );
    }
    wait_above(&b, "fanfare_subscriptions_refused_total", 0.0).await?;
    for k in 0..MANY {
        publisher
            .publish_confirmed(&format!("room.{k:04}.{PAD}.msg"), indexed_payload(k, 16))
            .await?;
    }
    let mut replayed = 0;
    for (k, sub) in (0..MANY).zip(subs.iter_mut()) {
        let m = loop {
            match next_delivery(sub, RECV_TIMEOUT).await? {
                Delivery::Message(m) if is_probe(&m) => {}
                Delivery::Message(m) => break m,
                other => anyhow::bail!("room.{k}: expected its message, got {other:?}"),
            }
        };
        ensure!(
            index_of(&m.payload) == Some(k),
            "room.{k} got {:?}",
            index_of(&m.payload)
        );
        replayed += u64::from(m.replayed);
    }
    let refused = counter(&b, "fanfare_subscriptions_refused_total").await?;
    eprintln!(
        "FIGURE sessions: {MANY} rooms on one connection, {refused} prefixes refused, \
         {replayed} delivered from history"
    );
    ensure!(
        replayed > 0,
        "the refused prefixes' messages came from history"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_on_the_session_topic_never_cancels_the_session() -> Result<()> {
    // `_fanfare.sess.#` has the SUB prefix `_fanfare.sess`, the very
    // subscription that asks for sessions. Dropping it must not cancel
    // that subscription: the broadcaster would stop sending markers (after
    // a miss too) while the client still trusts its session.
    let (b, publisher, subscriber) = fabric("sess-p").await?;
    let mut first = subscriber.subscribe("x.#").await?;
    sync_subscriptions(&publisher, &mut [&mut first], "x").await?;
    let on_sess = subscriber.subscribe("_fanfare.sess.#").await?;
    drop(on_sess);
    // Two changes after the drop, each in force once its probe arrives: a
    // cancel written with or before the first is applied before the second
    // (one connection, in order), and so is its marker counted.
    let mut z = subscriber.subscribe("z.#").await?;
    sync_subscriptions(&publisher, &mut [&mut z], "z").await?;
    let mut w = subscriber.subscribe("w.#").await?;
    sync_subscriptions(&publisher, &mut [&mut w], "w").await?;
    // Another change: still in a session, its marker comes.
    let markers = counter(&b, "fanfare_egress_session_markers_total").await?;
    let mut second = subscriber.subscribe("y.#").await?;
    sync_subscriptions(&publisher, &mut [&mut second], "y").await?;
    wait_above(&b, "fanfare_egress_session_markers_total", markers).await?;
    Ok(())
}

/// A subscription that asks for watermarks (the hub's feed does) is told,
/// after each burst and heartbeat, how far its stream of the broadcaster's
/// origin is complete: a narrow pattern in a busy lane sees its messages in
/// order, no message ever at or below a watermark already told, and a
/// watermark that reaches the last seq published (a room it does not take).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_step_over_what_a_narrow_subscription_filters() -> Result<()> {
    let (_b, publisher, subscriber) = fabric("sess-w").await?;
    let mut sub = subscriber.subscribe("room.5.#").await?;
    sub.keep_watermarks().await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "room.5").await?;
    let mut last_seq = 0;
    for round in 0..ROUNDS {
        for room in 0..ROOMS {
            let i = round * ROOMS + room;
            let topic = format!("room.{room}.msg");
            last_seq = publish_seq(&publisher, &topic, indexed_payload(i, 16)).await?;
        }
    }
    let (mut expected, mut through, mut watermarks) = (5, 0, 0);
    while expected < ROUNDS * ROOMS || through < last_seq {
        match next_delivery(&mut sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("message {expected}, watermark {through} of {last_seq}"))?
        {
            Delivery::Message(m) => {
                ensure!(
                    m.stamp.seq > through,
                    "seq {} came after watermark {through}",
                    m.stamp.seq
                );
                if is_probe(&m) {
                    continue;
                }
                let i = index_of(&m.payload).context("an indexed payload")?;
                ensure!(i == expected, "expected {expected}, got {i} ({})", m.topic);
                expected += ROOMS;
            }
            Delivery::Watermark(w) => {
                ensure!(w.through > through, "watermark {w:?} after {through}");
                through = w.through;
                watermarks += 1;
            }
            other => anyhow::bail!("expected message {expected}, got {other:?}"),
        }
    }
    eprintln!("{watermarks} watermarks up to seq {through} (last published {last_seq})");
    Ok(())
}

/// `set_patterns` moves a subscription to other patterns (the hub's feed
/// follows its browsers so): once it resolves, a message published on a new
/// pattern is never missed, even a room whose SUB prefix was written just
/// now; what the old patterns match no longer comes; the position it
/// tells is the broadcaster's own origin, at or before the first message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_patterns_takes_effect_once_it_resolves() -> Result<()> {
    let (_b, publisher, subscriber) = fabric("sess-p").await?;
    let mut sub = subscriber.subscribe("room.0.#").await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "room.0").await?;
    for k in 1..=30u64 {
        let room = format!("room.{k}");
        // Stamped before the change: the marker that answers the change
        // (each one here writes a new prefix) is stamped after it.
        let before = publish_seq(&publisher, "elsewhere.x", indexed_payload(3000 + k, 16)).await?;
        let applied = tokio::time::timeout(RECV_TIMEOUT, sub.set_patterns(&[room.as_str()]))
            .await
            .context("set_patterns resolves")??;
        ensure!(&*applied.origin == "sess-p", "origin {applied:?}");
        ensure!(
            applied.seq >= before,
            "{room}: applied at {} before the marker answering it (seq {before} was stamped first)",
            applied.seq
        );
        // The room before, and a longer name sharing its prefix: neither
        // comes any more.
        publisher
            .publish_confirmed(&format!("room.{}", k - 1), indexed_payload(1000 + k, 16))
            .await?;
        publisher
            .publish_confirmed(&format!("{room}0"), indexed_payload(2000 + k, 16))
            .await?;
        let c = publisher
            .publish_confirmed(&room, indexed_payload(k, 16))
            .await?;
        let m = next_data(&mut sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("{room}'s message"))?;
        ensure!(
            index_of(&m.payload) == Some(k),
            "{room}: got {} ({:?})",
            m.topic,
            index_of(&m.payload)
        );
        ensure!(
            applied.seq < m.stamp.seq && Some(m.stamp.seq) == c.seq,
            "{room}: applied at {} for seq {} (ack {:?})",
            applied.seq,
            m.stamp.seq,
            c.seq
        );
    }
    Ok(())
}
