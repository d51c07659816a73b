//! `subscribe_from` far behind while live traffic keeps coming (TEAM-LOG
//! finding 3): live messages that arrive while history is in flight must
//! not close the subscription as a slow consumer; past the subscription's
//! bound they are dropped and fetched from history instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fanfare_client::{Client, CloseReason, Delivery, Position, ReplayQuery};
use fanfare_tests::client::{connect, next_delivery, next_message, options};
use fanfare_tests::process::BroadcasterProcess;
use tokio::sync::watch;

/// Every receive (and a client's connect) in these tests waits at most this long.
const RECV: Duration = Duration::from_secs(15);

/// The subscription's bound (as in the finding).
const CAPACITY: usize = 64;
/// Messages published before resuming: the position is this far behind.
const BACKLOG: u64 = 5_000;
/// Messages published at a steady pace while the subscription catches up.
const STREAM: u64 = 20_000;
/// The stream's slowest pace: this many messages per millisecond. It is
/// raised so that at least [`PER_RTT`] live messages arrive per replay
/// round trip, however fast this machine answers one.
const PER_MS: u64 = 50;
/// Live messages per replay round trip the stream must reach (a multiple
/// of the capacity: the catch-up must overflow the subscription's bound).
const PER_RTT: u64 = 2 * CAPACITY as u64;
/// The stream's fastest pace (messages per millisecond).
const MAX_PER_MS: u64 = 2_000;
/// Messages the stream goes on with once the reader is near, one at a time,
/// each after the reader had the one before.
const AFTER_CAUGHT_UP: u64 = 200;
/// How close to the stream's head the reader is "near".
const NEAR: u64 = 2_000;

fn index(m: &fanfare_client::Message) -> Result<u64> {
    Ok(std::str::from_utf8(&m.payload)?.parse()?)
}

/// Median time of the history query a catch-up from `seq` starts with
/// (one reply, cut at the broadcaster's reply limit): one replay round trip.
async fn replay_round_trip(c: &Client, origin: &str, epoch: u64, seq: u64) -> Result<Duration> {
    let mut took = Vec::new();
    for _ in 0..5 {
        let q = ReplayQuery::since(origin, epoch, seq + 1);
        let started = Instant::now();
        let batch = tokio::time::timeout(RECV, c.replay(q)).await??;
        took.push(started.elapsed());
        ensure!(!batch.messages.is_empty(), "the backlog is in history");
    }
    took.sort();
    Ok(took[took.len() / 2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_far_behind_under_steady_traffic_gets_everything_once_in_order() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .with_test_writer()
        .try_init();
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let publisher = connect(&b, RECV).await?;
    let c = Client::connect(
        options(&b)
            .connect_timeout(RECV)
            .subscription_capacity(CAPACITY),
    )
    .await?;

    // The position: message 0, as a plain subscription saw it.
    let mut probe = c.subscribe("steady.#").await?;
    publisher.publish("steady.x", "0").await?;
    let first = next_message(&mut probe, RECV).await?;
    ensure!(index(&first)? == 0, "the probe sees message 0");
    drop(probe);
    let (origin, epoch) = (first.stamp.origin.to_string(), first.stamp.epoch);
    let mut position = Position::new();
    position.advance(&origin, epoch, first.stamp.seq);
    for i in 1..=BACKLOG {
        publisher.publish("steady.x", i.to_string()).await?;
    }
    // `publish` returns once a message is queued: wait until the
    // broadcaster has stamped the whole backlog into history.
    let stored = first.stamp.seq + BACKLOG;
    tokio::time::timeout(RECV, async {
        loop {
            let q = ReplayQuery::since(&origin, epoch, stored);
            match c.replay(q).await {
                Ok(batch) if batch.newest >= stored => return,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the backlog did not reach history within {RECV:?}"))?;
    let rtt = replay_round_trip(&c, &origin, epoch, first.stamp.seq).await?;
    // A fast machine answers a replay quickly: publish faster there, so the
    // catch-up still overflows the capacity (the test's precondition holds
    // by construction instead of by the machine's speed).
    let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
    let per_ms = (PER_RTT * 1000).div_ceil(rtt_us).clamp(PER_MS, MAX_PER_MS);
    let per_rtt = per_ms as f64 * rtt.as_secs_f64() * 1000.0;
    eprintln!("replay round trip {rtt:?}: {per_ms}/ms, ~{per_rtt:.0} live messages per round trip");
    ensure!(
        per_rtt > CAPACITY as f64,
        "the stream must outpace the capacity per round trip ({per_ms}/ms, rtt {rtt:?})"
    );

    // A steady stream, started before resuming, at `per_ms` while the
    // subscription is far behind. Once the reader is within NEAR of the
    // stream's head the stream goes on one message at a time, each only
    // after the reader had everything before it: the subscription then goes
    // live, where the live rule (a full queue closes) would otherwise give a
    // CPU-starved reader about one millisecond of slack at the fast pace.
    // That rule is not what this test is about.
    let caught_up = Arc::new(AtomicBool::new(false));
    let head = Arc::new(AtomicU64::new(BACKLOG));
    let read = Arc::new(AtomicU64::new(0));
    let (done_tx, mut done) = watch::channel(None::<u64>);
    let stream = tokio::spawn({
        let p = publisher.clone();
        let caught_up = caught_up.clone();
        let head = head.clone();
        let read = read.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut last = BACKLOG;
            let mut after = 0;
            while last < BACKLOG + STREAM && after < AFTER_CAUGHT_UP {
                tick.tick().await;
                let n = if caught_up.load(Ordering::Relaxed) {
                    if read.load(Ordering::Relaxed) < last {
                        continue;
                    }
                    after += 1;
                    1
                } else {
                    per_ms.min(BACKLOG + STREAM - last)
                };
                for _ in 0..n {
                    last += 1;
                    p.publish("steady.x", last.to_string()).await?;
                }
                head.store(last, Ordering::Relaxed);
            }
            done_tx.send_replace(Some(last));
            anyhow::Ok(())
        }
    });

    let mut resumed = c.subscribe_from("steady.#", position).await?;
    let started = Instant::now();
    let (mut replayed, mut live) = (0u64, 0u64);
    let mut expected = 1;
    while done.borrow().is_none_or(|total| expected <= total) {
        let d = tokio::select! {
            d = next_delivery(&mut resumed, RECV) => d.with_context(|| format!("waiting for message {expected}"))?,
            // The stream ended (or failed: then `stream` tells why).
            r = done.changed(), if done.borrow().is_none() => match r {
                Ok(()) => continue,
                Err(_) => break,
            },
        };
        let m = match d {
            Delivery::Message(m) => m,
            Delivery::Closed(CloseReason::SlowConsumer { position }) => {
                bail!("closed as a slow consumer at {expected} (position {position}) while reading promptly")
            }
            other => bail!("expected message {expected}, got {other:?}"),
        };
        ensure!(
            index(&m)? == expected,
            "exactly once, in order: expected {expected}, got {}",
            index(&m)?
        );
        if m.replayed {
            replayed += 1;
        } else {
            live += 1;
        }
        if head.load(Ordering::Relaxed).saturating_sub(expected) < NEAR {
            caught_up.store(true, Ordering::Relaxed);
        }
        read.store(expected, Ordering::Relaxed);
        expected += 1;
    }
    stream.await??;
    eprintln!(
        "{} messages in {:?}: {replayed} from history, {live} live",
        expected - 1,
        started.elapsed()
    );
    ensure!(replayed >= BACKLOG, "the backlog came from history");
    let fast = expected - 1 - BACKLOG - live.min(AFTER_CAUGHT_UP);
    ensure!(
        fast >= 10 * CAPACITY as u64,
        "live traffic outran the catch-up: {fast} messages at {per_ms}/ms while it ran"
    );

    // Caught up: later traffic flows live.
    publisher.publish("steady.x", "last").await?;
    let last = next_message(&mut resumed, RECV).await?;
    ensure!(last.payload == "last", "then live: {last:?}");
    Ok(())
}
