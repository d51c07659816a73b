//! Resuming at a position: ring, history, gap.

use super::*;

#[tokio::test]
async fn resume_uses_the_ring_then_the_history_then_says_gap() {
    let (hub, fabric, feed) = setup(HubOptions::new("w1").ring(3, 1 << 20));
    let mut watcher = connect(&hub, 64);
    watcher.json().await;
    subscribed(&mut watcher, json!(["#"]), None).await;
    for s in 1..=6 {
        fabric
            .history
            .lock()
            .unwrap()
            .push(msg(s, if s % 2 == 0 { "a.x" } else { "b.x" }));
        feed.send(FabricItem::Message(msg(
            s,
            if s % 2 == 0 { "a.x" } else { "b.x" },
        )))
        .await
        .unwrap();
        watcher.json().await;
    }
    // Ring holds 4..=6. From 4: ring only.
    let mut c = connect(&hub, 64);
    c.json().await;
    let (part, v) = resumed(&mut c, json!(["#"]), "b1:7:4").await;
    assert_eq!(
        (v["recovered"].as_bool(), v["replayed"].as_u64()),
        (Some(true), Some(2))
    );
    let pos: Vec<&Value> = part.iter().map(|f| &f["pos"]).collect();
    assert_eq!(pos, [&json!("b1:7:5"), &json!("b1:7:6")]);
    // From 1 with a filter: history for 2..=3, ring for 4..=6.
    let mut d = connect(&hub, 64);
    d.json().await;
    let (part, v) = resumed(&mut d, json!(["a.*"]), "b1:7:1").await;
    assert_eq!(v["replayed"], 3);
    for (f, s) in part.iter().zip([2, 4, 6]) {
        assert_eq!(f["pos"], format!("b1:7:{s}"));
    }
    assert_eq!(part.len(), 3);
    feed.send(FabricItem::Message(msg(7, "a.y"))).await.unwrap();
    assert_eq!(d.json().await["pos"], "b1:7:7");
    // History lost 1..=2: recovered false and a gap first.
    *fabric.oldest.lock().unwrap() = 3;
    let mut e = connect(&hub, 64);
    e.json().await;
    let (part, v) = resumed(&mut e, json!(["#"]), "b1:7:0").await;
    assert_eq!(v["recovered"], false);
    let g = &part[0];
    assert_eq!(
        (g["op"].as_str(), g["first"].as_u64(), g["last"].as_u64()),
        (Some("gap"), Some(1), Some(2))
    );
    assert_eq!(part[1]["pos"], "b1:7:3");
}

#[tokio::test]
async fn a_since_beyond_the_newest_is_up_to_date_and_never_wraps() {
    let (hub, fabric, feed) = setup(HubOptions::new("w1").ring(100, 1 << 20));
    let mut watcher = connect(&hub, 64);
    watcher.json().await;
    subscribed(&mut watcher, json!(["#"]), None).await;
    for s in 1..=3 {
        fabric.history.lock().unwrap().push(msg(s, "a.x"));
        feed.send(FabricItem::Message(msg(s, "a.x"))).await.unwrap();
        watcher.json().await;
    }
    // Origin in the ring, and an origin the hub never saw: nothing replayed.
    for since in ["b1:7:18446744073709551615", "zz:1:18446744073709551615"] {
        let mut c = connect(&hub, 64);
        c.json().await;
        let (part, v) = resumed(&mut c, json!(["#"]), since).await;
        assert_eq!(v["replayed"], 0, "{since}: {v}");
        assert!(part.is_empty(), "{part:?}");
        // Up to date at the newest: the next live event arrives.
        let next = 4 + u64::from(since.starts_with("zz"));
        feed.send(FabricItem::Message(msg(next, "a.x")))
            .await
            .unwrap();
        watcher.json().await;
        let ev = c.json().await;
        assert_eq!(ev["pos"], format!("b1:7:{next}"), "{since}: {ev}");
    }
}

#[tokio::test]
async fn subscribe_is_rate_limited() {
    let (hub, _fabric, _feed) = setup(HubOptions::new("w1").subscribe_rate(0.001, 3));
    let mut c = connect(&hub, 64);
    c.json().await;
    for _ in 0..3 {
        resumed(&mut c, json!(["a.x"]), "b1:7:0").await;
    }
    c.send(json!({"op":"subscribe","topics":["a.y"]})).await;
    let v = c.json().await;
    assert_eq!(
        (v["op"].as_str(), v["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{v}"
    );
}

#[tokio::test]
async fn a_resume_is_bounded_by_its_bytes_and_scan_budget() {
    let opts = HubOptions::new("w1")
        .ring(100, 1 << 20)
        .resume_limits(200, 1000);
    let (hub, _fabric, feed) = setup(opts);
    let mut watcher = connect(&hub, 128);
    watcher.json().await;
    subscribed(&mut watcher, json!(["#"]), None).await;
    for s in 1..=10 {
        feed.send(FabricItem::Message(msg(s, "a.x"))).await.unwrap();
        watcher.json().await;
    }
    // An event frame is 70 to 100 bytes: 2 fit in 200.
    let mut c = connect(&hub, 64);
    c.json().await;
    let (part, v) = resumed(&mut c, json!(["#"]), "b1:7:0").await;
    assert_eq!(v["recovered"], false, "{v}");
    let n = v["replayed"].as_u64().unwrap();
    assert_eq!(n, 2, "{v}");
    assert_eq!(part.len(), 3, "{part:?}");
    for f in &part[..2] {
        assert_eq!(f["op"], "event");
    }
    let g = &part[2];
    assert_eq!(
        (
            g["op"].as_str(),
            g["reason"].as_str(),
            g["first"].as_u64(),
            g["last"].as_u64()
        ),
        (Some("gap"), Some("too_far_behind"), Some(3), Some(10)),
        "{g}"
    );
    // Live again after the gap; nothing of the gap's range comes later.
    feed.send(FabricItem::Message(msg(11, "a.x")))
        .await
        .unwrap();
    assert_eq!(c.json().await["pos"], "b1:7:11");
}

#[tokio::test]
async fn distinct_patterns_per_hub_are_capped() {
    let (hub, _fabric, feed) = setup(HubOptions::new("w1").max_patterns(64, 3));
    let mut a = connect(&hub, 64);
    a.json().await;
    subscribed(&mut a, json!(["x.#", "*.y", "z"]), None).await;
    let mut b = connect(&hub, 64);
    b.json().await;
    // Patterns already served cost nothing; a new one is refused.
    subscribed(&mut b, json!(["x.#", "z"]), None).await;
    b.send(json!({"op":"subscribe","topics":["w.#"]})).await;
    let v = b.json().await;
    assert_eq!(v["code"], "rate_limited", "{v}");
    b.send(json!({"op":"subscribe","topics":["w.#"],"since":"b1:7:0"}))
        .await;
    assert_eq!(b.json().await["code"], "rate_limited");
    // Dispatch through the prefix index: each pattern kind still matches.
    for (s, topic) in [(1, "x"), (2, "x.q.r"), (3, "q.y"), (4, "z"), (5, "zz")] {
        feed.send(FabricItem::Message(msg(s, topic))).await.unwrap();
    }
    for s in 1..=4 {
        assert_eq!(a.json().await["pos"], format!("b1:7:{s}"));
    }
    for s in [1, 2, 4] {
        assert_eq!(b.json().await["pos"], format!("b1:7:{s}"));
    }
}

#[tokio::test]
async fn wildcard_led_patterns_per_hub_are_capped() {
    let (hub, _fabric, _feed) = setup(HubOptions::new("w1").max_wildcard_led_patterns(2));
    let mut a = connect(&hub, 64);
    a.json().await;
    subscribed(&mut a, json!(["*.y", "#.z", "lit.#"]), None).await;
    // A third wildcard-led pattern is refused, with nothing of the request added.
    a.send(json!({"op":"subscribe","topics":["x.*", "#"]}))
        .await;
    let v = a.json().await;
    assert_eq!(v["code"], "rate_limited", "{v}");
    assert!(v["message"].as_str().unwrap().contains("wildcard"), "{v}");
    assert_eq!(hub.metrics().patterns_refused_wildcard.get(), 1);
    // Literal-led and already-served ones still pass.
    subscribed(&mut a, json!(["x.*", "*.y"]), None).await;
    a.send(json!({"op":"unsubscribe","topics":["#.z"]})).await;
    assert_eq!(a.json().await["op"], "unsubscribed");
    subscribed(&mut a, json!(["#"]), None).await;
}
