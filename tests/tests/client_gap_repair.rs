//! Gap repair end to end: the broadcaster's PUB drops messages for a
//! subscriber that falls behind; the client fetches them from history.
//! And a SIGKILLed broadcaster: new epoch, reconnect, outbox flushed.
//!
//! The subscriber of the two loss tests reads through a paused proxy while
//! the burst is published, so the broadcaster surely drops (its admin
//! endpoint's `fanfare_egress_dropped_total` must be > 0 before the proxy
//! resumes): the tests cannot pass without exercising repair (or, with a
//! tiny history, gaps).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fanfare_client::{Client, ClientEvent, ClientOptions, Delivery, Subscription};
use fanfare_protocol::heartbeat::MAX_HEARTBEAT_LANES;
use fanfare_protocol::stamp::lane_of;
use fanfare_tests::client::{
    connect, next_delivery, next_message, options, publish_seq, wait_event,
};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::proxy::PausableProxy;
use fanfare_tests::{metrics, wait};

/// Every receive (and a client's connect) in these tests waits at most this long.
const RECV: Duration = Duration::from_secs(15);

const N: u32 = 30_000;

/// Publishes `N` 1 KB messages on one topic as fast as possible.
async fn burst(publisher: &Client, topic: &str) -> Result<()> {
    let filler = "x".repeat(1000);
    for i in 1..=N {
        publisher.publish(topic, format!("{i} {filler}")).await?;
    }
    Ok(())
}

fn index(m: &fanfare_client::Message) -> u32 {
    let s = std::str::from_utf8(&m.payload).unwrap_or_default();
    s.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A broadcaster whose PUB soon drops for a stalled subscriber (64 KiB
/// queues), with heartbeats every 100 ms; `extra` arguments after those.
async fn dropping_broadcaster(extra: &[&str]) -> Result<BroadcasterProcess> {
    let mut args = vec!["--id", "b1", "--subscriber-queue-bytes", "65536"];
    if !extra.contains(&"--heartbeat-ms") {
        args.extend_from_slice(&["--heartbeat-ms", "100"]);
    }
    args.extend_from_slice(extra);
    BroadcasterProcess::spawn(&args).await
}

/// A subscriber of `b` that reads `pattern` through a pausable proxy (its
/// heartbeat timeout outlasts the pause; its queue holds a whole burst, so
/// only the broadcaster drops), and the proxy.
async fn stalled_subscriber(
    b: &BroadcasterProcess,
    pattern: &str,
) -> Result<(Client, Subscription, PausableProxy)> {
    stalled_subscriber_with(b, pattern, |o| o).await
}

/// [`stalled_subscriber`] with its options changed by `tune`.
async fn stalled_subscriber_with(
    b: &BroadcasterProcess,
    pattern: &str,
    tune: impl FnOnce(ClientOptions) -> ClientOptions,
) -> Result<(Client, Subscription, PausableProxy)> {
    let proxy = PausableProxy::start(&b.endpoints().publish).await?;
    let e = b.endpoints();
    let c = Client::connect(tune(
        ClientOptions::new(e.pull.clone(), proxy.endpoint(), e.replay.clone())
            .connect_timeout(RECV)
            .heartbeat_timeout(Duration::from_secs(60))
            .subscription_capacity(2 * N as usize),
    ))
    .await?;
    let mut sub = c.subscribe(pattern).await?;
    // Once the broadcaster applied the subscription (the SUBSCRIBE goes
    // through the proxy, a publish straight in: the warm-up message could
    // otherwise be stamped before it and never come).
    tokio::time::timeout(RECV, sub.set_patterns(&[pattern]))
        .await
        .context("the subscription is applied")??;
    Ok((c, sub, proxy))
}

/// Publishes the burst while `proxy` is paused and waits until the
/// broadcaster has counted drops; returns how many.
async fn burst_while_paused(
    b: &BroadcasterProcess,
    proxy: &PausableProxy,
    publisher: &Client,
    topic: &str,
) -> Result<f64> {
    proxy.pause();
    burst(publisher, topic).await?;
    let dropped = wait_for_drops(b).await?;
    proxy.resume();
    Ok(dropped)
}

/// Waits until the broadcaster has counted drops; returns how many.
async fn wait_for_drops(b: &BroadcasterProcess) -> Result<f64> {
    let admin = b.endpoints().admin_addr()?.to_owned();
    wait::eventually(RECV, "the broadcaster to drop for the stalled peer", || {
        let admin = admin.clone();
        async move {
            let text = metrics::fetch(&admin).await.ok()?;
            let d = metrics::value_or_zero(&text, "fanfare_egress_dropped_total", &[]);
            (d > 0.0).then_some(d)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_dropped_by_the_pub_are_repaired_in_order() -> Result<()> {
    let b = dropping_broadcaster(&[]).await?;
    let publisher = connect(&b, RECV).await?;
    let (subscriber, mut sub, proxy) = stalled_subscriber(&b, "burst.#").await?;
    let mut events = subscriber.events();
    // The subscription is live once one message went through the proxy.
    publisher.publish("burst.x", "0 warm-up").await?;
    ensure!(index(&next_message(&mut sub, RECV).await?) == 0, "warm-up");
    let dropped = burst_while_paused(&b, &proxy, &publisher, "burst.x").await?;
    let mut replayed = 0;
    for i in 1..=N {
        let m = next_message(&mut sub, RECV).await?;
        assert_eq!(index(&m), i, "every message exactly once, in order");
        replayed += u32::from(m.replayed);
    }
    eprintln!("{dropped} dropped by the PUB, {replayed} of {N} messages came from history");
    ensure!(
        replayed > 0,
        "the PUB dropped {dropped} but nothing was repaired"
    );
    wait_event(&mut events, RECV, |e| {
        matches!(e, ClientEvent::GapRepaired { .. })
    })
    .await?;
    Ok(())
}

/// The burst's last messages are the ones dropped and nothing follows them
/// on their lane; then more lanes than a heartbeat lists are published to
/// (topics the subscriber does not take), so no heartbeat mark shows the
/// lane either. Only the session marker after the drop tells of the loss:
/// the sweep it starts must bring the tail (the client before sweeps never
/// did, waiting for a later message of the lane).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tail_is_repaired_without_a_later_message_or_mark() -> Result<()> {
    let b = dropping_broadcaster(&[]).await?;
    let publisher = connect(&b, RECV).await?;
    let (_subscriber, mut sub, proxy) = stalled_subscriber(&b, "tail.#").await?;
    publisher.publish("tail.x", "0 warm-up").await?;
    ensure!(index(&next_message(&mut sub, RECV).await?) == 0, "warm-up");
    proxy.pause();
    burst(&publisher, "tail.x").await?;
    // Push the tail's lane out of the heartbeats' lane marks.
    let tail_lane = lane_of(b"tail.x");
    let mut others = 0;
    for w in 0.. {
        if others > MAX_HEARTBEAT_LANES + 100 {
            break;
        }
        let topic = format!("other{w}.x");
        if lane_of(topic.as_bytes()) != tail_lane {
            publisher.publish(&topic, "elsewhere").await?;
            others += 1;
        }
    }
    let dropped = wait_for_drops(&b).await?;
    proxy.resume();
    for i in 1..=N {
        let m = next_message(&mut sub, RECV)
            .await
            .with_context(|| format!("message {i} of {N} (the PUB dropped {dropped})"))?;
        assert_eq!(index(&m), i, "every message exactly once, in order");
    }
    eprintln!("{dropped} dropped by the PUB; all {N} came");
    Ok(())
}

/// A long repair with live traffic on the same lane, and a parking bound far
/// below that traffic: past the bound the client stops reading (the
/// broadcaster drops instead), so every message is fetched from history at
/// most once. Before the read pause, each live message read past the bound
/// was dropped and fetched again as the lane's tail, and under sustained
/// load that fed on itself (1.9-9.7x what the PUB dropped was fetched in the
/// forwarding bench).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_traffic_during_a_long_repair_is_fetched_once() -> Result<()> {
    const PARKED: usize = 64;
    let b = dropping_broadcaster(&[]).await?;
    let publisher = connect(&b, RECV).await?;
    let (_subscriber, mut sub, proxy) = stalled_subscriber_with(&b, "busy.#", |o| {
        o.subscription_capacity(4 * N as usize).max_parked(PARKED)
    })
    .await?;
    publisher.publish("busy.x", "0 warm-up").await?;
    ensure!(index(&next_message(&mut sub, RECV).await?) == 0, "warm-up");
    // Burst one while the subscriber is stalled: a repair of most of it.
    let dropped_first = burst_while_paused(&b, &proxy, &publisher, "busy.x").await?;
    // Burst two at once, on the same lane, while that repair runs.
    let filler = "x".repeat(1000);
    for i in N + 1..=2 * N {
        publisher.publish("busy.x", format!("{i} {filler}")).await?;
    }
    let mut replayed = 0u64;
    for i in 1..=2 * N {
        let m = next_message(&mut sub, RECV)
            .await
            .with_context(|| format!("message {i} of {}", 2 * N))?;
        assert_eq!(index(&m), i, "every message exactly once, in order");
        replayed += u64::from(m.replayed);
    }
    let text = metrics::fetch(b.endpoints().admin_addr()?).await?;
    let dropped = metrics::value_or_zero(&text, "fanfare_egress_dropped_total", &[]);
    eprintln!(
        "the PUB dropped {dropped} ({dropped_first} in the first burst); \
         {replayed} of {} messages came from history",
        2 * N
    );
    // Each message the PUB dropped comes from history once; what the client
    // itself read and dropped at the bound is at most the batch that was
    // being read when the bound filled, each time it filled.
    let slack = 4 * 256 + 2 * PARKED as u64;
    ensure!(
        replayed as f64 <= dropped + slack as f64,
        "{replayed} fetched from history, but the PUB dropped only {dropped}: \
         messages the client had read were dropped and fetched again"
    );
    ensure!(replayed > 0, "nothing was repaired");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_beyond_history_is_reported_as_gaps() -> Result<()> {
    let b = dropping_broadcaster(&["--history-count", "50"]).await?;
    let publisher = connect(&b, RECV).await?;
    let (_subscriber, mut sub, proxy) = stalled_subscriber(&b, "lossy.#").await?;
    publisher.publish("lossy.x", "0 warm-up").await?;
    let warm = next_message(&mut sub, RECV).await?;
    ensure!(index(&warm) == 0, "warm-up");
    let dropped = burst_while_paused(&b, &proxy, &publisher, "lossy.x").await?;
    // Every seq is accounted for: delivered, or inside a reported gap.
    let (mut delivered, mut lost, mut last) = (0u64, 0u64, warm.stamp.seq);
    while delivered + lost < u64::from(N) {
        match next_delivery(&mut sub, RECV).await? {
            Delivery::Message(m) => {
                assert!(m.stamp.seq > last, "in order");
                assert_eq!(m.stamp.seq - warm.stamp.seq, u64::from(index(&m)), "seq");
                last = m.stamp.seq;
                delivered += 1;
            }
            Delivery::Gap(g) => {
                assert!(g.first > last, "gap after what was delivered");
                lost += g.last - g.first + 1;
                last = g.last;
            }
            Delivery::Watermark(w) => panic!("a watermark nobody asked for: {w:?}"),
            Delivery::Closed(r) => panic!("closed: {r:?}"),
        }
    }
    assert_eq!(delivered + lost, u64::from(N));
    assert_eq!(
        last - warm.stamp.seq,
        u64::from(N),
        "accounted up to the last"
    );
    eprintln!("{dropped} dropped by the PUB; {delivered} delivered, {lost} reported lost");
    ensure!(
        lost > 0,
        "the PUB dropped {dropped} past a 50-message history, yet no gap was reported"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_broadcaster_comes_back_with_a_new_epoch() -> Result<()> {
    let mut b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let opts = options(&b)
        .connect_timeout(RECV)
        .heartbeat_timeout(Duration::from_millis(600));
    let c = Client::connect(opts).await?;
    let mut events = c.events();
    let mut sub = c.subscribe("life.#").await?;
    c.publish("life.x", "before").await?;
    let before = next_message(&mut sub, RECV).await?;
    assert_eq!(before.payload, "before");

    b.sigkill()?;
    // Both sides notice, in either order: the subscriber by silence, the
    // publisher by silence of its ack SUB (or a failed send). What was not
    // acknowledged is kept and re-sent after the restart.
    let (mut sub_gone, mut pub_gone) = (false, false);
    while !(sub_gone && pub_gone) {
        match wait_event(&mut events, RECV, |e| {
            matches!(
                e,
                ClientEvent::Disconnected { .. } | ClientEvent::PublisherDisconnected { .. }
            )
        })
        .await?
        {
            ClientEvent::Disconnected { .. } => sub_gone = true,
            _ => pub_gone = true,
        }
    }
    for i in 1..=5 {
        c.publish("life.x", format!("held-{i}")).await?;
    }

    b.restart().await?;
    let ev = wait_event(&mut events, RECV, |e| {
        matches!(e, ClientEvent::BroadcasterRestarted { .. })
    })
    .await?;
    let ClientEvent::BroadcasterRestarted {
        old_epoch,
        new_epoch,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(old_epoch, before.stamp.epoch);
    assert!(new_epoch > old_epoch);
    let mut held = Vec::new();
    while held.len() < 5 {
        let m = next_message(&mut sub, RECV).await?;
        if m.topic.as_ref() == "life.x" {
            assert_eq!(m.stamp.epoch, new_epoch);
            held.push(m.payload.clone());
        }
    }
    assert_eq!(held, ["held-1", "held-2", "held-3", "held-4", "held-5"]);
    c.publish("life.x", "after").await?;
    loop {
        let m = next_message(&mut sub, RECV).await?;
        if m.payload == "after" {
            break;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_pattern_in_a_busy_namespace_gets_everything_in_order() -> Result<()> {
    // `room.a` shares its lane with `room.b`: every lane seq jump our SUB
    // prefix causes must be told from loss by asking history.
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let c = connect(&b, RECV).await?;
    let mut a = c.subscribe("room.a").await?;
    let started = std::time::Instant::now();
    for i in 1..=3000u32 {
        c.publish("room.b", "other").await?;
        c.publish("room.a", i.to_string()).await?;
    }
    for i in 1..=3000u32 {
        let m = next_message(&mut a, RECV).await?;
        assert_eq!(m.payload, i.to_string().as_bytes());
    }
    eprintln!("3000 narrow messages in {:?}", started.elapsed());
    Ok(())
}

/// The hub orders its feed by origin seq and steps over the holes a
/// watermark covers: a watermark must never pass a message still to come.
/// Here the PUB drops part of a burst (one lane wanted, another not, so
/// the stream has filtered holes too) and the client repairs it: no message
/// may arrive at or below a watermark told before it, and a watermark
/// reaches the last seq published (on the lane not taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_never_passes_a_message_under_repair() -> Result<()> {
    watermarks_after_drops(false).await
}

/// The same with a subscription change while the PUB drops: the marker
/// that answers the change also reports the miss, and what was missed must
/// still be swept before a watermark passes it. (A change used to forget
/// the session it followed, so that marker swept nothing and the watermark
/// stepped over the dropped messages: they came after it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_change_during_drops_keeps_watermarks_below_the_repair() -> Result<()> {
    watermarks_after_drops(true).await
}

/// A burst the PUB partly drops while `proxy` is paused (with a new
/// subscription on the same client then, when `change`); checks every
/// message comes, in order, above every watermark told before it.
async fn watermarks_after_drops(change: bool) -> Result<()> {
    // With a change, heartbeats are rare: the marker's own sweep must cover
    // the miss, not a heartbeat's lane marks read in the same batch.
    let heartbeats: &[&str] = match change {
        true => &["--heartbeat-ms", "2000"],
        false => &[],
    };
    let b = dropping_broadcaster(heartbeats).await?;
    let publisher = connect(&b, RECV).await?;
    let (subscriber, mut sub, proxy) = stalled_subscriber(&b, "burst.#").await?;
    publisher.publish("burst.x", "0 warm-up").await?;
    ensure!(index(&next_message(&mut sub, RECV).await?) == 0, "warm-up");
    sub.keep_watermarks().await?;
    proxy.pause();
    let filler = "x".repeat(1000);
    for i in 1..=N {
        publisher
            .publish("burst.x", format!("{i} {filler}"))
            .await?;
        if i % 3 == 0 {
            publisher.publish("unwanted.y", "filtered").await?;
        }
    }
    let last = publish_seq(&publisher, "unwanted.y", "the end").await?;
    let dropped = wait_for_drops(&b).await?;
    // A new prefix, written while the PUB is still dropping (the proxy
    // stalls only the broadcaster's side).
    let _other = match change {
        true => Some(subscriber.subscribe("other.#").await?),
        false => None,
    };
    proxy.resume();
    if change {
        // The next message after the miss brings the marker.
        publisher.publish("unwanted.y", "after").await?;
    }
    let (mut next, mut through, mut replayed, mut watermarks) = (1, 0, 0, 0);
    while next <= N || through < last {
        let d = next_delivery(&mut sub, RECV).await.with_context(|| {
            format!("message {next} of {N}, watermark {through} of {last} ({dropped} dropped)")
        })?;
        match d {
            Delivery::Message(m) => {
                ensure!(
                    m.stamp.seq > through,
                    "message {} (seq {}) came after watermark {through}",
                    index(&m),
                    m.stamp.seq
                );
                ensure!(index(&m) == next, "expected {next}, got {}", index(&m));
                replayed += u32::from(m.replayed);
                next += 1;
            }
            Delivery::Watermark(w) => {
                ensure!(w.through > through, "watermark {w:?} after {through}");
                through = w.through;
                watermarks += 1;
            }
            other => anyhow::bail!("expected message {next}, got {other:?}"),
        }
    }
    eprintln!("{dropped} dropped, {replayed} replayed, {watermarks} watermarks up to {through}");
    ensure!(
        replayed > 0,
        "the PUB dropped {dropped} but nothing was repaired"
    );
    Ok(())
}
