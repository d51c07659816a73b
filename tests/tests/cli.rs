//! The broadcaster's tools against a running broadcaster: `pub` (argument
//! and stdin lines, refusing reserved topics), `tail PATTERN --since SEQ`
//! (history first, then live, no duplicates, unrecoverable part said on
//! stderr) and `stats` (human-readable and `--json`).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::binary::log_dir;
use fanfare_tests::cli::{run_tool, RunningTool, TailLine};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::{metrics, sockets, RECV_TIMEOUT};

const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn pub_sends_an_argument_and_stdin_lines() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "cli-pub"]).await?;
    let e = b.endpoints().clone();
    let mut sub = sockets::sub(&e.publish, &["cli."]).await?;
    let mut push = sockets::push(&e.pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "cli").await?;

    let out = run_tool(
        &["pub", "cli.one", "hello", "--pull", &e.pull],
        None,
        TOOL_TIMEOUT,
    )
    .await?;
    ensure!(out.code == Some(0), "pub failed: {out:?}");
    let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
    ensure!(
        m.topic == "cli.one" && m.payload == "hello" && m.origin == "cli-pub",
        "{m:?}"
    );

    let out = run_tool(
        &["pub", "cli.lines", "--pull", &e.pull],
        Some(b"first\nsecond\nthird\n"),
        TOOL_TIMEOUT,
    )
    .await?;
    ensure!(out.code == Some(0), "pub from stdin failed: {out:?}");
    for want in ["first", "second", "third"] {
        let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
        ensure!(
            m.topic == "cli.lines" && m.payload == want,
            "stdin line {want}: {m:?}"
        );
    }

    let admin = e.admin_addr()?.to_owned();
    let counts = |text: &str| {
        (
            metrics::value_or_zero(text, "fanfare_ingress_messages_total", &[]),
            metrics::value_or_zero(
                text,
                "fanfare_connections_accepted_total",
                &[("socket", "pull")],
            ),
        )
    };
    let (messages_before, pulls_before) = counts(&metrics::fetch(&admin).await?);
    let out = run_tool(
        &["pub", "_fanfare.hb.x", "forged", "--pull", &e.pull],
        None,
        TOOL_TIMEOUT,
    )
    .await?;
    ensure!(
        out.code != Some(0),
        "pub must refuse a reserved topic: {out:?}"
    );
    ensure!(
        out.stderr.contains("_fanfare.hb.x") && out.stderr.contains("reserved"),
        "and say why (the topic, reserved): {out:?}"
    );
    // Nothing was sent: after a marker of our own has gone through, the
    // broadcaster counted exactly that one message and no new PULL peer.
    sockets::publish(&mut push, "cli.after", Bytes::from_static(b"marker")).await?;
    let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
    ensure!(m.topic == "cli.after", "the marker, not {m:?}");
    let (messages, pulls) = counts(&metrics::fetch(&admin).await?);
    ensure!(
        messages == messages_before + 1.0 && pulls == pulls_before,
        "the refused pub sent nothing: ingress {messages_before} -> {messages}, \
         pull connections {pulls_before} -> {pulls}"
    );
    Ok(())
}

#[tokio::test]
async fn tail_since_replays_history_then_follows_live() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "cli-tail"]).await?;
    let e = b.endpoints().clone();
    let mut sub = sockets::sub(&e.publish, &["tail."]).await?;
    let mut push = sockets::push(&e.pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "tail").await?;
    let mut hist = Vec::new();
    for i in 0..6 {
        let topic = if i % 2 == 0 {
            "tail.keep"
        } else {
            "other.skip"
        };
        sockets::publish(&mut push, topic, Bytes::from(format!("h{i}"))).await?;
    }
    for _ in 0..3 {
        hist.push(sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?);
    }
    // From the second kept message on: h2, h4 come from history.
    let since = hist[1].seq.to_string();
    let log = log_dir().join(format!("tail-{}.stderr.log", std::process::id()));
    let mut tail = RunningTool::spawn(
        &[
            "tail", "tail.#", "--since", &since, "--pub", &e.publish, "--replay", &e.replay,
        ],
        &log,
    )?;
    for want in &hist[1..] {
        let line = TailLine::parse(&tail.next_line(RECV_TIMEOUT).await?)?;
        ensure!(
            line.topic == want.topic
                && line.seq == want.seq
                && line.epoch == want.epoch
                && line.origin == "cli-tail"
                && want.payload == line.payload.as_bytes(),
            "history line {line:?} vs {want:?}"
        );
    }
    // Live: publish numbered messages until tail shows one (its SUB is live
    // from then on), then a final run that must follow without gaps.
    let mut n = 0u32;
    let first_live = loop {
        ensure!(n < 200, "tail never showed a live message");
        sockets::publish(&mut push, "tail.live", Bytes::from(format!("live{n}"))).await?;
        n += 1;
        if let Ok(l) = tail.next_line(Duration::from_millis(100)).await {
            break TailLine::parse(&l)?;
        }
    };
    ensure!(
        first_live.topic == "tail.live" && first_live.seq > hist[2].seq,
        "{first_live:?}"
    );
    let mut last_seq = first_live.seq;
    let mut seen = vec![first_live.payload.clone()];
    for i in 0..20 {
        sockets::publish(&mut push, "tail.live", Bytes::from(format!("final{i}"))).await?;
    }
    while seen.last().map(String::as_str) != Some("final19") {
        let line = TailLine::parse(&tail.next_line(RECV_TIMEOUT).await.context("live lines")?)?;
        ensure!(
            line.seq > last_seq,
            "no duplicate, in order: {line:?} after {last_seq}"
        );
        ensure!(line.topic == "tail.live", "pattern respected: {line:?}");
        last_seq = line.seq;
        seen.push(line.payload);
    }
    let finals: Vec<&String> = seen.iter().filter(|p| p.starts_with("final")).collect();
    ensure!(
        finals.len() == 20,
        "every final live message shown once: {seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn tail_count_exits_and_reports_unrecoverable_history() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "cli-tail2", "--history-count", "5"]).await?;
    let e = b.endpoints().clone();
    let admin_url = e.admin_url()?.to_owned();
    let mut push = sockets::push(&e.pull).await?;
    for i in 0..20 {
        sockets::publish(&mut push, "gone.x", Bytes::from(format!("g{i}"))).await?;
    }
    // Wait until the broadcaster stamped all 20 (its state via `stats --json`).
    fanfare_tests::wait::eventually(RECV_TIMEOUT, "20 messages stamped", || {
        let admin = admin_url.clone();
        async move {
            let out = run_tool(&["stats", "--json", "--admin", &admin], None, TOOL_TIMEOUT)
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            (v["last_seq"].as_u64()? >= 20).then_some(())
        }
    })
    .await?;
    let log = log_dir().join(format!("tail2-{}.stderr.log", std::process::id()));
    let mut tail = RunningTool::spawn(
        &[
            "tail", "gone.#", "--since", "1", "--count", "5", "--pub", &e.publish, "--replay",
            &e.replay,
        ],
        &log,
    )?;
    let mut payloads = Vec::new();
    for _ in 0..5 {
        payloads.push(TailLine::parse(&tail.next_line(RECV_TIMEOUT).await?)?.payload);
    }
    ensure!(
        payloads == ["g15", "g16", "g17", "g18", "g19"],
        "the 5 held: {payloads:?}"
    );
    let status = tail.wait(RECV_TIMEOUT).await?;
    ensure!(status.success(), "tail --count exits 0: {status}");
    let stderr = std::fs::read_to_string(&log)?;
    ensure!(
        stderr.contains("unrecoverable"),
        "unrecoverable part said: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn stats_shows_a_running_broadcaster() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "cli-stats"]).await?;
    let e = b.endpoints().clone();
    let admin_url = e.admin_url()?.to_owned();
    let mut push = sockets::push(&e.pull).await?;
    for _ in 0..7 {
        sockets::publish(&mut push, "stats.x", Bytes::from_static(b"s")).await?;
    }
    let json = fanfare_tests::wait::eventually(RECV_TIMEOUT, "7 messages in stats", || {
        let admin = admin_url.clone();
        async move {
            let out = run_tool(&["stats", "--json", "--admin", &admin], None, TOOL_TIMEOUT)
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            (v["ingress"]["messages"].as_u64()? >= 7).then_some(v)
        }
    })
    .await?;
    ensure!(json["id"] == "cli-stats", "{json}");
    let out = run_tool(&["stats", "--admin", &admin_url], None, TOOL_TIMEOUT).await?;
    ensure!(out.code == Some(0), "stats failed: {out:?}");
    ensure!(
        out.stdout.contains("cli-stats"),
        "human view names the broadcaster: {}",
        out.stdout
    );
    let ingress = out
        .stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("ingress"))
        .map(str::trim_start);
    ensure!(
        ingress.is_some_and(|l| l.starts_with("7 messages,")),
        "and shows the ingress count, 7 messages: {}",
        out.stdout
    );
    let out = run_tool(
        &["stats", "--admin", "http://127.0.0.1:1"],
        None,
        TOOL_TIMEOUT,
    )
    .await?;
    ensure!(
        out.code != Some(0) && !out.stderr.is_empty(),
        "no broadcaster → error: {out:?}"
    );
    Ok(())
}
