//! The federated demo in a real browser (Debian's chromium, driven by
//! playwright-core from `tests/browser/failover.mjs`): `fanfare-demo-web
//! --broadcasters 2`, two pages on two different workers, page A publishes
//! a chat stream and the broadcaster its worker prefers is SIGKILLed
//! mid-stream (its pid from the demo's output). Both pages stay live and
//! show every message exactly once, in order; the supervisor restarts the
//! broadcaster (new pid, new epoch), the Fabric view shows it up with both
//! links up, and a second stream arrives once, in order. This test then
//! checks the restarted broadcaster's own `/stats`: a new epoch, its link
//! up and carrying messages. Screenshots land in target/test-artifacts/.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in `tests/browser`. Outside CI a
//! missing piece skips the test with a SKIPPED line that `cargo test` shows;
//! under CI (any non-empty `CI`) it fails.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fanfare_tests::browser;
use fanfare_tests::demo::Demo;
use fanfare_tests::wait::eventually;

/// `/stats` of a broadcaster's admin server.
async fn stats(admin: &str) -> Result<serde_json::Value> {
    let body = fanfare_tests::http::http_get_ok(admin, "/stats").await?;
    Ok(serde_json::from_str(&body)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_federated_broadcaster_keeps_both_pages_live_and_exactly_once() -> Result<()> {
    let root = fanfare_tests::binary::workspace_root();
    let browser_dir = browser::browser_dir();
    if let Some(why) = browser::missing_prerequisite(&browser_dir) {
        return fanfare_tests::skip::skip(
            "demo_failover_browser::killing_a_federated_broadcaster_keeps_both_pages_live_and_exactly_once",
            &why,
        );
    }
    let bin = fanfare_tests::binary::broadcaster_binary()?;
    let bin = bin.to_str().context("broadcaster path")?;
    let demo = Demo::start(&[
        "--workers",
        "2",
        "--broadcasters",
        "2",
        "--broadcaster-bin",
        bin,
    ])
    .await?;
    let before = demo.broadcasters();
    ensure!(before.len() == 2, "two child broadcasters: {before:?}");
    let epochs: Vec<u64> = {
        let mut v = Vec::new();
        for b in before.values() {
            v.push(stats(&b.admin).await?["epoch"].as_u64().context("epoch")?);
        }
        v
    };
    // Worker wK prefers broadcaster b((K-1) mod 2 + 1).
    let prefers = format!("w1=b1:{},w2=b2:{}", before["b1"].pid, before["b2"].pid);
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("failover.mjs"))
        .arg(&demo.base)
        .arg(&prefers)
        .env("ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(150), run).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    ensure!(
        out.status.success() && stdout.contains("browser ok"),
        "browser script failed"
    );
    // Which one was killed, and its replacement, from the demo's output.
    let victim = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SIGKILLed "))
        .and_then(|r| r.split_whitespace().next())
        .context("the script names the broadcaster it killed")?
        .to_owned();
    let after = demo.broadcasters();
    let restarted = after.get(&victim).context("victim still listed")?;
    ensure!(
        restarted.pid != before[&victim].pid,
        "{victim} restarted with a new pid: {:?} → {:?}",
        before[&victim],
        restarted
    );
    ensure!(
        demo.output().iter().any(|l| l.starts_with(&format!(
            "broadcaster id={victim} pid={} exited",
            before[&victim].pid
        ))),
        "the supervisor saw {victim} exit"
    );
    let i = if victim == "b1" { 0 } else { 1 };
    let s = stats(&restarted.admin).await?;
    let epoch = s["epoch"].as_u64().context("epoch")?;
    ensure!(epoch != epochs[i], "{victim} has a new epoch");
    // Its link is up and carries the other's traffic (the dashboards'
    // metrics cross it every second).
    eventually(
        Duration::from_secs(15),
        "restarted broadcaster's link carries messages",
        || async {
            let s = stats(&restarted.admin).await.ok()?;
            let l = s["links"].as_array()?.first()?.clone();
            (l["state"] == "up" && l["messages_in"].as_u64()? > 0).then_some(())
        },
    )
    .await?;
    let other = after
        .values()
        .find(|b| b.id != victim)
        .context("the other one")?;
    let s = stats(&other.admin).await?;
    let link = s["links"]
        .as_array()
        .and_then(|l| l.first())
        .context("its link")?;
    ensure!(
        link["state"] == "up",
        "the other's link to {victim} is up again: {link}"
    );
    assert!(artifacts.join("browser-failover-fabric.png").exists());
    Ok(())
}
