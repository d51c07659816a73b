//! Many distinct patterns against the real demo: dispatch does not scan
//! every pattern of the worker per event (probe latency stays low with
//! thousands of patterns that never match), and past the worker's cap of
//! distinct patterns a `subscribe` gets `rate_limited`.

use std::time::Duration;

use anyhow::{bail, Result};
use fanfare_tests::demo::Demo;
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
    eprintln!("probe latency with 9 984 distinct patterns: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    drop(conns);
    Ok(())
}
