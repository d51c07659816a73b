//! Worker cost per delivery, counted in instructions (repeatable on a noisy
//! machine): one demo worker process (the hub) under `valgrind
//! --tool=callgrind`, C websocket clients, N paced events.
//!
//! The worker's counters are reset (`callgrind_control --zero`) once every
//! client is subscribed, and dumped (`callgrind_control --dump`) once every
//! client has every event, so the figure covers exactly the load: total
//! instructions / (N × C) = instructions per delivery (the per-event share,
//! intake and serialization, is divided over the C deliveries of an event).
//!
//! `cargo bench -p fanfare-benches --bench hubcost`. Knobs (env):
//! FANFARE_HUBCOST_CLIENTS (50), FANFARE_HUBCOST_EVENTS (400),
//! FANFARE_HUBCOST_RATE (events/s, 100), FANFARE_HUBCOST_VALGRIND (1; 0 runs
//! the worker natively and reports its CPU time from /proc instead).
//! Needs `valgrind` (Debian: `apt-get install valgrind`) and a release
//! broadcaster and demo binary (`cargo build --release -p
//! fanfare-broadcaster -p fanfare-demo-web`).

#[allow(dead_code)] // shared with the forwarding bench, which uses all of it
#[path = "harness/procs.rs"]
mod procs;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fanfare_tests::binary::demo_binary;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::websocket::Ws;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;
use zeromq::{Socket, SocketSend};

const TOPIC: &str = "bench.cost";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free port on 127.0.0.1 (bound, read and released; the worker binds it
/// with SO_REUSEPORT right after).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn callgrind_control(args: &[&str]) -> Result<()> {
    let st = std::process::Command::new("callgrind_control")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .context("callgrind_control")?;
    anyhow::ensure!(st.success(), "callgrind_control {args:?} failed");
    Ok(())
}

/// Sum of the `summary:`/`totals:` Ir lines of the callgrind dumps with the
/// given part number (`<out>.<part>`, one per thread with --separate-threads=no).
fn dumped_ir(out: &std::path::Path, part: u32) -> Result<u64> {
    let dir = out.parent().context("out dir")?;
    let stem = out
        .file_name()
        .and_then(|s| s.to_str())
        .context("out name")?;
    let mut total = 0;
    let mut found = false;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != format!("{stem}.{part}") {
            continue;
        }
        let text = std::fs::read_to_string(e.path())?;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("summary: ") {
                total += v.split_whitespace().next().unwrap_or("0").parse::<u64>()?;
                found = true;
            }
        }
    }
    anyhow::ensure!(
        found,
        "no callgrind dump {stem}.{part} in {}",
        dir.display()
    );
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("hubcost: a benchmark, not a test; run it with `cargo bench -p fanfare-benches --bench hubcost`");
        return Ok(());
    }
    let clients = env("FANFARE_HUBCOST_CLIENTS", 50) as usize;
    let events = env("FANFARE_HUBCOST_EVENTS", 400);
    let rate = env("FANFARE_HUBCOST_RATE", 100).max(1);
    let valgrind = env("FANFARE_HUBCOST_VALGRIND", 1) == 1;

    let b = BroadcasterProcess::spawn(&["--id", "b1"]).await?;
    let ep = b.endpoints().clone();
    let port = free_port()?;
    let out_file: PathBuf =
        std::env::temp_dir().join(format!("hubcost-{}.callgrind", std::process::id()));
    let demo = demo_binary()?;
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--tool=callgrind",
            "--quiet",
            &format!("--callgrind-out-file={}", out_file.display()),
        ])
        .arg(&demo);
        c
    } else {
        Command::new(&demo)
    };
    cmd.args(["--threads=1", "worker", "--id", "w1", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .arg(format!(
            "--broadcaster=pull={},pub={},replay={}",
            ep.pull, ep.publish, ep.replay
        ))
        .args(["--trusted-publisher=w1"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut worker = cmd.spawn().context("starting the worker")?;
    let stdin = worker.stdin.take();
    let out = worker.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let pid: u32 = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("ready worker=") {
                let pid = rest
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("pid="))
                    .context("pid")?;
                return Ok(pid.parse()?);
            }
        }
        bail!("worker exited before it was ready")
    })
    .await
    .context("worker not ready in 180 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut conns = Vec::new();
    for _ in 0..clients {
        let mut ws = Ws::connect(&url).await?;
        ws.subscribe(&[TOPIC], None).await?;
        conns.push(ws);
    }
    // Publisher: raw PUSH into the broadcaster's ingress. A probe proves the
    // path end to end before the counters are zeroed.
    let mut push = zeromq::PushSocket::new();
    push.connect(&ep.pull).await?;
    let payload = |i: u64| {
        format!(
            r#"{{"i":{i},"text":"a benchmark event of about one hundred bytes, padded out to size.."}}"#
        )
    };
    let probe_deadline = Instant::now() + Duration::from_secs(60);
    'probe: loop {
        anyhow::ensure!(Instant::now() < probe_deadline, "no probe came through");
        push.send(
            vec![bytes::Bytes::from(TOPIC), payload(0).into()]
                .try_into()
                .map_err(|_| anyhow::anyhow!("empty message"))?,
        )
        .await?;
        if let Ok(Some(Ok(Message::Text(_)))) =
            tokio::time::timeout(Duration::from_millis(500), conns[0].stream.next()).await
        {
            break 'probe;
        }
    }
    // Drain what the probes left (each client got one or more).
    for ws in &mut conns {
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(300), ws.stream.next()).await
        {}
    }

    let cpu0 = procs::cpu_us(pid);
    if valgrind {
        callgrind_control(&["--zero", &pid.to_string()])?;
    }
    let t0 = Instant::now();
    let receivers: Vec<_> = conns
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut got = 0u64;
                while got < events {
                    match tokio::time::timeout(Duration::from_secs(60), ws.stream.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"event\"") => got += 1,
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                (got, ws)
            })
        })
        .collect();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = Instant::now();
    for i in 1..=events {
        push.send(
            vec![bytes::Bytes::from(TOPIC), payload(i).into()]
                .try_into()
                .map_err(|_| anyhow::anyhow!("empty message"))?,
        )
        .await?;
        next += gap;
        tokio::time::sleep_until(next.into()).await;
    }
    let mut received = 0;
    let mut keep = Vec::new();
    for r in receivers {
        let (got, ws) = r.await?;
        received += got;
        keep.push(ws);
    }
    let elapsed = t0.elapsed();
    let cpu = procs::cpu_us(pid).saturating_sub(cpu0);
    let deliveries = events * clients as u64;
    println!(
        "hubcost clients={clients} events={events} rate={rate}/s received={received}/{deliveries} elapsed={:.2}s",
        elapsed.as_secs_f64()
    );
    println!(
        "worker cpu: {:.1} µs per delivery ({} ms in all{})",
        cpu as f64 / deliveries.max(1) as f64,
        cpu / 1000,
        if valgrind { ", under valgrind" } else { "" }
    );
    if valgrind {
        callgrind_control(&["--dump", &pid.to_string()])?;
        let ir = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(ir) = dumped_ir(&out_file, 1) {
                    return ir;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .context("no callgrind dump")?;
        println!(
            "worker instructions: {ir} total, {:.0} per delivery",
            ir as f64 / deliveries as f64
        );
        println!("profile: {}.1 (callgrind_annotate)", out_file.display());
    }
    drop(stdin);
    drop(keep);
    let _ = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await;
    anyhow::ensure!(
        received == deliveries,
        "lost deliveries: {received}/{deliveries}"
    );
    Ok(())
}
