//! Graceful shutdown: SIGTERM (and SIGINT) → exit 0 within a bound, with
//! every message the broadcaster had taken before the signal forwarded, and
//! what peers had sent but it had not read yet (data left in its sockets
//! while the process was SIGSTOPped) forwarded too; new connections are
//! refused during the drain.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::endpoints::Endpoints;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::wait::eventually;
use fanfare_tests::zmtp::{self, RawPeer};
use fanfare_tests::{metrics, sockets, RECV_TIMEOUT};

/// The broadcaster's drain budget in these tests (`--shutdown-timeout-ms`).
const DRAIN_MS: u64 = 5000;
/// Exit must come within the drain budget plus this slack.
const EXIT_SLACK: Duration = Duration::from_secs(5);

#[tokio::test]
async fn sigterm_forwards_queued_messages_and_exits_zero() -> Result<()> {
    const N: usize = 20_000;
    let mut b = BroadcasterProcess::spawn(&[
        "--id",
        "shutdown",
        "--shutdown-timeout-ms",
        &DRAIN_MS.to_string(),
        // Room for everything in the subscriber's queue: the test stalls it
        // on purpose so that messages are still queued at the signal.
        "--subscriber-queue-bytes",
        "67108864",
    ])
    .await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["drain."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "drain").await?;
    let payload = Bytes::from(vec![b'q'; 1000]);
    for i in 0..N {
        let mut p = payload.to_vec();
        p[..8].copy_from_slice(&(i as u64).to_be_bytes());
        sockets::publish(&mut push, "drain.x", p).await?;
    }
    // The subscriber has not read anything yet: most of the ~20 MB is queued
    // in the broadcaster. Wait until it has taken every message, then signal.
    let admin = b.endpoints().admin_addr()?.to_owned();
    eventually(RECV_TIMEOUT * 3, "broadcaster took every message", || {
        let admin = admin.clone();
        async move {
            let text = metrics::fetch(&admin).await.ok()?;
            let n = metrics::value_or_zero(&text, "fanfare_ingress_messages_total", &[]);
            (n >= N as f64).then_some(())
        }
    })
    .await?;
    b.sigterm()?;
    let signalled = Instant::now();
    for i in 0..N {
        let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("message {i} of {N} after SIGTERM"))?;
        ensure!(
            m.payload[..8] == (i as u64).to_be_bytes(),
            "message {i} in order after SIGTERM"
        );
    }
    let status = b
        .wait_exit(Duration::from_millis(DRAIN_MS) + EXIT_SLACK)
        .await
        .context("exit after SIGTERM")?;
    ensure!(status.success(), "exit status {status}");
    eprintln!(
        "drained {N} messages and exited in {:?}",
        signalled.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_when_idle_exits_zero_quickly() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "idle"]).await?;
    // Clients connected to every socket must not hold the shutdown up.
    let _sub = sockets::sub(&b.endpoints().publish, &[""]).await?;
    let _push = sockets::push(&b.endpoints().pull).await?;
    let _dealer = sockets::dealer(&b.endpoints().replay).await?;
    b.sigterm()?;
    let status = b.wait_exit(Duration::from_secs(5)).await?;
    ensure!(status.success(), "exit status {status}");
    Ok(())
}

#[tokio::test]
async fn sigint_exits_zero() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "sigint"]).await?;
    b.sigint()?;
    let status = b.wait_exit(Duration::from_secs(5)).await?;
    ensure!(status.success(), "exit status {status}");
    Ok(())
}

#[tokio::test]
async fn stalled_subscriber_cannot_hold_shutdown_beyond_the_drain_budget() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&[
        "--id",
        "stall-exit",
        "--shutdown-timeout-ms",
        "1000",
        "--subscriber-queue-bytes",
        "67108864",
    ])
    .await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["stall."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "stall").await?;
    for _ in 0..20_000 {
        sockets::publish(&mut push, "stall.x", Bytes::from(vec![0u8; 1000])).await?;
    }
    // `sub` never reads again.
    let started = Instant::now();
    b.sigterm()?;
    let status = b.wait_exit(Duration::from_secs(1) + EXIT_SLACK).await?;
    ensure!(status.success(), "exit status {status}");
    eprintln!(
        "exited in {:?} with a stalled subscriber",
        started.elapsed()
    );
    drop(sub);
    Ok(())
}

#[tokio::test]
async fn sigterm_forwards_data_still_unread_in_sockets_and_refuses_new_connections() -> Result<()> {
    // Messages that fit in the kernel's socket buffers while the
    // broadcaster is stopped (64 KiB and change: well under loopback's
    // defaults), so they are surely unread when SIGTERM arrives.
    const N: usize = 64;
    let mut b = BroadcasterProcess::spawn(&[
        "--id",
        "unread",
        "--shutdown-timeout-ms",
        &DRAIN_MS.to_string(),
    ])
    .await?;
    let e = b.endpoints().clone();
    let mut sub = sockets::sub(&e.publish, &["unread."]).await?;
    let mut push = sockets::push(&e.pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "unread").await?;
    // A raw PUSH peer writes while the process is stopped, and a raw SUB
    // that never reads holds the drain open (up to DRAIN_MS) so that the
    // refusal of new connections is seen while the broadcaster still runs.
    let mut raw = RawPeer::handshake(&e.pull, "PUSH").await?;
    let mut holder = RawPeer::handshake(&e.publish, "SUB").await?;
    holder.subscribe("unread.").await?;
    let mut p = vec![b'u'; 1000];
    sockets::sync_subscription(&mut push, &mut sub, "unread").await?;
    for i in 0..20_000u64 {
        // Enough to fill the holder's socket buffers.
        p[..8].copy_from_slice(&i.to_be_bytes());
        sockets::publish(&mut push, "unread.fill", p.clone()).await?;
    }
    // The fill only has to fill the holder's buffers. `sub` reads it too,
    // and on a loaded machine its own bounded egress queue may drop part of
    // it (counted; real clients repair that): read it in order until its
    // last message, or until it has been quiet for 2 s.
    let mut last: Option<u64> = None;
    while let Ok(m) = sockets::recv_broadcast(&mut sub, Duration::from_secs(2)).await {
        let i = m
            .payload
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .context("fill payload")?;
        ensure!(
            last.is_none_or(|l| l < i),
            "fill {i} after {last:?}: out of order"
        );
        last = Some(i);
        if i == 19_999 {
            break;
        }
    }
    ensure!(last.is_some(), "no fill message reached the subscriber");

    b.sigstop()?;
    let mut wire = Vec::new();
    for i in 0..N as u64 {
        p[..8].copy_from_slice(&i.to_be_bytes());
        wire.extend(zmtp::multipart(&[b"unread.x", &p]));
    }
    raw.send(&wire)
        .await
        .context("kernel buffers took the data")?;
    b.sigterm()?;
    b.sigcont()?;

    // New connections are refused while the drain still runs.
    let pull = Endpoints::tcp_addr(&e.pull).to_owned();
    eventually(RECV_TIMEOUT, "new connections refused", || {
        let pull = pull.clone();
        async move {
            tokio::net::TcpStream::connect(pull)
                .await
                .is_err()
                .then_some(())
        }
    })
    .await?;
    ensure!(
        b.is_running(),
        "refusal seen while the broadcaster drains (not after it exited)"
    );

    for i in 0..N as u64 {
        let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("unread message {i} of {N} after SIGTERM"))?;
        ensure!(
            m.topic == "unread.x" && m.payload[..8] == i.to_be_bytes(),
            "unread message {i} forwarded in order after SIGTERM"
        );
    }
    let status = b
        .wait_exit(Duration::from_millis(DRAIN_MS) + EXIT_SLACK)
        .await
        .context("exit after SIGTERM")?;
    ensure!(status.success(), "exit status {status}");
    drop(holder);
    Ok(())
}
