//! Replay fairness against the real binary: 48 connections from one peer
//! address (127.0.0.1) keep both scan workers asked for with the heaviest
//! requests (50 ms scans); a peer at another address (127.0.0.2, same host) is still
//! answered at once, never `busy`: one address gets at most
//! `replay_workers - 1` scans at a time (and half the in-flight bytes).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status};
use fanfare_tests::metrics::{fetch, value_or_zero};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::zmtp::{multipart, RawPeer};
use fanfare_tests::{sockets, wait};

/// 64 patterns with four `#` each that never match a topic of `a` words.
fn heavy_patterns() -> Result<Vec<Pattern>> {
    (0..64)
        .map(|i| Ok(Pattern::parse(&format!("#.a.#.a.#.a.#.z{i}"))?))
        .collect()
}

async fn metric(b: &BroadcasterProcess, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let text = fetch(b.endpoints().admin_addr()?).await?;
    Ok(value_or_zero(&text, name, labels))
}

/// One request over a raw DEALER connection; the reply's header.
async fn ask_raw(p: &mut RawPeer, r: &ReplayRequest) -> Result<ReplyHeader> {
    let frames = r.to_frames();
    let parts: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    p.send(&multipart(&parts)).await?;
    let reply: Vec<Bytes> = p
        .read_message()
        .await?
        .into_iter()
        .map(Bytes::from)
        .collect();
    ensure!(reply.first() == Some(&r.req_id), "req id echoed");
    ReplyHeader::from_frames(&reply).context("reply header")
}

#[tokio::test]
async fn many_connections_of_one_peer_leave_scan_workers_to_others() -> Result<()> {
    // Scans of up to 50 ms each (a heavier budget than the default 10 ms,
    // so that a queue of them is long next to the 250 ms worker wait).
    let b = BroadcasterProcess::spawn(&[
        "--id",
        "fair",
        "--replay-scan-ms",
        "50",
        "--replay-scan-matches",
        "1073741824",
        "--replay-scan-entries",
        "1048576",
    ])
    .await?;
    // 20 000 messages on a 255-byte topic of 128 one-letter words: the heavy
    // patterns use a scan's whole budget on them.
    let long_topic = vec!["a"; 128].join(".");
    let mut push = sockets::push(&b.endpoints().pull).await?;
    for _ in 0..20_000 {
        sockets::publish(&mut push, &long_topic, Bytes::from_static(b"x")).await?;
    }
    wait::eventually(Duration::from_secs(60), "history filled", || async {
        let held = metric(&b, "fanfare_history_messages", &[]).await.ok()?;
        (held >= 20_000.0).then_some(())
    })
    .await?;

    // The other peer, connected before the attack.
    let other: std::net::IpAddr = "127.0.0.2".parse()?;
    let mut victim = RawPeer::handshake_from(&b.endpoints().replay, "DEALER", other).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let (rounds, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut dealers = Vec::new();
    for _ in 0..48 {
        dealers.push(RawPeer::handshake(&b.endpoints().replay, "DEALER").await?);
    }
    let mut attackers = Vec::new();
    for mut d in dealers {
        let (stop, rounds, busy) = (stop.clone(), rounds.clone(), busy.clone());
        let patterns = heavy_patterns()?;
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(h) = ask_raw(
                    &mut d,
                    &sockets::replay_range(1, u64::MAX, patterns.clone()),
                )
                .await
                else {
                    break;
                };
                rounds.fetch_add(1, Ordering::Relaxed);
                busy.fetch_add(u64::from(h.status == Status::Busy), Ordering::Relaxed);
            }
        }));
    }
    // Let the attack fill the queue.
    wait::eventually(Duration::from_secs(20), "attack running", || async {
        (rounds.load(Ordering::Relaxed) >= 48).then_some(())
    })
    .await?;

    let mut lat = Vec::new();
    let mut victim_busy = 0;
    for k in 0..40u64 {
        let t0 = Instant::now();
        let h = ask_raw(
            &mut victim,
            &sockets::replay_range(1 + k, 64 + k, Vec::new()),
        )
        .await?;
        lat.push(t0.elapsed());
        victim_busy += u32::from(h.status == Status::Busy);
        ensure!(
            matches!(h.status, Status::Ok | Status::Busy),
            "victim got {h:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.abort();
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    let (rounds, busy) = (rounds.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    eprintln!(
        "FIGURE replay fairness: 48 heavy connections from 127.0.0.1 ({rounds} requests, {busy} \
         busy); the peer at 127.0.0.2: {victim_busy} of 40 busy, latency p50 {p50:?} p99 {p99:?}"
    );
    ensure!(
        victim_busy == 0,
        "{victim_busy} of 40 requests answered busy"
    );
    // Not queued behind the attacker's 50 ms scans.
    ensure!(p50 < Duration::from_millis(25), "victim p50 {p50:?}");
    ensure!(busy > 0, "the attacker's own requests queue on its share");
    Ok(())
}
