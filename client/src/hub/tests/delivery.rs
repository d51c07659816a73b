//! Fan-out, slow consumers, keepalive, unsubscribe.

use super::*;

#[tokio::test]
async fn events_reach_every_matching_connection_in_order() {
    let (hub, fabric, feed) = setup(HubOptions::new("w1").trusted_publishers(vec!["w0".into()]));
    let mut a = connect(&hub, 64);
    let mut b = connect(&hub, 64);
    assert_eq!(a.json().await["op"], "welcome");
    assert_eq!(b.json().await["worker"], "w1");
    subscribed(&mut a, json!(["chat.#"]), None).await;
    subscribed(&mut b, json!(["chat.*", "other"]), None).await;
    for s in 1..=3 {
        feed.send(FabricItem::Message(msg(s, "chat.lobby")))
            .await
            .unwrap();
    }
    feed.send(FabricItem::Message(msg(4, "news")))
        .await
        .unwrap();
    // Serialized once: both connections get the very same bytes.
    let (Message::Text(x), Message::Text(y)) = (a.next().await, b.next().await) else {
        panic!("text frames expected");
    };
    assert_eq!(
        x.as_str().as_ptr(),
        y.as_str().as_ptr(),
        "one buffer, shared"
    );
    for s in 2..=3u64 {
        let (x, y) = (a.json().await, b.json().await);
        assert_eq!(x, y);
        assert_eq!(x["data"]["n"], s);
        assert_eq!(x["pos"], format!("b1:7:{s}"));
        assert_eq!(x["from"], "w0");
    }
    a.send(json!({"op":"publish","topic":"chat.x","data":{"hi":1}}))
        .await;
    a.send(json!({"op":"ping","ref":"p"})).await;
    assert_eq!(a.json().await, json!({"op":"pong","ref":"p"}));
    assert_eq!(
        fabric.published.lock().unwrap()[0],
        ("chat.x".into(), Bytes::from(r#"{"hi":1}"#))
    );
    assert_eq!(hub.metrics().deliveries.get(), 6);
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4008_and_the_others_keep_pace() {
    let (hub, _f, feed) = setup(HubOptions::new("w1").queue_capacity(8));
    let mut fast = connect(&hub, 4);
    let mut slow = connect(&hub, 1);
    fast.json().await;
    slow.json().await;
    subscribed(&mut fast, json!(["#"]), None).await;
    subscribed(&mut slow, json!(["#"]), None).await;
    for s in 1..=100 {
        feed.send(FabricItem::Message(msg(s, "t"))).await.unwrap();
        assert_eq!(fast.json().await["data"]["n"], s);
    }
    // The slow one never read: after its frames, the close frame.
    let mut code = None;
    for _ in 0..200 {
        if let Message::Close(Some(c)) = slow.next().await {
            code = Some(c.code);
            break;
        }
    }
    assert_eq!(code, Some(4008));
    assert_eq!(hub.metrics().closes(CloseCause::SlowConsumer), 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_pinged_then_closed_with_4002() {
    let opts = HubOptions::new("w1").keepalive(Duration::from_secs(1), Duration::from_secs(3));
    let (hub, _f, _feed) = setup(opts);
    let mut a = connect(&hub, 64);
    a.json().await;
    let mut pings = 0;
    let code = loop {
        match a.next().await {
            Message::Ping(_) => pings += 1,
            Message::Close(Some(c)) => break c.code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 4002);
    assert!(pings >= 2, "pinged {pings} times first");
    assert_eq!(hub.metrics().closes(CloseCause::Idle), 1);
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let (hub, _f, feed) = setup(HubOptions::new("w1"));
    let mut a = connect(&hub, 64);
    a.json().await;
    subscribed(&mut a, json!(["x.#", "y.#"]), None).await;
    a.send(json!({"op":"unsubscribe","topics":["x.#"]})).await;
    assert_eq!(
        a.json().await,
        json!({"op":"unsubscribed","topics":["x.#"]})
    );
    feed.send(FabricItem::Message(msg(1, "x.a"))).await.unwrap();
    feed.send(FabricItem::Message(msg(2, "y.a"))).await.unwrap();
    assert_eq!(a.json().await["topic"], "y.a");
}
