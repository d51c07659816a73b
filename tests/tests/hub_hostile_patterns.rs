//! Many distinct patterns against the real demo: dispatch does not scan
//! every pattern of the worker per event (probe latency stays low with
//! thousands of patterns that never match), and past the worker's cap of
//! distinct patterns a `subscribe` gets `rate_limited`; wildcard-led
//! patterns (matched on every event) have their own, smaller cap (256).

use std::time::Duration;

use anyhow::{bail, Result};
use fanfare_tests::demo::{metric, Demo};
use fanfare_tests::websocket::Ws;
use serde_json::{json, Value};

#[tokio::test]
async fn thousands_of_distinct_patterns_cost_dispatch_little_and_are_capped() -> Result<()> {
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "100000"]).await?;
    let mut probe = demo.connect_where(|_| true).await?;
    probe.subscribe(&["probe.#"], None).await?;
    let mut p = demo.connect_where(|_| true).await?;

    // 160 connections × 64 distinct patterns = 10 240, past the default cap
    // of 10 000 distinct patterns per worker.
    let mut conns: Vec<Ws> = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for c in 0..160 {
        let mut ws = demo.connect_where(|_| true).await?;
        let topics: Vec<String> = (0..64).map(|k| format!("c{c}.k{k}.*.#")).collect();
        ws.send(&json!({"op": "subscribe", "topics": topics}))
            .await?;
        let v: Value = ws.recv().await?;
        match (v["op"].as_str(), v["code"].as_str()) {
            (Some("subscribed"), _) => accepted += 1,
            (Some("error"), Some("rate_limited")) => {
                assert!(
                    v["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("distinct patterns"),
                    "{v}"
                );
                refused += 1
            }
            _ => bail!("unexpected answer {v}"),
        }
        conns.push(ws);
    }
    assert_eq!((accepted, refused), (156, 4), "10 000 / 64 = 156 accepted");

    let mut lat = Vec::new();
    for i in 0..300u64 {
        lat.push(p.round_trip(&mut probe, "probe.x", i).await?);
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    eprintln!("FIGURE distinct-pattern cap: probe latency with 9 984 distinct patterns: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    drop(conns);
    Ok(())
}

/// Subscribes `topics` on `ws`; true when subscribed, false when refused at
/// the wildcard-led cap (any other answer fails).
async fn wildcard_subscribe(ws: &mut Ws, topics: &[String]) -> Result<bool> {
    ws.send(&json!({"op": "subscribe", "topics": topics}))
        .await?;
    let v: Value = ws.recv().await?;
    match (v["op"].as_str(), v["code"].as_str()) {
        (Some("subscribed"), _) => Ok(true),
        (Some("error"), Some("rate_limited")) => {
            let msg = v["message"].as_str().unwrap_or("");
            anyhow::ensure!(msg.contains("start with a wildcard"), "{v}");
            Ok(false)
        }
        _ => bail!("unexpected answer {v}"),
    }
}

#[tokio::test]
async fn wildcard_led_patterns_have_their_own_smaller_cap() -> Result<()> {
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "100000"]).await?;
    let mut probe = demo.connect_where(|_| true).await?;
    let worker = probe.worker.clone();
    probe.subscribe(&["probe.#"], None).await?;
    let mut p = demo.connect_where(|_| true).await?;

    // 5 connections × 64 distinct wildcard-led patterns = 320, past the cap
    // of 256: four are served, the fifth is refused whole.
    let mut conns: Vec<Ws> = Vec::new();
    let mut answers = Vec::new();
    for c in 0..5 {
        let mut ws = demo.connect_where(|_| true).await?;
        let topics: Vec<String> = (0..64)
            .map(|k| match k % 3 {
                0 => format!("*.c{c}k{k}"),
                1 => format!("#.c{c}k{k}"),
                _ => format!("*.*.c{c}k{k}.#"),
            })
            .collect();
        answers.push(wildcard_subscribe(&mut ws, &topics).await?);
        conns.push(ws);
    }
    assert_eq!(answers, [true, true, true, true, false]);
    // Literal-led patterns are still served; so is a wildcard-led pattern
    // the worker already serves.
    let mut other = demo.connect_where(|_| true).await?;
    assert!(wildcard_subscribe(&mut other, &["lit.#".to_owned(), "*.c0k0".to_owned()]).await?);
    assert!(!wildcard_subscribe(&mut other, &["#".to_owned()]).await?);
    let text = demo.metrics_of(&worker).await?;
    let refused = metric(
        &text,
        &format!("fanfare_hub_patterns_refused_wildcard_total{{worker=\"{worker}\"}}"),
    );
    assert_eq!(refused, Some(2), "counted");

    // With 256 wildcard-led patterns checked on every event, live delivery
    // stays fast.
    let mut lat = Vec::new();
    for i in 0..300u64 {
        lat.push(p.round_trip(&mut probe, "probe.x", i).await?);
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    eprintln!("FIGURE wildcard-led cap: 4 of 5 served, 2 refusals counted; probe with 256 wildcard-led patterns: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");

    // One connection leaves: 63 of its patterns free room (`*.c0k0` is
    // still served to `other`).
    drop(conns.remove(0));
    let topics: Vec<String> = (0..63).map(|k| format!("*.late{k}")).collect();
    let mut served = false;
    for _ in 0..50 {
        // A fresh connection per try: refusals cost error tokens.
        let mut late = demo.connect_where(|_| true).await?;
        if wildcard_subscribe(&mut late, &topics).await? {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "room again after a connection left");
    Ok(())
}
