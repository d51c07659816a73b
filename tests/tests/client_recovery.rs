//! Recovery through fanfare-client against a real broadcaster: a SIGKILLed
//! broadcaster restarted on the same ports (clients reconnect, report the
//! new epoch, publish and receive again); a subscriber whose traffic was
//! paused gets the dropped messages repaired from history, flagged
//! `replayed`, in order; with a tiny history the loss is reported as an
//! explicit `Delivery::Gap` and `ClientEvent::GapUnrecoverable`, never
//! skipped silently.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fanfare_client::{Client, ClientEvent, Delivery, GapReason, Subscription};
use fanfare_tests::client::{
    index_of, indexed_payload, is_probe, next_data, next_delivery, options, sync_subscriptions,
    wait_event,
};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::proxy::PausableProxy;
use fanfare_tests::{metrics, RECV_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_broadcaster_restarts_and_clients_report_the_new_epoch() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "phoenix", "--heartbeat-ms", "100"]).await?;
    let opts = options(&b).heartbeat_timeout(Duration::from_millis(600));
    let subscriber = Client::connect(opts.clone()).await?;
    let publisher = Client::connect(opts.publisher_id("phoenix-pub")).await?;
    let mut events = subscriber.events();
    let mut sub = subscriber.subscribe("life.#").await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "life").await?;
    publisher.publish("life.x", "before").await?;
    let before = next_data(&mut sub, RECV_TIMEOUT).await?;
    ensure!(before.payload == "before", "{before:?}");

    b.sigkill()?;
    wait_event(&mut events, RECV_TIMEOUT, |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await
    .context("subscriber notices the broadcaster is gone")?;
    b.restart().await?;
    let ev = wait_event(&mut events, RECV_TIMEOUT * 2, |e| {
        matches!(e, ClientEvent::BroadcasterRestarted { .. })
    })
    .await?;
    let ClientEvent::BroadcasterRestarted {
        origin,
        old_epoch,
        new_epoch,
    } = ev
    else {
        bail!("unreachable");
    };
    ensure!(&*origin == "phoenix", "origin {origin}");
    ensure!(
        old_epoch == before.stamp.epoch && new_epoch > old_epoch,
        "{old_epoch} -> {new_epoch}"
    );

    // Both directions work again: publish until the subscriber hears it
    // (the publisher may learn of the restart only on a send).
    let mut n = 0;
    let after = loop {
        ensure!(n < 200, "never received after the restart");
        publisher
            .publish("life.after", format!("after-{n}"))
            .await?;
        n += 1;
        match next_delivery(&mut sub, Duration::from_millis(100)).await {
            Ok(Delivery::Message(m)) if m.topic.as_ref() == "life.after" => break m,
            Ok(Delivery::Message(_)) | Err(_) => {}
            Ok(other) => bail!("unexpected {other:?}"),
        }
    };
    ensure!(
        after.stamp.epoch == new_epoch && &*after.stamp.origin == "phoenix",
        "{after:?}"
    );
    // A client that connects only now works too.
    let late = Client::connect(options(&b)).await?;
    let mut late_sub = late.subscribe("life.#").await?;
    sync_subscriptions(&publisher, &mut [&mut late_sub], "life").await?;
    Ok(())
}

/// A broadcaster, a publisher client, and a subscriber client whose PUB
/// traffic goes through a pausable proxy.
struct Paused {
    b: BroadcasterProcess,
    proxy: PausableProxy,
    publisher: Client,
    subscriber: Client,
    sub: Subscription,
}

async fn paused_setup(id: &str, extra: &[&str]) -> Result<Paused> {
    let mut args = vec![
        "--id",
        id,
        "--heartbeat-ms",
        "100",
        "--subscriber-queue-bytes",
        "65536",
    ];
    args.extend_from_slice(extra);
    let b = BroadcasterProcess::spawn(&args).await?;
    let proxy = PausableProxy::start(&b.endpoints().publish).await?;
    let e = b.endpoints();
    // A long heartbeat timeout: the pause must look like a slow network,
    // not a dead broadcaster.
    let sub_opts =
        fanfare_client::ClientOptions::new(e.pull.clone(), proxy.endpoint(), e.replay.clone())
            .heartbeat_timeout(Duration::from_secs(60));
    let subscriber = Client::connect(sub_opts).await?;
    let publisher = Client::connect(options(&b).publisher_id("pauser")).await?;
    let mut sub = subscriber.subscribe("gap.#").await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "gap").await?;
    Ok(Paused {
        b,
        proxy,
        publisher,
        subscriber,
        sub,
    })
}

/// While the proxy is paused, publishes indexed 1 KiB messages in chunks
/// until the broadcaster counts drops, then `extra` more. Returns how many.
async fn publish_until_dropped(p: &Paused, extra: u64) -> Result<u64> {
    let admin = p.b.endpoints().admin_addr()?.to_owned();
    let mut n = 0u64;
    loop {
        ensure!(
            n < 200_000,
            "the broadcaster never dropped for the paused subscriber"
        );
        for _ in 0..500 {
            p.publisher
                .publish("gap.x", indexed_payload(n, 1024))
                .await?;
            n += 1;
        }
        let text = metrics::fetch(&admin).await?;
        if metrics::value_or_zero(&text, "fanfare_egress_dropped_total", &[]) > 0.0 {
            break;
        }
    }
    for _ in 0..extra {
        p.publisher
            .publish("gap.x", indexed_payload(n, 1024))
            .await?;
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_subscriber_gets_dropped_messages_replayed_in_order() -> Result<()> {
    let mut p = paused_setup("gap-repair", &[]).await?;
    let mut events = p.subscriber.events();
    p.proxy.pause();
    let n = publish_until_dropped(&p, 100).await?;
    p.proxy.resume();
    let mut replayed = 0u64;
    let mut last_seq = 0;
    for i in 0..n {
        let m = next_data(&mut p.sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("message {i} of {n}"))?;
        ensure!(
            index_of(&m.payload) == Some(i),
            "message {i} in order, exactly once"
        );
        ensure!(m.stamp.seq > last_seq, "stamp order");
        last_seq = m.stamp.seq;
        replayed += u64::from(m.replayed);
    }
    ensure!(
        replayed > 0,
        "some of the {n} messages came from history (replayed)"
    );
    wait_event(&mut events, RECV_TIMEOUT, |e| {
        matches!(e, ClientEvent::GapRepaired { .. })
    })
    .await?;
    // Live again afterwards, not flagged replayed.
    p.publisher.publish("gap.x", indexed_payload(n, 8)).await?;
    let m = next_data(&mut p.sub, RECV_TIMEOUT).await?;
    ensure!(
        index_of(&m.payload) == Some(n) && !m.replayed,
        "live after repair: {m:?}"
    );
    eprintln!("{n} messages, {replayed} repaired from history");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_beyond_a_tiny_history_is_an_explicit_gap() -> Result<()> {
    let mut p = paused_setup("gap-lost", &["--history-count", "200"]).await?;
    let mut events = p.subscriber.events();
    p.proxy.pause();
    // 2000 more after the first drop: the dropped ones leave the 200-message history.
    let n = publish_until_dropped(&p, 2000).await?;
    p.proxy.resume();
    let mut delivered: Vec<(u64, u64)> = Vec::new(); // (index, seq)
    let mut gaps = Vec::new();
    loop {
        let d = next_delivery(&mut p.sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("after {} messages, {} gaps", delivered.len(), gaps.len()))?;
        match d {
            Delivery::Message(m) if is_probe(&m) => {}
            Delivery::Message(m) => {
                let i = index_of(&m.payload).context("index")?;
                if let Some(&(pi, ps)) = delivered.last() {
                    ensure!(i > pi && m.stamp.seq > ps, "order: {i} after {pi}");
                }
                delivered.push((i, m.stamp.seq));
                if i == n - 1 {
                    break;
                }
            }
            Delivery::Gap(g) => {
                ensure!(g.reason == GapReason::Expired, "gap reason {:?}", g.reason);
                gaps.push(g);
            }
            Delivery::Watermark(w) => bail!("a watermark nobody asked for: {w:?}"),
            Delivery::Closed(r) => bail!("closed: {r:?}"),
        }
    }
    ensure!(!gaps.is_empty(), "the loss was reported as a gap");
    // One publisher, one origin: seq = seq0 + index.
    let (i0, s0) = delivered[0];
    let seq0 = s0 - i0;
    for i in 0..n {
        let seq = seq0 + i;
        let got = delivered.binary_search_by_key(&i, |&(x, _)| x).is_ok();
        let in_gap = gaps.iter().any(|g| g.first <= seq && seq <= g.last);
        ensure!(
            got ^ in_gap,
            "index {i} (seq {seq}): delivered={got}, in a gap={in_gap}"
        );
    }
    let ev = wait_event(&mut events, RECV_TIMEOUT, |e| {
        matches!(e, ClientEvent::GapUnrecoverable(_))
    })
    .await?;
    eprintln!(
        "{n} published, {} delivered, gaps {:?}; event {ev:?}",
        delivered.len(),
        gaps.iter().map(|g| (g.first, g.last)).collect::<Vec<_>>()
    );
    Ok(())
}
