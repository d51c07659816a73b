//! A SUBSCRIBE flood cannot stop forwarding: subscriptions go through a
//! prefix trie, each subscriber holds at most 1,024 prefixes (the rest are
//! ignored and counted), and control traffic has no priority over ingress.
//! While one raw SUB peer floods SUBSCRIBE / CANCEL, a probe still goes
//! publisher → subscriber with p99 < 50 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use bytes::Bytes;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::sockets;
use fanfare_tests::zmtp::{multipart, RawPeer};
use fanfare_tests::{metrics, RECV_TIMEOUT};

const PREFIXES: usize = 12_000;
const PROBES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_flood_does_not_delay_the_probe() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "flood"]).await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["probe."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "probe").await?;

    // The flood: 12,000 distinct SUBSCRIBEs (some matching the probe topic),
    // then CANCEL / SUBSCRIBE cycles, until the probes are done.
    let mut flooder = RawPeer::handshake(&b.endpoints().publish, "SUB").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut round = 0u8;
            while !stop.load(Ordering::Relaxed) {
                let mut wire = Vec::new();
                for i in 0..PREFIXES {
                    let mut m = vec![u8::from(round.is_multiple_of(2))];
                    m.extend_from_slice(format!("probe.{i}.").as_bytes());
                    wire.extend(multipart(&[&m]));
                    if wire.len() > 64 * 1024 {
                        flooder.send(&wire).await?;
                        wire.clear();
                    }
                }
                flooder.send(&wire).await?;
                sent += PREFIXES;
                round = round.wrapping_add(1);
            }
            anyhow::Ok(sent)
        })
    };

    let mut lat = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let at = Instant::now();
        let topic = format!("probe.x{i}");
        sockets::publish(&mut push, &topic, Bytes::from_static(b"p")).await?;
        let got = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
        ensure!(got.topic == topic, "probe {i}: got {}", got.topic);
        lat.push(at.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.await??;
    let worst = (0..PROBES).max_by_key(|&i| lat[i]).unwrap_or(0);
    eprintln!("worst probe #{worst}: {:?}", lat[worst]);
    lat.sort_unstable();
    let p50 = lat[PROBES / 2];
    let p99 = lat[PROBES * 99 / 100];
    let text = metrics::fetch(b.endpoints().admin_addr()?).await?;
    let refused = metrics::value_or_zero(&text, "fanfare_subscriptions_refused_total", &[]);
    eprintln!(
        "{sent} SUBSCRIBE/CANCEL sent; probe p50 {p50:?} p99 {p99:?} max {:?}; {refused} refused",
        lat[PROBES - 1]
    );
    ensure!(sent >= PREFIXES, "the flood did not run");
    ensure!(
        refused >= (PREFIXES - 1024) as f64,
        "prefixes past the cap not counted: {refused}"
    );
    ensure!(
        p99 < Duration::from_millis(50),
        "probe p99 {p99:?} during the flood"
    );
    Ok(())
}
