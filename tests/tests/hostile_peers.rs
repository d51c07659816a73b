//! Hostile raw TCP peers on every exposed ZeroMQ socket (pull, pub, replay):
//! a frame header announcing 1 TiB after a proper ZMTP handshake, the same
//! inside the handshake (a command frame), and garbage instead of a
//! greeting. Stock zmq.rs aborts the whole process on the 1 TiB header; the
//! broadcaster must disconnect that peer, count it, stay up, keep its
//! memory, and keep forwarding for everyone else.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::procfs::rss_kib;
use fanfare_tests::sockets;
use fanfare_tests::wait::eventually;
use fanfare_tests::zmtp::{frame_header, greeting, RawPeer, FLAG_COMMAND, FLAG_LONG, ONE_TIB};
use fanfare_tests::{metrics, RECV_TIMEOUT};

/// How long the broadcaster may take to close a hostile connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The three exposed ZeroMQ sockets: (endpoint, peer socket type, metric label).
fn sockets_of(b: &BroadcasterProcess) -> [(String, &'static str, &'static str); 3] {
    let e = b.endpoints();
    [
        (e.pull.clone(), "PUSH", "pull"),
        (e.publish.clone(), "SUB", "pub"),
        (e.replay.clone(), "DEALER", "replay"),
    ]
}

/// A message pushed now reaches a fresh subscriber: the broadcaster forwards.
async fn still_forwards(b: &mut BroadcasterProcess, tag: &str) -> Result<()> {
    ensure!(b.is_running(), "broadcaster died ({tag})");
    let mut sub = sockets::sub(&b.endpoints().publish, &["alive."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "alive").await?;
    let topic = format!("alive.{tag}");
    sockets::publish(&mut push, &topic, Bytes::from_static(b"still here")).await?;
    let got = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
    ensure!(got.topic == topic, "forwarded after {tag}: {got:?}");
    Ok(())
}

/// Sum over sockets of a per-socket counter, polled until it reaches `at_least`
/// on every socket label given.
async fn expect_per_socket(
    b: &BroadcasterProcess,
    metric: &'static str,
    labels: &[&'static str],
    at_least: f64,
) -> Result<()> {
    let admin = b.endpoints().admin_addr()?.to_owned();
    let labels = labels.to_vec();
    eventually(RECV_TIMEOUT, metric, || {
        let admin = admin.clone();
        let labels = labels.clone();
        async move {
            let text = metrics::fetch(&admin).await.ok()?;
            labels
                .iter()
                .all(|l| metrics::value_or_zero(&text, metric, &[("socket", l)]) >= at_least)
                .then_some(())
        }
    })
    .await
    .with_context(|| format!("{metric} >= {at_least} on {labels:?}"))
}

#[tokio::test]
async fn one_tib_frame_after_handshake_on_every_socket() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "hostile"]).await?;
    let pid = b.pid().context("pid")?;
    let rss_before = rss_kib(pid)?;
    for (endpoint, peer_type, label) in sockets_of(&b) {
        let mut peer = RawPeer::handshake(&endpoint, peer_type)
            .await
            .with_context(|| format!("handshake on {label}"))?;
        // flags 0x02 (long) + 8-byte length 2^40, then a few body bytes.
        peer.send(&frame_header(FLAG_LONG, ONE_TIB)).await?;
        let _ = peer.send(b"body...").await;
        peer.expect_closed(CLOSE_TIMEOUT)
            .await
            .with_context(|| format!("{label}: 1 TiB peer not disconnected"))?;
        still_forwards(&mut b, label).await?;
    }
    expect_per_socket(
        &b,
        "fanfare_oversize_frame_disconnects_total",
        &["pull", "pub", "replay"],
        1.0,
    )
    .await?;
    let rss_after = rss_kib(pid)?;
    ensure!(
        rss_after < rss_before + 256 * 1024,
        "no big allocation for announced frames: RSS {rss_before} -> {rss_after} KiB"
    );
    Ok(())
}

#[tokio::test]
async fn one_tib_frame_with_more_flag_mid_message() -> Result<()> {
    // A message whose first frame is fine and whose second announces 1 TiB.
    let mut b = BroadcasterProcess::spawn(&["--id", "hostile-more"]).await?;
    let mut peer = RawPeer::handshake(&b.endpoints().pull, "PUSH").await?;
    let mut bytes = fanfare_tests::zmtp::frame(fanfare_tests::zmtp::FLAG_MORE, b"chat.x");
    bytes.extend(frame_header(FLAG_LONG, ONE_TIB));
    peer.send(&bytes).await?;
    peer.expect_closed(CLOSE_TIMEOUT).await?;
    still_forwards(&mut b, "mid-message").await?;
    expect_per_socket(
        &b,
        "fanfare_oversize_frame_disconnects_total",
        &["pull"],
        1.0,
    )
    .await
}

#[tokio::test]
async fn one_tib_command_frame_during_handshake_on_every_socket() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "hostile-cmd"]).await?;
    for (endpoint, _, label) in sockets_of(&b) {
        let mut peer = RawPeer::connect(&endpoint).await?;
        peer.send(&greeting()).await?;
        // Instead of READY: a command frame announcing 1 TiB.
        peer.send(&frame_header(FLAG_COMMAND | FLAG_LONG, ONE_TIB))
            .await?;
        peer.expect_closed(CLOSE_TIMEOUT)
            .await
            .with_context(|| format!("{label}: 1 TiB command not disconnected"))?;
        still_forwards(&mut b, label).await?;
    }
    Ok(())
}

#[tokio::test]
async fn garbage_instead_of_greeting_on_every_socket() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "hostile-garbage"]).await?;
    for (endpoint, _, label) in sockets_of(&b) {
        let mut peer = RawPeer::connect(&endpoint).await?;
        let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        junk.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8));
        let _ = peer.send(&junk).await;
        peer.expect_closed(CLOSE_TIMEOUT)
            .await
            .with_context(|| format!("{label}: garbage peer not disconnected"))?;
        still_forwards(&mut b, label).await?;
    }
    expect_per_socket(
        &b,
        "fanfare_handshake_failures_total",
        &["pull", "pub", "replay"],
        1.0,
    )
    .await
}

#[tokio::test]
async fn many_hostile_peers_at_once_do_not_disturb_a_live_stream() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "hostile-many"]).await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["live."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "live").await?;
    let mut sent = 0u64;
    for round in 0..10 {
        let mut peers = Vec::new();
        for (endpoint, peer_type, _) in sockets_of(&b) {
            let mut p = RawPeer::handshake(&endpoint, peer_type).await?;
            p.send(&frame_header(FLAG_LONG, ONE_TIB)).await?;
            peers.push(p);
        }
        for i in 0..50 {
            sockets::publish(
                &mut push,
                "live.stream",
                Bytes::from(format!("{round}-{i}")),
            )
            .await?;
            sent += 1;
        }
        for mut p in peers {
            p.expect_closed(CLOSE_TIMEOUT).await?;
        }
    }
    for n in 0..sent {
        let got = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("live message {n} of {sent}"))?;
        let want = format!("{}-{}", n / 50, n % 50);
        ensure!(
            got.payload == want.as_bytes(),
            "in order: got {:?} want {want}",
            got.payload
        );
    }
    ensure!(b.is_running(), "broadcaster still running");
    expect_per_socket(
        &b,
        "fanfare_oversize_frame_disconnects_total",
        &["pull", "pub", "replay"],
        10.0,
    )
    .await
}

#[tokio::test]
async fn frames_just_over_each_socket_limit_disconnect_the_peer() -> Result<()> {
    // Ingress: max_payload + 4 KiB; subscriptions: 1 KiB; replay requests: 16 KiB.
    let mut b = BroadcasterProcess::spawn(&["--id", "limits", "--max-payload", "1024"]).await?;
    let over = [
        ("pull", "PUSH", 1024 + 4096 + 1, vec![]),
        ("pub", "SUB", 1024 + 1, vec![0x01]),
        ("replay", "DEALER", 16 * 1024 + 1, vec![]),
    ];
    for (label, peer_type, len, prefix) in over {
        let endpoint = sockets_of(&b)
            .into_iter()
            .find(|(_, _, l)| *l == label)
            .map(|(e, _, _)| e)
            .context("socket")?;
        let mut peer = RawPeer::handshake(&endpoint, peer_type).await?;
        let mut body = prefix;
        body.resize(len, b'z');
        let mut bytes = frame_header(0, len as u64);
        bytes.extend(&body);
        let _ = peer.send(&bytes).await;
        peer.expect_closed(CLOSE_TIMEOUT)
            .await
            .with_context(|| format!("{label}: a {len}-byte frame did not disconnect"))?;
        still_forwards(&mut b, label).await?;
    }
    expect_per_socket(
        &b,
        "fanfare_oversize_frame_disconnects_total",
        &["pull", "pub", "replay"],
        1.0,
    )
    .await
}

#[tokio::test]
async fn a_payload_at_the_limit_is_accepted() -> Result<()> {
    // The boundary from the other side: exactly max_payload goes through.
    let b = BroadcasterProcess::spawn(&["--id", "at-limit", "--max-payload", "1024"]).await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["edge."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "edge").await?;
    sockets::publish(&mut push, "edge.max", Bytes::from(vec![7u8; 1024])).await?;
    let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
    ensure!(m.topic == "edge.max" && m.payload.len() == 1024, "{m:?}");
    Ok(())
}

#[tokio::test]
async fn a_silent_peer_is_dropped_at_the_handshake_deadline() -> Result<()> {
    // PROTOCOL.md: a peer must finish its greeting and handshake within 10 s.
    let mut b = BroadcasterProcess::spawn(&["--id", "silent"]).await?;
    let mut silent = Vec::new();
    for (endpoint, _, _) in sockets_of(&b) {
        silent.push(RawPeer::connect(&endpoint).await?);
    }
    // Half a greeting on one more connection.
    let mut half = RawPeer::connect(&b.endpoints().pull).await?;
    half.send(&greeting()[..20]).await?;
    silent.push(half);
    still_forwards(&mut b, "during-silence").await?;
    for mut p in silent {
        p.expect_closed(Duration::from_secs(20))
            .await
            .context("a silent peer kept its connection past the handshake deadline")?;
    }
    expect_per_socket(
        &b,
        "fanfare_handshake_failures_total",
        &["pull", "pub", "replay"],
        1.0,
    )
    .await
}
