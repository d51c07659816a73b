//! The broadcaster restarts (new epoch): a browser resuming with a position
//! from the old epoch gets `recovered:false`, a `gap` saying
//! `epoch_changed`, then the new epoch's events in order.

use std::time::Duration;

use fanfare_tests::demo::Demo;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::websocket::Ws;
use serde_json::json;

async fn next_event(ws: &mut Ws) -> anyhow::Result<serde_json::Value> {
    loop {
        let v = ws.recv().await?;
        if v["op"] == "event" {
            return Ok(v);
        }
    }
}

#[tokio::test]
async fn a_position_from_before_a_broadcaster_restart_gets_an_epoch_gap() -> anyhow::Result<()> {
    let mut b = BroadcasterProcess::spawn(&["--id", "b1"]).await?;
    let e = b.endpoints().clone();
    let spec = format!("pull={},pub={},replay={}", e.pull, e.publish, e.replay);
    let demo = Demo::start(&[
        "--workers",
        "2",
        "--broadcaster",
        &spec,
        "--publish-rate",
        "1000",
    ])
    .await?;
    let mut a = demo.connect_where(|_| true).await?;
    let first = a.worker.clone();
    a.subscribe(&["room.#"], None).await?;
    a.publish("room.a", json!({ "i": 0 })).await?;
    let old = next_event(&mut a).await?;
    let pos = old["pos"].as_str().unwrap_or_default().to_owned();
    drop(a);

    b.restart().await?;
    // Once the other worker's hub sees the new epoch, publish three events there.
    let mut watcher = demo.connect_where(|w| w != first).await?;
    watcher.subscribe(&["room.#"], None).await?;
    let mut k = 0;
    let new_epoch_event = loop {
        k += 1;
        anyhow::ensure!(k < 100, "no event after the restart");
        watcher.publish("room.probe", json!({ "k": k })).await?;
        match tokio::time::timeout(Duration::from_millis(500), next_event(&mut watcher)).await {
            Ok(v) => break v?,
            Err(_) => continue,
        }
    };
    let new_epoch = new_epoch_event["pos"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(
        new_epoch.split(':').nth(1),
        pos.split(':').nth(1),
        "epoch changed"
    );
    for i in 1..=3 {
        watcher.publish("room.a", json!({ "i": i })).await?;
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let v = next_event(&mut watcher).await?;
        if v["topic"] == "room.a" {
            seen.push(v["data"]["i"].as_u64().unwrap_or(0));
        }
    }
    assert_eq!(seen, vec![1, 2, 3]);

    let mut c = demo.connect_where(|w| w == watcher.worker).await?;
    let (part, v) = c.resume(&["room.#"], &pos, 10_000).await?;
    assert_eq!(v["recovered"], false, "{v}");
    let gap = &part[0];
    assert_eq!(
        (gap["op"].as_str(), gap["reason"].as_str()),
        (Some("gap"), Some("epoch_changed")),
        "{gap}"
    );
    // Then the new epoch's room events, in order, ending with 1, 2, 3 (in
    // the replay part, or live after it).
    let mut replayed = part[1..].iter().filter(|v| v["op"] == "event").cloned();
    let mut tail = Vec::new();
    while tail.len() < 3 || tail[tail.len() - 3..] != [1, 2, 3] {
        let v = match replayed.next() {
            Some(v) => v,
            None => next_event(&mut c).await?,
        };
        assert!(v["pos"]
            .as_str()
            .is_some_and(|p| p.split(':').nth(1) == new_epoch.split(':').nth(1)));
        if v["topic"] == "room.a" {
            tail.push(v["data"]["i"].as_u64().unwrap_or(0));
        }
    }
    Ok(())
}
