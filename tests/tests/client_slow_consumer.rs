//! Slow consumers through fanfare-client. A subscriber whose network stalls
//! (a paused proxy) is pushed past the broadcaster's per-subscriber queue;
//! resumed, it still gets every message in order thanks to repair, and
//! meanwhile a healthy subscriber is not slowed: measured on the healthy one
//! alone (never as a ratio of two timings, which is noise on a loaded
//! 2-core machine), it gets every message in order with no pause longer
//! than [`STALL_DEADLINE`] and all of them within [`RUN_DEADLINE`], while
//! the stalled one's drops are counted. A subscriber whose *application* stops reading
//! is closed with `SlowConsumer { position }` and resumes from that
//! position without loss.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fanfare_client::{Client, ClientEvent, ClientOptions, CloseReason, Delivery, Subscription};
use fanfare_tests::client::{
    index_of, indexed_payload, is_probe, next_data, next_delivery, options, sync_subscriptions,
    wait_event,
};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::proxy::PausableProxy;
use fanfare_tests::{metrics, RECV_TIMEOUT};

const N: u64 = 10_000;
const PAYLOAD: usize = 512;
/// Longest the healthy subscriber may wait between two messages (generous:
/// a broadcaster waiting on the stalled peer would stop it for good).
const STALL_DEADLINE: Duration = Duration::from_secs(5);
/// Longest the whole run may take for the healthy subscriber.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Publishes `N` indexed messages on `topic` while `sub` reads them; checks
/// order, exactly-once and that no two messages are more than
/// [`STALL_DEADLINE`] apart. Returns the total time and the longest pause.
async fn timed_stream(
    publisher: &Client,
    sub: &mut Subscription,
    topic: &str,
) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    let writer = async {
        for i in 0..N {
            publisher
                .publish(topic, indexed_payload(i, PAYLOAD))
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let reader = async {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        for i in 0..N {
            let m = next_data(sub, STALL_DEADLINE)
                .await
                .with_context(|| format!("healthy: message {i} of {N}"))?;
            longest = longest.max(last.elapsed());
            last = Instant::now();
            ensure!(m.topic.as_ref() == topic, "topic {}", m.topic);
            ensure!(
                index_of(&m.payload) == Some(i),
                "healthy: message {i} in order"
            );
        }
        Ok((started.elapsed(), longest))
    };
    let ((), took) = tokio::try_join!(writer, reader)?;
    Ok(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_slow_others_and_gets_everything_after_resuming() -> Result<()>
{
    let b = BroadcasterProcess::spawn(&[
        "--id",
        "slow",
        "--heartbeat-ms",
        "100",
        "--subscriber-queue-bytes",
        "262144",
    ])
    .await?;
    let publisher = Client::connect(options(&b).publisher_id("slow-pub")).await?;
    // Subscription queues hold a whole run: this test is about a stalled
    // network, not an application that reads slowly (see the next test).
    let capacity = 2 * N as usize;
    let healthy_client = Client::connect(options(&b).subscription_capacity(capacity)).await?;
    let mut healthy = healthy_client.subscribe("s.#").await?;

    // A second subscriber behind a proxy that stops forwarding.
    let proxy = PausableProxy::start(&b.endpoints().publish).await?;
    let e = b.endpoints();
    let stalled_client = Client::connect(
        ClientOptions::new(e.pull.clone(), proxy.endpoint(), e.replay.clone())
            .heartbeat_timeout(Duration::from_secs(60))
            .subscription_capacity(capacity),
    )
    .await?;
    let mut stalled = stalled_client.subscribe("s.#").await?;
    sync_subscriptions(&publisher, &mut [&mut stalled, &mut healthy], "s").await?;
    proxy.pause();
    let (total, longest) = timed_stream(&publisher, &mut healthy, "s.shared").await?;
    eprintln!(
        "healthy subscriber next to a stalled one: {N} in {total:?}, longest pause {longest:?}"
    );
    ensure!(
        total <= RUN_DEADLINE,
        "a stalled subscriber slowed a healthy one: {N} messages took {total:?}"
    );
    let text = metrics::fetch(b.endpoints().admin_addr()?).await?;
    let dropped = metrics::value_or_zero(&text, "fanfare_egress_dropped_total", &[]);
    ensure!(
        dropped > 0.0,
        "the stalled subscriber was pushed past its queue: {dropped}"
    );

    // Resumed: everything, in order, exactly once, the lost part repaired.
    proxy.resume();
    let mut replayed = 0u64;
    for i in 0..N {
        let m = next_data(&mut stalled, RECV_TIMEOUT)
            .await
            .with_context(|| format!("stalled: message {i} of {N}"))?;
        ensure!(m.topic.as_ref() == "s.shared", "topic {}", m.topic);
        ensure!(
            index_of(&m.payload) == Some(i),
            "stalled: message {i} in order"
        );
        replayed += u64::from(m.replayed);
    }
    ensure!(
        replayed > 0,
        "repair filled what the broadcaster dropped ({dropped} drops)"
    );
    eprintln!("stalled subscriber: {N} delivered after resuming, {replayed} from history");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_that_stops_reading_is_closed_with_a_position_and_resumes() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "lazy", "--heartbeat-ms", "100"]).await?;
    let publisher = Client::connect(options(&b).publisher_id("lazy-pub")).await?;
    let c = Client::connect(options(&b).subscription_capacity(64)).await?;
    let mut events = c.events();
    let mut sub = c.subscribe("lazy.#").await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "lazy").await?;
    const TOTAL: u64 = 1000;
    for i in 0..TOTAL {
        publisher.publish("lazy.x", indexed_payload(i, 64)).await?;
    }
    let ev = wait_event(&mut events, RECV_TIMEOUT, |e| {
        matches!(e, ClientEvent::SlowConsumer { .. })
    })
    .await?;
    // Now read: what was queued, then the close with a position.
    let mut seen: Vec<u64> = Vec::new();
    let position = loop {
        match next_delivery(&mut sub, RECV_TIMEOUT).await? {
            Delivery::Message(m) if is_probe(&m) => {}
            Delivery::Message(m) => seen.push(index_of(&m.payload).context("index")?),
            Delivery::Closed(CloseReason::SlowConsumer { position }) => break position,
            other => bail!("unexpected {other:?}"),
        }
    };
    ensure!(
        seen.len() < TOTAL as usize,
        "closed before everything: {}",
        seen.len()
    );
    ensure!(
        seen.iter().copied().eq(0..seen.len() as u64),
        "in order up to the close"
    );
    ensure!(
        matches!(
            tokio::time::timeout(RECV_TIMEOUT, futures::StreamExt::next(&mut sub)).await,
            Ok(None)
        ),
        "Closed is the subscription's last item"
    );
    // Resume from the position. A resumed subscription may itself be closed
    // as slow again while live traffic is still pouring in (its held live
    // messages are bounded by the same capacity); then resume again from the
    // newer position. No message may be skipped.
    let mut next = seen.len() as u64;
    let mut from = position.clone();
    let mut resumes = 0;
    'resume: while next < TOTAL {
        resumes += 1;
        ensure!(
            resumes <= 5,
            "no progress resuming: stuck at {next} of {TOTAL} from {from}"
        );
        let mut resumed = c.subscribe_from("lazy.#", from.clone()).await?;
        while next < TOTAL {
            match next_delivery(&mut resumed, RECV_TIMEOUT)
                .await
                .with_context(|| format!("resumed at {next} of {TOTAL} from {from}"))?
            {
                Delivery::Message(m) if is_probe(&m) => {}
                Delivery::Message(m) => {
                    let i = index_of(&m.payload).context("index")?;
                    // A few may come twice (documented); none may be skipped.
                    ensure!(i <= next, "skipped {next}..{i}");
                    if i == next {
                        next += 1;
                    }
                }
                Delivery::Closed(CloseReason::SlowConsumer { position }) => {
                    from = position;
                    continue 'resume;
                }
                other => bail!("unexpected {other:?}"),
            }
        }
    }
    eprintln!("resumed {resumes} time(s)");
    eprintln!(
        "closed after {} ({ev:?}), resumed from {position} to {TOTAL}",
        seen.len()
    );
    Ok(())
}
