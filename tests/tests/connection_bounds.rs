//! Connections are bounded after the handshake too: a started frame must
//! finish within `--frame-deadline-ms`, silent PULL/replay peers are cut
//! after `--idle-timeout-ms`, a subscriber that takes no bytes is cut after
//! `--write-stall-ms`, the caps fit under the open-file limit, and at the
//! cap an idle peer is evicted for a new one. Each attack runs against the
//! real binary; the admin endpoint must keep answering.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::http::http_get;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::procfs::rss_kib;
use fanfare_tests::sockets;
use fanfare_tests::wait::eventually;
use fanfare_tests::zmtp::{frame_header, RawPeer, FLAG_LONG};
use fanfare_tests::{metrics, RECV_TIMEOUT};

/// Polls `/metrics` until `metric{socket=label}` reaches `at_least`.
async fn expect_metric(
    b: &BroadcasterProcess,
    metric: &str,
    label: &str,
    at_least: f64,
) -> Result<f64> {
    let admin = b.endpoints().admin_addr()?.to_owned();
    eventually(RECV_TIMEOUT, metric, || {
        let admin = admin.clone();
        async move {
            let text = metrics::fetch(&admin).await.ok()?;
            let v = metrics::value_or_zero(&text, metric, &[("socket", label)]);
            (v >= at_least).then_some(v)
        }
    })
    .await
    .with_context(|| format!("{metric}{{socket={label}}} >= {at_least}"))
}

async fn metric_now(b: &BroadcasterProcess, metric: &str, label: &str) -> Result<f64> {
    let text = metrics::fetch(b.endpoints().admin_addr()?).await?;
    Ok(metrics::value_or_zero(&text, metric, &[("socket", label)]))
}

async fn healthz(b: &BroadcasterProcess) -> Result<()> {
    let r = http_get(b.endpoints().admin_addr()?, "/healthz").await?;
    ensure!(r.status == 200, "/healthz: {}", r.status);
    Ok(())
}

/// A message pushed now reaches a fresh subscriber.
async fn round_trip(b: &BroadcasterProcess, tag: &str) -> Result<()> {
    let mut sub = sockets::sub(&b.endpoints().publish, &["alive."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "alive").await?;
    let topic = format!("alive.{tag}");
    sockets::publish(&mut push, &topic, Bytes::from_static(b"x")).await?;
    let got = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
    ensure!(got.topic == topic, "got {got:?}");
    Ok(())
}

#[tokio::test]
async fn peers_stalled_mid_frame_are_cut_within_the_deadline_and_memory_returns() -> Result<()> {
    const PEERS: usize = 100;
    const FRAME: u64 = 1024 * 1024;
    let b = BroadcasterProcess::spawn(&["--id", "stall", "--frame-deadline-ms", "1500"]).await?;
    let pid = b.pid().context("pid")?;
    let rss_before = rss_kib(pid)?;
    let started = Instant::now();
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        let mut p = RawPeer::handshake(&b.endpoints().pull, "PUSH").await?;
        // One byte short of a 1 MiB frame, then nothing.
        p.send(&frame_header(FLAG_LONG, FRAME)).await?;
        p.send(&vec![7u8; FRAME as usize - 1]).await?;
        peers.push(p);
    }
    let rss_during = rss_kib(pid)?;
    // Stalls on the other sockets too (their frame limits are small).
    let mut others = Vec::new();
    for (endpoint, ty) in [
        (&b.endpoints().publish, "SUB"),
        (&b.endpoints().replay, "DEALER"),
    ] {
        let mut p = RawPeer::handshake(endpoint, ty).await?;
        p.send(&frame_header(0, 200)).await?;
        p.send(&[1u8; 100]).await?;
        others.push(p);
    }
    for p in peers.iter_mut().chain(others.iter_mut()) {
        p.expect_closed(RECV_TIMEOUT)
            .await
            .context("stalled peer still open")?;
    }
    let took = started.elapsed();
    healthz(&b).await?;
    expect_metric(
        &b,
        "fanfare_frame_deadline_disconnects_total",
        "pull",
        PEERS as f64,
    )
    .await?;
    expect_metric(&b, "fanfare_frame_deadline_disconnects_total", "pub", 1.0).await?;
    expect_metric(
        &b,
        "fanfare_frame_deadline_disconnects_total",
        "replay",
        1.0,
    )
    .await?;
    round_trip(&b, "after-stall").await?;
    let rss_after = rss_kib(pid)?;
    eprintln!(
        "{PEERS} stalled 1 MiB frames: RSS {rss_before} -> {rss_during} -> {rss_after} KiB, all cut after {took:?}"
    );
    ensure!(took < Duration::from_secs(30), "cut after {took:?}");
    ensure!(
        rss_after < rss_before + 48 * 1024,
        "the stalled frames' buffers were not released: RSS {rss_before} -> {rss_after} KiB"
    );
    Ok(())
}

#[tokio::test]
async fn silent_pull_and_replay_peers_time_out_but_silent_subscribers_do_not() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "idle", "--idle-timeout-ms", "800"]).await?;
    let mut push = RawPeer::handshake(&b.endpoints().pull, "PUSH").await?;
    let mut dealer = RawPeer::handshake(&b.endpoints().replay, "DEALER").await?;
    let mut sub = RawPeer::handshake(&b.endpoints().publish, "SUB").await?;
    push.expect_closed(RECV_TIMEOUT)
        .await
        .context("silent PUSH")?;
    dealer
        .expect_closed(RECV_TIMEOUT)
        .await
        .context("silent DEALER")?;
    expect_metric(&b, "fanfare_idle_disconnects_total", "pull", 1.0).await?;
    expect_metric(&b, "fanfare_idle_disconnects_total", "replay", 1.0).await?;
    // The SUB peer has been silent as long; it is still served.
    ensure!(
        sub.expect_closed(Duration::from_millis(500)).await.is_err(),
        "a silent SUB peer was disconnected"
    );
    ensure!(metric_now(&b, "fanfare_idle_disconnects_total", "pub").await? == 0.0);
    healthz(&b).await
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_cut_after_the_write_stall() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "wstall", "--write-stall-ms", "1000"]).await?;
    let mut deaf = RawPeer::handshake(&b.endpoints().publish, "SUB").await?;
    deaf.subscribe("").await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    let payload = Bytes::from(vec![0u8; 64 * 1024]);
    let started = Instant::now();
    // Enough to fill the kernel buffers; then the writer stalls.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for _ in 0..64 {
            sockets::publish(&mut push, "bulk.x", payload.clone()).await?;
        }
        if metric_now(&b, "fanfare_write_stall_disconnects_total", "pub").await? >= 1.0 {
            break;
        }
        ensure!(Instant::now() < deadline, "deaf subscriber never cut");
    }
    eprintln!("deaf subscriber cut after {:?}", started.elapsed());
    deaf.expect_closed(RECV_TIMEOUT)
        .await
        .context("deaf subscriber still open")?;
    round_trip(&b, "after-deaf").await?;
    healthz(&b).await
}

#[tokio::test]
async fn caps_fit_a_low_open_file_limit_and_idle_peers_are_evicted_at_the_cap() -> Result<()> {
    // ulimit -n 256 (soft = hard): 3 × 4096 cannot fit; (256 - 96) / 3 = 53.
    const NOFILE: u64 = 256;
    const CAP: f64 = 53.0;
    const PEERS: usize = 120;
    let b = BroadcasterProcess::spawn_with_open_files(
        NOFILE,
        &["--id", "nofile", "--evict-idle-ms", "3000"],
    )
    .await?;
    ensure!(metric_now(&b, "fanfare_connection_limit", "pub").await? == CAP);
    ensure!(
        b.log().contains("lowered"),
        "no warning about the lowered caps"
    );
    // More idle peers on pull and pub than fit in the open-file limit.
    let mut held = Vec::new();
    let mut served = [0usize; 2];
    for (i, (endpoint, ty)) in [
        (&b.endpoints().pull, "PUSH"),
        (&b.endpoints().publish, "SUB"),
    ]
    .into_iter()
    .enumerate()
    {
        for _ in 0..PEERS {
            if let Ok(p) = RawPeer::handshake(endpoint, ty).await {
                served[i] += 1;
                held.push(p);
            }
        }
    }
    healthz(&b)
        .await
        .context("/healthz with every socket at its cap")?;
    let refused = metric_now(&b, "fanfare_connections_refused_total", "pub").await?;
    eprintln!(
        "ulimit -n {NOFILE}: served {served:?} of {PEERS} per socket, {refused} refused on pub"
    );
    ensure!(refused >= 1.0, "nothing refused on pub");
    // Once they have been idle long enough, a real subscriber evicts one.
    eventually(
        Duration::from_secs(30),
        "a new subscriber served at the cap",
        || async { round_trip(&b, "evict").await.ok() },
    )
    .await?;
    expect_metric(&b, "fanfare_connections_evicted_total", "pub", 1.0).await?;
    healthz(&b).await?;
    ensure!(!b.log().contains("accept failed"), "accept hit EMFILE");
    drop(held);
    Ok(())
}
