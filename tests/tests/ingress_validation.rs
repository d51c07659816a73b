//! Bad input from foreign peers on the ingress (PULL) socket: wrong frame
//! counts, empty / non-UTF-8 / oversize / malformed topics, oversize
//! payloads, reserved `_fanfare.` topics and bad metadata frames — sent by
//! zmq.rs, by a raw ZMTP peer and by real libzmq (pyzmq). Each must be
//! dropped and counted under its reason in `/metrics`, nothing of it may be
//! forwarded, the sending peer stays connected, and the broadcaster keeps
//! forwarding.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::bad_input::{bad_messages, expected_counts, BadMessage};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::sockets::{self, Broadcast};
use fanfare_tests::wait::eventually;
use fanfare_tests::zmtp::{frame, multipart, RawPeer, FLAG_COMMAND};
use fanfare_tests::{metrics, python, RECV_TIMEOUT};
use zeromq::SubSocket;

const MAX_PAYLOAD: usize = 1024;
const ID: &str = "bad-input";

async fn broadcaster() -> Result<BroadcasterProcess> {
    BroadcasterProcess::spawn(&["--id", ID, "--max-payload", "1024", "--heartbeat-ms", "200"]).await
}

/// A SUB for everything, proven live with a probe.
async fn subscriber(b: &BroadcasterProcess) -> Result<SubSocket> {
    let mut sub = sockets::sub(&b.endpoints().publish, &[""]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "sync").await?;
    Ok(sub)
}

/// Waits for `good_topic` and checks that nothing but our own heartbeats
/// came before it.
async fn expect_only_good(sub: &mut SubSocket, good_topic: &str) -> Result<Broadcast> {
    let (before, good) = sockets::recv_until_topic(sub, good_topic, RECV_TIMEOUT).await?;
    for b in &before {
        ensure!(
            b.topic == format!("_fanfare.hb.{ID}") && b.flags & 1 == 1 && b.origin == ID,
            "a rejected message was forwarded: {b:?}"
        );
    }
    ensure!(&good.payload[..] == b"good", "good payload intact");
    Ok(good)
}

/// Every reason's counter reaches exactly the expected value.
async fn expect_counted(b: &BroadcasterProcess, msgs: &[BadMessage]) -> Result<()> {
    let admin = b.endpoints().admin_addr()?.to_owned();
    let expected = expected_counts(msgs);
    eventually(RECV_TIMEOUT, "rejections counted in /metrics", || {
        let admin = admin.clone();
        let expected = expected.clone();
        async move {
            let text = metrics::fetch(&admin).await.ok()?;
            expected
                .iter()
                .all(|(reason, n)| {
                    metrics::value(
                        &text,
                        "fanfare_ingress_rejected_total",
                        &[("reason", reason)],
                    ) == Some(*n as f64)
                })
                .then_some(())
        }
    })
    .await
    .with_context(|| format!("expected {expected:?}"))
}

#[tokio::test]
async fn zmq_rs_peer_bad_input_is_dropped_and_counted() -> Result<()> {
    let mut b = broadcaster().await?;
    let mut sub = subscriber(&b).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    let msgs = bad_messages(MAX_PAYLOAD);
    for m in &msgs {
        sockets::send_timeout(&mut push, m.frames.clone(), RECV_TIMEOUT).await?;
    }
    // Same connection: it was not dropped for sending garbage.
    sockets::publish(&mut push, "ok.after", Bytes::from_static(b"good")).await?;
    expect_only_good(&mut sub, "ok.after").await?;
    expect_counted(&b, &msgs).await?;
    ensure!(b.is_running(), "broadcaster still running");
    Ok(())
}

#[tokio::test]
async fn raw_zmtp_peer_bad_input_is_dropped_and_counted() -> Result<()> {
    let mut b = broadcaster().await?;
    let mut sub = subscriber(&b).await?;
    let mut peer = RawPeer::handshake(&b.endpoints().pull, "PUSH").await?;
    let msgs = bad_messages(MAX_PAYLOAD);
    for m in &msgs {
        let frames: Vec<&[u8]> = m.frames.iter().map(|f| &f[..]).collect();
        peer.send(&multipart(&frames)).await?;
    }
    peer.send(&multipart(&[b"ok.raw-after", b"good"])).await?;
    expect_only_good(&mut sub, "ok.raw-after").await?;
    expect_counted(&b, &msgs).await?;
    ensure!(b.is_running(), "broadcaster still running");
    Ok(())
}

#[tokio::test]
async fn libzmq_peer_bad_input_is_dropped_and_counted() -> Result<()> {
    let Some(py) = python::python() else {
        return Ok(());
    };
    let mut b = broadcaster().await?;
    let mut sub = subscriber(&b).await?;
    let pull = b.endpoints().pull.clone();
    let max = MAX_PAYLOAD.to_string();
    python::run_script(
        &py,
        "bad_input.py",
        &[&pull, &max, "ok.py-after"],
        Duration::from_secs(60),
    )
    .await?;
    expect_only_good(&mut sub, "ok.py-after").await?;
    // The Python list mirrors bad_messages() but has one bad_meta case.
    let msgs: Vec<BadMessage> = bad_messages(MAX_PAYLOAD)
        .into_iter()
        .filter(|m| m.what != "truncated meta")
        .collect();
    expect_counted(&b, &msgs).await?;
    ensure!(b.is_running(), "broadcaster still running");
    Ok(())
}

#[tokio::test]
async fn zmtp_ping_is_answered_and_unknown_commands_ignored_on_every_socket() -> Result<()> {
    let mut b = broadcaster().await?;
    let e = b.endpoints().clone();
    for (endpoint, peer_type) in [
        (&e.pull, "PUSH"),
        (&e.publish, "SUB"),
        (&e.replay, "DEALER"),
    ] {
        let mut peer = RawPeer::handshake(endpoint, peer_type).await?;
        peer.send(&frame(FLAG_COMMAND, b"\x07UNKNOWN")).await?;
        // PING: TTL 0, context "ctx" — PONG echoes the context.
        peer.send(&frame(FLAG_COMMAND, b"\x04PING\x00\x00ctx"))
            .await?;
        let pong = loop {
            let (flags, body) = peer
                .read_frame()
                .await
                .with_context(|| format!("waiting for PONG on {endpoint}"))?;
            // A SUB peer may see heartbeats only if it subscribed; it did not.
            if flags & FLAG_COMMAND != 0 {
                break body;
            }
        };
        ensure!(
            pong == b"\x04PONGctx",
            "PONG echoes the context on {endpoint}: {pong:?}"
        );
    }
    ensure!(b.is_running(), "broadcaster still running");
    Ok(())
}

#[tokio::test]
async fn a_command_right_behind_a_message_does_not_hold_it_back() -> Result<()> {
    // A libzmq peer with ZMQ_HEARTBEAT_IVL sends PINGs between messages; a
    // message whose bytes arrive together with a following command must be
    // forwarded at once, not when the peer's next message comes.
    let b = broadcaster().await?;
    let mut sub = subscriber(&b).await?;
    let mut peer = RawPeer::handshake(&b.endpoints().pull, "PUSH").await?;
    for (i, cmd) in [&b"\x04PING\x00\x00ctx"[..], &b"\x07UNKNOWN"[..]]
        .iter()
        .enumerate()
    {
        let topic = format!("ok.cmd-behind-{i}");
        let mut bytes = multipart(&[topic.as_bytes(), b"good"]);
        bytes.extend(frame(FLAG_COMMAND, cmd));
        peer.send(&bytes).await?;
        expect_only_good(&mut sub, &topic)
            .await
            .with_context(|| format!("message followed by command {cmd:?} held back"))?;
    }
    Ok(())
}
