//! Attacks on the replay endpoint, against the real binary with its default
//! replay limits:
//! * `#`-heavy pattern scans over a history of long topics while a probe
//!   measures publish → SUB latency and `/healthz` (the scan must neither
//!   block forwarding nor the admin endpoint);
//! * 200 peers that ask for everything and never read (RSS stays bounded,
//!   stalled peers are disconnected and counted, the rest answered `busy`);
//! * seqs at the edges of u64 and empty ranges (well-formed replies, no
//!   overflow panic in a debug build).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status};
use fanfare_tests::metrics::{fetch, value_or_zero};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::procfs::rss_kib;
use fanfare_tests::zmtp::{multipart, RawPeer};
use fanfare_tests::{http, sockets, wait, RECV_TIMEOUT};
use zeromq::DealerSocket;

/// The bar for probe latency under attack.
const P99_BOUND: Duration = Duration::from_millis(50);
/// `/healthz` must answer within this under attack.
const HEALTHZ_BOUND: Duration = Duration::from_millis(500);

async fn ask(
    d: &mut DealerSocket,
    r: &ReplayRequest,
    timeout: Duration,
) -> Result<(ReplyHeader, usize)> {
    sockets::send_timeout(d, r.to_frames(), timeout).await?;
    let frames = sockets::recv_timeout(d, timeout).await?.into_vec();
    ensure!(
        frames.first() == Some(&r.req_id),
        "req id echoed: {frames:?}"
    );
    let head = ReplyHeader::from_frames(&frames).context("reply header")?;
    Ok((head, (frames.len() - 6) / 3))
}

async fn metric(b: &BroadcasterProcess, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let text = fetch(b.endpoints().admin_addr()?).await?;
    Ok(value_or_zero(&text, name, labels))
}

/// Publishes `n` messages and waits until history holds at least `n`.
async fn fill(b: &BroadcasterProcess, n: usize, topic: &str, payload: usize) -> Result<()> {
    let mut push = sockets::push(&b.endpoints().pull).await?;
    let body = Bytes::from(vec![b'x'; payload]);
    for _ in 0..n {
        sockets::publish(&mut push, topic, body.clone()).await?;
    }
    let want = n as f64;
    wait::eventually(Duration::from_secs(60), "history filled", || async {
        let held = metric(b, "fanfare_history_messages", &[]).await.ok()?;
        (held >= want).then_some(())
    })
    .await
}

/// 64 patterns with four `#` each that never match a topic of `a` words:
/// the worst case of the matcher's backtracking.
fn heavy_patterns(n: usize) -> Result<Vec<Pattern>> {
    (0..n)
        .map(|i| Ok(Pattern::parse(&format!("#.a.#.a.#.a.#.z{i}"))?))
        .collect()
}

#[tokio::test]
async fn heavy_pattern_scans_do_not_stall_forwarding_or_healthz() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "abuse-scan"]).await?;
    // 20 000 messages on a 255-byte topic of 128 one-letter words.
    let long_topic = vec!["a"; 128].join(".");
    fill(&b, 20_000, &long_topic, 16).await?;
    // The probe's path is ready before the attack starts.
    let mut sub = sockets::sub(&b.endpoints().publish, &["probe."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "probe").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    // Both connected before either attacks.
    let mut dealers = Vec::new();
    for patterns in [16, 64] {
        dealers.push((sockets::dealer(&b.endpoints().replay).await?, patterns));
    }
    for (i, (mut d, patterns)) in dealers.into_iter().enumerate() {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        let patterns = heavy_patterns(patterns)?;
        attackers.push(tokio::spawn(async move {
            let mut from = 1;
            while !stop.load(Ordering::Relaxed) {
                let r = sockets::replay_range(from, u64::MAX, patterns.clone());
                let Ok((h, _)) = ask(&mut d, &r, Duration::from_secs(60)).await else {
                    break;
                };
                rounds.fetch_add(1, Ordering::Relaxed);
                // Page through history like a real requester, then start over.
                from = if h.status == Status::Ok && h.next <= h.newest {
                    h.next
                } else {
                    1
                };
            }
            i
        }));
    }

    let admin = b.endpoints().admin_addr()?.to_owned();
    let health_stop = stop.clone();
    let health = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !health_stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let t = Instant::now();
            let ok = http::http_get_ok(&admin, "/healthz").await.is_ok();
            worst = worst.max(if ok { t.elapsed() } else { Duration::MAX });
        }
        worst
    });

    // Probes: publish → SUB, one at a time, every 10 ms.
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..300 {
        tick.tick().await;
        let sent = t0.elapsed().as_micros() as u64;
        sockets::publish(&mut push, "probe.p", sent.to_be_bytes().to_vec()).await?;
        let got = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await;
        let Ok(got) = got else {
            latencies.push(RECV_TIMEOUT);
            break;
        };
        let sent = u64::from_be_bytes(got.payload[..8].try_into()?);
        latencies.push(t0.elapsed().saturating_sub(Duration::from_micros(sent)));
    }
    stop.store(true, Ordering::Relaxed);
    let healthz_worst = health.await?;
    for a in attackers {
        a.abort();
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    let max = latencies[latencies.len() - 1];
    let cut = metric(&b, "fanfare_replay_scan_cut_total", &[]).await?;
    let scanned = metric(&b, "fanfare_replay_scanned_entries_total", &[]).await?;
    eprintln!(
        "scan attack: {} probes, p99 {p99:?}, max {max:?}, healthz worst {healthz_worst:?}, \
         {} attack rounds, {cut} cut by the scan budget, {scanned} entries scanned",
        latencies.len(),
        rounds.load(Ordering::Relaxed),
    );
    ensure!(
        latencies.len() == 300,
        "a probe was not delivered within {RECV_TIMEOUT:?}"
    );
    ensure!(
        p99 < P99_BOUND,
        "probe p99 {p99:?} under a replay scan attack"
    );
    ensure!(
        healthz_worst < HEALTHZ_BOUND,
        "/healthz took {healthz_worst:?}"
    );
    ensure!(rounds.load(Ordering::Relaxed) >= 10, "the attack ran");
    ensure!(cut >= 1.0, "the scan budget cut the attack's replies");
    Ok(())
}

#[tokio::test]
async fn peers_that_never_read_are_bounded_counted_and_released() -> Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "abuse-read"]).await?;
    let pid = b.pid().context("pid")?;
    // 16 MiB of history: every full request is cut at the 8 MiB reply limit.
    fill(&b, 256, "big.m", 64 * 1024).await?;
    let baseline = rss_kib(pid)?;

    let request = sockets::replay_range(1, u64::MAX, vec![]).to_frames();
    let refs: Vec<&[u8]> = request.iter().map(|f| &f[..]).collect();
    let bytes = multipart(&refs);
    let mut peers = Vec::new();
    let peak = AtomicU64::new(baseline);
    let sample = || -> Result<()> {
        peak.fetch_max(rss_kib(pid)?, Ordering::Relaxed);
        Ok(())
    };
    for _ in 0..200 {
        let mut p = RawPeer::handshake(&b.endpoints().replay, "DEALER").await?;
        p.send(&bytes).await?;
        peers.push(p);
        sample()?;
    }
    // Every request is read; the replies that stall time out (5 s default)
    // and their peers are dropped, the others were answered.
    let settled = wait::eventually(Duration::from_secs(30), "stalled peers dropped", || async {
        sample().ok()?;
        let text = fetch(b.endpoints().admin_addr().ok()?).await.ok()?;
        let v = |name, labels: &[(&str, &str)]| value_or_zero(&text, name, labels);
        let served = v("fanfare_replay_requests_total", &[]);
        let stalled = v("fanfare_replay_write_timeouts_total", &[]);
        let busy = v("fanfare_replay_busy_total", &[("reason", "inflight_bytes")]);
        let open = v("fanfare_connections", &[("socket", "replay")]);
        (served >= 200.0 && stalled >= 1.0 && open + stalled == 200.0)
            .then_some((stalled, busy, open))
    })
    .await;
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "non-reading peers: RSS baseline {} MiB, peak {} MiB; (stalled, busy, open) {settled:?}",
        baseline / 1024,
        peak / 1024
    );
    let (stalled, busy, open) = settled?;
    ensure!(b.is_running(), "broadcaster alive");
    drop(peers);
    wait::eventually(Duration::from_secs(10), "replay peers gone", || async {
        let open = metric(&b, "fanfare_connections", &[("socket", "replay")])
            .await
            .ok()?;
        (open == 0.0).then_some(())
    })
    .await?;
    let after = rss_kib(pid)?;
    eprintln!(
        "non-reading peers: RSS after they left {} MiB; {stalled} disconnected for \
         stalling, {busy} answered busy, {open} open before leaving",
        after / 1024,
    );
    // Bound: the 64 MiB in-flight budget (refcounts into history, so in
    // practice far less) plus 32 MiB of slack for buffers and the allocator.
    ensure!(
        peak < baseline + 96 * 1024,
        "RSS {baseline} KiB -> peak {peak} KiB with 200 non-reading peers"
    );
    ensure!(
        after < baseline + 32 * 1024,
        "RSS after they left: {after} KiB"
    );
    ensure!(busy >= 1.0, "the in-flight budget refused some replies");
    Ok(())
}

#[tokio::test]
async fn edge_seqs_get_well_formed_replies() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "abuse-seq"]).await?;
    fill(&b, 10, "edge.m", 8).await?;
    let mut d = sockets::dealer(&b.endpoints().replay).await?;
    let (state, _) = ask(&mut d, &sockets::replay_range(0, 0, vec![]), RECV_TIMEOUT).await?;
    let newest = state.newest;
    let max = u64::MAX;
    // (from, to, expected next, expected messages)
    let cases = [
        (max, max, newest + 1, 0),
        (max, 0, newest + 1, 0),
        (max, max - 1, newest + 1, 0),
        (newest + 1, max, newest + 1, 0),
        (5, 3, 5, 0),
        (newest, newest, newest + 1, 1),
        (0, max, newest + 1, 10),
    ];
    for (from, to, next, n) in cases {
        let (h, got) = ask(
            &mut d,
            &sockets::replay_range(from, to, vec![]),
            RECV_TIMEOUT,
        )
        .await?;
        ensure!(h.status == Status::Ok, "from {from} to {to}: {h:?}");
        ensure!(
            h.next == next && got == n,
            "from {from} to {to}: {h:?}, {got} messages"
        );
    }
    // Unknown epoch u64::MAX, any lane, the most patterns allowed.
    let mut r = sockets::replay_range(max, max, heavy_patterns(64)?);
    r.epoch = max;
    r.lane = Some(u16::MAX);
    let (h, _) = ask(&mut d, &r, RECV_TIMEOUT).await?;
    ensure!(h.status == Status::UnknownEpoch && h.next == max, "{h:?}");
    r.epoch = 0;
    let (h, _) = ask(&mut d, &r, RECV_TIMEOUT).await?;
    ensure!(
        h.status == Status::Ok && h.next == newest + 1,
        "64 patterns: {h:?}"
    );
    // One pattern too many is malformed.
    let mut frames = sockets::replay_range(1, max, heavy_patterns(64)?).to_frames();
    frames.push(Bytes::from_static(b"one.more"));
    sockets::send_timeout(&mut d, frames, RECV_TIMEOUT).await?;
    let reply = sockets::recv_timeout(&mut d, RECV_TIMEOUT)
        .await?
        .into_vec();
    let h = ReplyHeader::from_frames(&reply)?;
    ensure!(h.status == Status::BadRequest, "65 patterns: {h:?}");

    let empty = metric(&b, "fanfare_replay_empty_ranges_total", &[]).await?;
    let bad = metric(&b, "fanfare_replay_bad_requests_total", &[]).await?;
    ensure!(
        empty >= 5.0 && bad == 1.0,
        "counted: {empty} empty, {bad} bad"
    );
    let (h, _) = ask(&mut d, &sockets::replay_range(1, max, vec![]), RECV_TIMEOUT).await?;
    ensure!(
        h.status == Status::Ok && h.next == newest + 1,
        "still serving: {h:?}"
    );
    ensure!(!b.log().contains("panicked"), "no panic in the log");
    Ok(())
}

/// A hub resume may carry 64 patterns (its per-connection limit); the
/// client's history query with that many is served, not refused.
#[tokio::test]
async fn a_query_with_64_patterns_is_served_from_history() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "abuse-64"]).await?;
    fill(&b, 20, "chat.room", 8).await?;
    let client = fanfare_tests::client::connect(&b, RECV_TIMEOUT).await?;
    let mut patterns = heavy_patterns(63)?;
    patterns.push(Pattern::parse("chat.#")?);
    let query = fanfare_client::ReplayQuery {
        patterns,
        ..fanfare_client::ReplayQuery::since("", 0, 1)
    };
    let batch = tokio::time::timeout(RECV_TIMEOUT, client.replay(query)).await??;
    ensure!(
        batch.status == fanfare_client::ReplayStatus::Ok && batch.messages.len() == 20,
        "{:?}, {} messages",
        batch.status,
        batch.messages.len()
    );
    Ok(())
}
