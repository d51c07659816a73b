//! A peer that sends part of a ZMTP greeting and then half-closes (FIN)
//! must be disconnected at once and counted, on every socket. Found by the
//! `zmtp_handshake` fuzz target: the greeting read looped on end-of-stream,
//! so each such peer kept a task spinning on a core until the 10 s
//! handshake timeout (a few peers a second kept the broadcaster's cores busy).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::wait::eventually;
use fanfare_tests::zmtp::{greeting, RawPeer};
use fanfare_tests::{metrics, RECV_TIMEOUT};

/// Far below the broadcaster's 10 s handshake timeout.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

#[tokio::test]
async fn half_a_greeting_then_eof_is_disconnected_at_once_and_counted() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "short-greeting"]).await?;
    let e = b.endpoints().clone();
    let admin = e.admin_addr()?.to_owned();
    for (endpoint, label) in [
        (&e.pull, "pull"),
        (&e.publish, "pub"),
        (&e.replay, "replay"),
    ] {
        let mut peer = RawPeer::connect(endpoint).await?;
        peer.send(&greeting()[..10]).await?;
        peer.shutdown_write().await?;
        let started = Instant::now();
        peer.expect_closed(CLOSE_WITHIN)
            .await
            .with_context(|| format!("{label}: a truncated greeting kept the connection open"))?;
        eprintln!("{label}: closed {:?} after the FIN", started.elapsed());
        eventually(RECV_TIMEOUT, "the truncated handshake counted", || {
            let admin = admin.clone();
            async move {
                let text = metrics::fetch(&admin).await.ok()?;
                let n = metrics::value_or_zero(
                    &text,
                    "fanfare_handshake_failures_total",
                    &[("socket", label)],
                );
                (n >= 1.0).then_some(())
            }
        })
        .await?;
        ensure!(b.is_running(), "broadcaster still running after {label}");
    }
    Ok(())
}
