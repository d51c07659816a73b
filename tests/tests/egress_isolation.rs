//! Slow consumers never slow others, seen from plain ZeroMQ subscribers
//! (no client-side repair): a subscriber that stops reading does not slow a
//! healthy one, its misses are counted in `egress_dropped_total`, and a
//! burst larger than a subscriber's queue still reaches an idle subscriber.
//!
//! "Does not slow" is measured on the healthy subscriber alone, never as a
//! ratio of two runs (on a loaded 2-core machine the ratio of two timings
//! is noise): the publisher sends a window and waits for the healthy
//! subscriber to have it, so if the broadcaster ever waited on the stalled
//! subscriber the healthy one would stall with it. Each window must arrive
//! within [`WINDOW_DEADLINE`] and the whole run within [`RUN_DEADLINE`],
//! in order and without a gap, while the stalled one demonstrably loses
//! (its drops are counted during the run).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::{metrics, sockets, RECV_TIMEOUT};
use zeromq::{PushSocket, SubSocket};

const N: usize = 30_000;
const PAYLOAD: usize = 1000;
/// Longest a window of [`WINDOW`] messages may take to reach the healthy
/// subscriber (generous: a debug build on a loaded machine takes ~10 ms).
const WINDOW_DEADLINE: Duration = Duration::from_secs(5);
/// Longest the whole run may take for the healthy subscriber.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Messages per window: the publisher sends a window, then waits for the
/// healthy subscriber to have it, so that subscriber never overruns its
/// queue and must lose nothing.
const WINDOW: usize = 200;

/// Pushes N messages (index in the first 8 bytes) in windows read back by
/// `sub`; checks that `sub` had all N, in order, without a gap, each window
/// within [`WINDOW_DEADLINE`]. Returns the total time and the slowest window.
async fn run_stream(
    push: &mut PushSocket,
    sub: &mut SubSocket,
    topic: &str,
) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut p = vec![b'x'; PAYLOAD];
    let mut last_seq = None;
    for w in 0..N / WINDOW {
        let window_started = Instant::now();
        for i in w * WINDOW..(w + 1) * WINDOW {
            p[..8].copy_from_slice(&(i as u64).to_be_bytes());
            sockets::publish(push, topic, p.clone()).await?;
        }
        for i in w * WINDOW..(w + 1) * WINDOW {
            let m = sockets::recv_broadcast(sub, RECV_TIMEOUT)
                .await
                .with_context(|| format!("healthy subscriber, message {i} of {N}"))?;
            ensure!(m.topic == topic, "topic {}", m.topic);
            ensure!(
                m.payload[..8] == (i as u64).to_be_bytes(),
                "healthy subscriber: message {i} missing or out of order (seq {})",
                m.seq
            );
            if let Some(prev) = last_seq {
                ensure!(
                    m.seq == prev + 1,
                    "no gap for the healthy subscriber at {i}"
                );
            }
            last_seq = Some(m.seq);
        }
        let took = window_started.elapsed();
        ensure!(
            took <= WINDOW_DEADLINE,
            "window {w} took {took:?} to reach the healthy subscriber"
        );
        slowest = slowest.max(took);
    }
    Ok((started.elapsed(), slowest))
}

#[tokio::test]
async fn stalled_subscriber_does_not_slow_a_healthy_one() -> Result<()> {
    let b =
        BroadcasterProcess::spawn(&["--id", "isolation", "--subscriber-queue-bytes", "4194304"])
            .await?;
    let mut healthy = sockets::sub(&b.endpoints().publish, &["s."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut healthy, "s").await?;

    // A subscriber to the same topics that never reads.
    let mut stalled = sockets::sub(&b.endpoints().publish, &["s."]).await?;
    sockets::sync_subscription(&mut push, &mut stalled, "s").await?;
    let admin = b.endpoints().admin_addr()?.to_owned();
    let dropped = |text: &str| metrics::value_or_zero(text, "fanfare_egress_dropped_total", &[]);
    let before = dropped(&metrics::fetch(&admin).await?);
    let (total, slowest) = run_stream(&mut push, &mut healthy, "s.shared").await?;
    eprintln!(
        "healthy subscriber next to a stalled one: {N} in {total:?}, slowest window {slowest:?}"
    );
    ensure!(
        total <= RUN_DEADLINE,
        "a stalled subscriber slowed a healthy one: {N} messages took {total:?}"
    );

    // The stalled one's misses are counted (30 MB > 4 MiB queue + socket buffers).
    let after = dropped(&metrics::fetch(&admin).await?);
    ensure!(
        after > before,
        "misses of the stalled subscriber counted during the run: {before} -> {after}"
    );
    drop(stalled);
    Ok(())
}

#[tokio::test]
async fn burst_larger_than_the_queue_still_reaches_an_idle_subscriber() -> Result<()> {
    // 300 × 64 KiB = 19.2 MiB in one burst against a 1 MiB subscriber queue.
    let b = BroadcasterProcess::spawn(&["--id", "burst", "--subscriber-queue-bytes", "1048576"])
        .await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["burst."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "burst").await?;
    for i in 0..300u32 {
        let mut p = vec![0u8; 64 * 1024];
        p[..4].copy_from_slice(&i.to_be_bytes());
        sockets::publish(&mut push, "burst.big", Bytes::from(p)).await?;
    }
    // The subscriber's queue was empty: the head of the burst fits and must
    // arrive (the rest may be dropped and is repairable from history).
    let first = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT)
        .await
        .context("an idle subscriber got nothing of a burst larger than its queue")?;
    ensure!(
        first.payload[..4] == 0u32.to_be_bytes(),
        "the head of the burst comes first"
    );
    Ok(())
}
