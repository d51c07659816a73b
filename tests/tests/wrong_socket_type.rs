//! A peer that completes the ZMTP greeting but announces a socket type that
//! cannot talk to ours (a PUB on the PULL socket, a PUB on the PUB socket, a
//! PUSH on the replay socket) gets an ERROR command naming both types, is
//! disconnected, and is counted in `fanfare_handshake_failures_total` of
//! that socket (exactly once); the broadcaster keeps forwarding.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::wait::eventually;
use fanfare_tests::zmtp::{RawPeer, FLAG_COMMAND};
use fanfare_tests::{metrics, sockets, RECV_TIMEOUT};

/// How long the broadcaster may take to close the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const METRIC: &str = "fanfare_handshake_failures_total";

async fn failures(admin: &str, label: &str) -> Result<f64> {
    let text = metrics::fetch(admin).await?;
    Ok(metrics::value_or_zero(&text, METRIC, &[("socket", label)]))
}

#[tokio::test]
async fn an_incompatible_socket_type_is_refused_disconnected_and_counted() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "wrong-type"]).await?;
    let e = b.endpoints().clone();
    let admin = e.admin_addr()?.to_owned();
    let cases = [
        (e.pull.clone(), "PUB", "pull", "PULL"),
        (e.publish.clone(), "PUB", "pub", "PUB"),
        (e.replay.clone(), "PUSH", "replay", "ROUTER"),
    ];
    for (endpoint, announced, label, ours) in cases {
        let before = failures(&admin, label).await?;
        // Greeting and READY both ways: the broadcaster sends its READY
        // before it reads ours, so this part succeeds.
        let mut peer = RawPeer::handshake(&endpoint, announced).await?;
        let (flags, body) = peer
            .read_frame()
            .await
            .with_context(|| format!("{label}: an ERROR command after our READY"))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        ensure!(
            flags & FLAG_COMMAND != 0 && body.get(1..6) == Some(&b"ERROR"[..]),
            "{label}: expected an ERROR command, got flags {flags:#x} {text:?}"
        );
        ensure!(
            text.contains(&format!("{ours} cannot talk to {announced}")),
            "{label}: the reason names both types: {text:?}"
        );
        peer.expect_closed(CLOSE_TIMEOUT)
            .await
            .with_context(|| format!("{label}: a {announced} peer not disconnected"))?;
        let after = eventually(RECV_TIMEOUT, "the refusal counted", || {
            let admin = admin.clone();
            async move {
                let n = failures(&admin, label).await.ok()?;
                (n > before).then_some(n)
            }
        })
        .await?;
        ensure!(
            after == before + 1.0,
            "{label}: counted exactly once: {before} -> {after}"
        );
        ensure!(b.is_running(), "broadcaster still running after {label}");
    }
    // And it still forwards for everyone else.
    let mut sub = sockets::sub(&e.publish, &["alive."]).await?;
    let mut push = sockets::push(&e.pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "alive").await?;
    sockets::publish(&mut push, "alive.after", Bytes::from_static(b"still here")).await?;
    let got = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
    ensure!(got.topic == "alive.after", "forwarded: {got:?}");
    Ok(())
}
