//! End-to-end fan-out: a fanfare-client publisher → broadcaster (in this
//! process) → W demo worker processes (hub) → C websocket clients.
//!
//! Reports, with a 100-byte JSON payload:
//! * deliveries per second at saturation (closed loop: the publisher keeps
//!   at most WINDOW messages ahead of the slowest client, so no queue fills);
//! * latency p50/p99 (publish → websocket receive, same host clock) at 10%,
//!   50% and 90% of the saturation rate, open loop;
//! * loss in every phase (expected − received deliveries);
//! * RSS per idle websocket (worker RSS growth over K idle connections).
//!
//! `cargo bench -p fanfare-benches --bench e2e`. Knobs (env): FANFARE_E2E_WORKERS
//! (2), FANFARE_E2E_CLIENTS (200), FANFARE_E2E_SECONDS (5 per load level),
//! FANFARE_E2E_IDLE (2000).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanfare_client::{Client, ClientOptions};
use fanfare_tests::demo::Demo;
use fanfare_tests::websocket::Ws;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const WINDOW: u64 = 400;
const TOPIC: &str = "bench.e2e";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> u64 {
    fanfare_protocol::stamp::now_us()
}

/// What one websocket client saw.
#[derive(Default)]
struct Seen {
    received: AtomicU64,
    last_i: AtomicU64,
    latencies: Mutex<Vec<u32>>,
}

/// Pulls `"key":<digits>` out of a frame without a JSON parse.
fn field(frame: &str, key: &str) -> Option<u64> {
    let at = frame.find(key)? + key.len();
    let digits: String = frame[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

async fn run_client(mut ws: Ws, seen: Arc<Seen>, record: Arc<AtomicU64>, stop: CancellationToken) {
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => return,
            m = ws.stream.next() => m,
        };
        let Some(Ok(m)) = m else { return };
        let Message::Text(t) = m else { continue };
        let (Some(sent), Some(i)) = (field(&t, "\"t\":"), field(&t, "\"i\":")) else {
            continue;
        };
        seen.received.fetch_add(1, Relaxed);
        seen.last_i.store(i, Relaxed);
        if record.load(Relaxed) == 1 {
            let lat = now_us().saturating_sub(sent).min(u32::MAX as u64) as u32;
            if let Ok(mut l) = seen.latencies.lock() {
                l.push(lat);
            }
        }
    }
}

fn payload(i: u64) -> String {
    // ~100 bytes of JSON.
    format!(
        "{{\"t\":{},\"i\":{i},\"pad\":\"{}\"}}",
        now_us(),
        "x".repeat(60)
    )
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[k] as f64 / 1000.0
}

fn total(seen: &[Arc<Seen>]) -> u64 {
    seen.iter().map(|s| s.received.load(Relaxed)).sum()
}

async fn wait_delivered(seen: &[Arc<Seen>], expected: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let mut got = total(seen);
    while got < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = total(seen);
    }
    got
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

async fn worker_pids(demo: &Demo, workers: usize) -> anyhow::Result<Vec<u32>> {
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..500 {
        if pids.len() == workers {
            break;
        }
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", demo.port)).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        if let Some(pid) = field(&body, "\"pid\":") {
            pids.insert(pid as u32);
        }
    }
    Ok(pids.into_iter().collect())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: a benchmark, not a test; run it with `cargo bench -p fanfare-benches --bench e2e`");
        return Ok(());
    }
    let workers = env("FANFARE_E2E_WORKERS", 2) as usize;
    let clients = env("FANFARE_E2E_CLIENTS", 200) as usize;
    let seconds = env("FANFARE_E2E_SECONDS", 5);
    let idle = env("FANFARE_E2E_IDLE", 2000) as usize;

    let stop = CancellationToken::new();
    let config = fanfare_broadcaster::Config {
        pull: "tcp://127.0.0.1:0".into(),
        publish: "tcp://127.0.0.1:0".into(),
        replay: "tcp://127.0.0.1:0".into(),
        admin: None,
        id: "bench".into(),
        ..Default::default()
    };
    // The broadcaster and the websocket clients get runtimes (threads) of
    // their own, so that neither waits behind the other's tasks in one
    // scheduler queue: the latencies are the fabric's, not the harness's.
    let broadcaster_stop = CancellationToken::new();
    let (e, broadcaster) = start_broadcaster(config, broadcaster_stop.clone())?;
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ws-clients")
        .enable_all()
        .build()?;
    let spec = format!("pull={},pub={},replay={}", e.pull, e.publish, e.replay);
    let w = workers.to_string();
    let demo = Demo::start(&[
        "--workers",
        &w,
        "--threads",
        "1",
        "--broadcaster",
        &spec,
        "--ws-queue",
        "2048",
    ])
    .await?;
    println!("e2e: publisher → broadcaster → {workers} workers → {clients} websockets, ~100 B JSON payload");
    // 0. RSS per idle websocket, on fresh workers.
    let pids = worker_pids(&demo, workers).await?;
    let before: u64 = pids.iter().map(|p| rss_of(*p)).sum();
    let mut idle_conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        let mut ws = Ws::connect(&demo.ws_url()).await?;
        ws.subscribe(&["idle.#"], None).await?;
        idle_conns.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: u64 = pids.iter().map(|p| rss_of(*p)).sum();
    println!(
        "idle websockets: {idle} add {:.1} MiB RSS over {} workers = {:.1} KiB per connection",
        after.saturating_sub(before) as f64 / 1048576.0,
        pids.len(),
        after.saturating_sub(before) as f64 / 1024.0 / idle as f64
    );
    drop(idle_conns);

    let publisher =
        Client::connect(ClientOptions::new(&e.pull, &e.publish, &e.replay).publisher_id("bench"))
            .await?;

    // C clients, spread by the kernel over the workers.
    let record = Arc::new(AtomicU64::new(0));
    let mut seen = Vec::new();
    for _ in 0..clients {
        let s = Arc::new(Seen::default());
        seen.push(s.clone());
        let (url, record, stop) = (demo.ws_url(), record.clone(), stop.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        clients_rt.spawn(async move {
            let ws = async {
                let mut ws = Ws::connect(&url).await?;
                ws.subscribe(&["bench.#"], None).await?;
                anyhow::Ok(ws)
            }
            .await;
            match ws {
                Ok(ws) => {
                    let _ = ready_tx.send(Ok(()));
                    run_client(ws, s, record, stop).await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        ready_rx.await??;
    }
    // Warm up: one message reaches everyone.
    publisher.publish(TOPIC, payload(0)).await?;
    let got = wait_delivered(&seen, clients as u64, Duration::from_secs(30)).await;
    anyhow::ensure!(
        got == clients as u64,
        "warm-up reached {got}/{clients} clients"
    );

    // 1. Saturation, closed loop.
    let n: u64 = env("FANFARE_E2E_MESSAGES", 20_000);
    let base = total(&seen);
    let started = Instant::now();
    for i in 1..=n {
        if i % 50 == 0 {
            while i - seen
                .iter()
                .map(|s| s.last_i.load(Relaxed))
                .min()
                .unwrap_or(0)
                > WINDOW
            {
                tokio::task::yield_now().await;
                if started.elapsed() > Duration::from_secs(120) {
                    anyhow::bail!("saturation phase stalled");
                }
            }
        }
        publisher.publish(TOPIC, payload(i)).await?;
    }
    let expected = n * clients as u64;
    let got = wait_delivered(&seen, base + expected, Duration::from_secs(30)).await - base;
    let elapsed = started.elapsed().as_secs_f64();
    let sat = got as f64 / elapsed;
    let msg_rate = n as f64 / elapsed;
    println!(
        "saturation: {:.0} deliveries/s ({:.0} messages/s × {clients}), loss {}",
        sat,
        msg_rate,
        expected - got
    );

    // 2. Latency at 10 / 50 / 90 % of saturation, open loop.
    let mut next_i = n + 1;
    for pct in [10u64, 50, 90] {
        let rate = msg_rate * pct as f64 / 100.0;
        for s in &seen {
            if let Ok(mut l) = s.latencies.lock() {
                l.clear();
            }
        }
        let base = total(&seen);
        record.store(1, Relaxed);
        let count = (rate * seconds as f64).max(1.0) as u64;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let t0 = Instant::now();
        for k in 0..count {
            let due = t0 + interval.mul_f64(k as f64);
            tokio::time::sleep_until(due.into()).await;
            publisher.publish(TOPIC, payload(next_i)).await?;
            next_i += 1;
        }
        let expected = count * clients as u64;
        let got = wait_delivered(&seen, base + expected, Duration::from_secs(30)).await - base;
        record.store(0, Relaxed);
        let mut all: Vec<u32> = Vec::new();
        for s in &seen {
            if let Ok(l) = s.latencies.lock() {
                all.extend_from_slice(&l);
            }
        }
        all.sort_unstable();
        println!(
            "load {pct:>2}% ({rate:.0} msg/s, {:.0} deliveries/s): p50 {:.2} ms, p99 {:.2} ms, loss {}",
            rate * clients as f64,
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            expected - got
        );
    }
    stop.cancel();

    publisher.close().await;
    drop(demo);
    broadcaster_stop.cancel();
    let _ = broadcaster.join();
    clients_rt.shutdown_background();
    Ok(())
}

/// Runs the broadcaster on a thread with its own runtime; returns its
/// endpoints once bound.
fn start_broadcaster(
    config: fanfare_broadcaster::Config,
    stop: CancellationToken,
) -> anyhow::Result<(fanfare_broadcaster::Endpoints, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("broadcaster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match fanfare_broadcaster::start(config, stop).await {
                    Ok(b) => {
                        let _ = tx.send(Ok(b.endpoints().clone()));
                        let _ = b.wait().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                    }
                }
            });
        })?;
    let endpoints = rx.recv()??;
    Ok((endpoints, handle))
}
