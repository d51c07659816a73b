//! A client that reconnects to another worker with its position gets exactly
//! what it missed (from that worker's ring, or from the broadcaster's
//! history when the ring is too short), then live events; a position older
//! than any history gets `recovered:false` and a `gap`. The resuming
//! worker's `/metrics` tells which path served the resume.
//!
//! Before the real run every connection must have seen a warm-up event:
//! a worker subscribes at the broadcaster when its first client subscribes,
//! and a worker that heard a heartbeat before its subscription took effect
//! would think the first events were owed to it.

use std::time::Duration;

use fanfare_tests::demo::Demo;
use fanfare_tests::metrics;
use fanfare_tests::websocket::{seq_of, Ws};
use serde_json::{json, Value};

/// Publishes `room.warm` events from `publisher` until every connection in
/// `conns` (subscribed to `room.#`) has received one, then an `end` marker
/// that each reads up to, so their next event is the real run's first.
async fn warm_up(publisher: &mut Ws, conns: &mut [&mut Ws]) -> anyhow::Result<()> {
    let mut seen = vec![false; conns.len()];
    for k in 0..100 {
        if seen.iter().all(|s| *s) {
            break;
        }
        publisher.publish("room.warm", json!({ "w": k })).await?;
        for (c, seen) in conns.iter_mut().zip(&mut seen) {
            while !*seen {
                match tokio::time::timeout(Duration::from_millis(200), c.recv()).await {
                    Ok(ev) => *seen = ev?["topic"] == "room.warm",
                    Err(_) => break,
                }
            }
        }
    }
    anyhow::ensure!(seen.iter().all(|s| *s), "warm-up never reached {seen:?}");
    publisher
        .publish("room.warm", json!({ "w": "end" }))
        .await?;
    for c in conns.iter_mut() {
        while c.recv().await?["data"]["w"] != "end" {}
    }
    Ok(())
}

/// `(from the ring, from the broadcaster's history)`: events worker
/// `worker` has sent during recoveries so far.
async fn recovered(demo: &Demo, worker: &str) -> anyhow::Result<(f64, f64)> {
    let text = demo.metrics_of(worker).await?;
    let get = |name: &str| metrics::value_or_zero(&text, name, &[("worker", worker)]);
    Ok((
        get("fanfare_hub_recovered_ring_total"),
        get("fanfare_hub_recovered_replay_total"),
    ))
}

async fn publish_n(p: &mut Ws, from: u64, n: u64) -> anyhow::Result<()> {
    for i in from..from + n {
        p.publish("room.a", json!({ "i": i })).await?;
    }
    Ok(())
}

async fn expect_run(c: &mut Ws, from: u64, n: u64) -> anyhow::Result<String> {
    let mut pos = String::new();
    for i in from..from + n {
        let ev = c.recv().await?;
        assert_eq!(ev["op"], "event", "{ev}");
        assert_eq!(ev["data"]["i"], i, "{ev}");
        pos = ev["pos"].as_str().unwrap_or_default().to_owned();
    }
    Ok(pos)
}

/// Resumes at another worker after `missed` events; `ring` sizes the hubs'
/// rings. Returns how many of the missed events the resuming worker sent
/// from its ring and from the broadcaster's history.
async fn resume_elsewhere(ring: &str, missed: u64) -> anyhow::Result<(f64, f64)> {
    let demo = Demo::start(&["--workers", "2", "--publish-rate", "10000", "--ring", ring]).await?;
    let mut a = demo.connect_where(|_| true).await?;
    let first = a.worker.clone();
    let mut publisher = demo.connect_where(|_| true).await?;
    // A watcher on the other worker proves the events got there before we resume.
    let mut watcher = demo.connect_where(|w| w != first).await?;
    watcher.subscribe(&["room.#"], None).await?;
    a.subscribe(&["room.#"], None).await?;
    warm_up(&mut publisher, &mut [&mut a, &mut watcher]).await?;
    publish_n(&mut publisher, 0, 10).await?;
    let pos = expect_run(&mut a, 0, 10).await?;
    drop(a);
    publish_n(&mut publisher, 10, missed).await?;
    expect_run(&mut watcher, 0, 10 + missed).await?;
    let mut b = demo.connect_where(|w| w == watcher.worker).await?;
    let (ring_before, replay_before) = recovered(&demo, &b.worker).await?;
    let (part, v) = b.resume(&["room.#"], &pos, 10_000).await?;
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(v["replayed"], missed, "{v}");
    // Exactly the missed events, once each, in order.
    let got: Vec<&Value> = part.iter().map(|f| &f["data"]["i"]).collect();
    let want: Vec<Value> = (10..10 + missed).map(Value::from).collect();
    assert_eq!(got, want.iter().collect::<Vec<_>>(), "{part:?}");
    let (ring_after, replay_after) = recovered(&demo, &b.worker).await?;
    publish_n(&mut publisher, 10 + missed, 5).await?;
    expect_run(&mut b, 10 + missed, 5).await?;
    Ok((ring_after - ring_before, replay_after - replay_before))
}

#[tokio::test]
async fn resume_at_another_worker_from_its_ring() -> anyhow::Result<()> {
    let (ring, replay) = resume_elsewhere("10000", 25).await?;
    assert_eq!((ring, replay), (25.0, 0.0), "all 25 from the ring");
    Ok(())
}

#[tokio::test]
async fn resume_at_another_worker_from_the_broadcaster_history() -> anyhow::Result<()> {
    // Each ring holds 5 events: the first 20 missed come from the broadcaster.
    let (ring, replay) = resume_elsewhere("5", 25).await?;
    assert!(
        replay >= 20.0,
        "at least 20 from history: ring {ring}, history {replay}"
    );
    assert_eq!(
        ring + replay,
        25.0,
        "25 recovered in all: ring {ring}, history {replay}"
    );
    Ok(())
}

#[tokio::test]
async fn a_position_older_than_any_history_gets_recovered_false_and_a_gap() -> anyhow::Result<()> {
    let demo = Demo::start(&[
        "--workers",
        "2",
        "--publish-rate",
        "10000",
        "--ring",
        "5",
        "--history",
        "20",
    ])
    .await?;
    let mut a = demo.connect_where(|_| true).await?;
    let first = a.worker.clone();
    let mut watcher = demo.connect_where(|w| w != first).await?;
    watcher.subscribe(&["room.#"], None).await?;
    a.subscribe(&["room.#"], None).await?;
    let mut publisher = demo.connect_where(|_| true).await?;
    warm_up(&mut publisher, &mut [&mut a, &mut watcher]).await?;
    a.publish("room.a", json!({ "i": 0 })).await?;
    let ev = a.recv().await?;
    let pos = ev["pos"].as_str().unwrap_or_default().to_owned();
    let first_seq = seq_of(&ev);
    publish_n(&mut a, 1, 60).await?;
    let last = expect_run(&mut a, 1, 60).await?;
    expect_run(&mut watcher, 0, 61).await?;
    let mut b = demo.connect_where(|w| w == watcher.worker).await?;
    let (part, v) = b.resume(&["room.#"], &pos, 10_000).await?;
    assert_eq!(v["recovered"], false, "{v}");
    let gap = &part[0];
    assert_eq!(gap["op"], "gap", "{gap}");
    assert_eq!(gap["first"], first_seq + 1, "{gap}");
    // Then whatever the history still held, up to the newest, in order.
    let mut seq = 0;
    for ev in &part[1..] {
        assert_eq!(ev["op"], "event", "{ev}");
        assert!(seq_of(ev) > seq);
        seq = seq_of(ev);
    }
    assert_eq!(seq, seq_of(&serde_json::json!({ "pos": last })));
    assert_eq!(v["replayed"], part.len() as u64 - 1, "{v}");
    Ok(())
}
