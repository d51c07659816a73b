//! Hub logic driven through channels: an in-memory fabric, connections as
//! `Sink`/`Stream` pairs. The real-process tests live in `tests/tests/hub_*.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Message;
use bytes::Bytes;
use fanfare_protocol::pattern::Pattern;
use futures::channel::mpsc as fmpsc;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::*;

#[derive(Default)]
struct MemoryFabric {
    feed: Mutex<Option<mpsc::Receiver<FabricItem>>>,
    history: Mutex<Vec<FabricMessage>>,
    oldest: Mutex<u64>,
    published: Mutex<Vec<(String, Bytes)>>,
}

impl Fabric for MemoryFabric {
    fn publish(&self, topic: String, payload: Bytes) -> BoxFuture<'_, Result<(), PublishFailure>> {
        self.published.lock().unwrap().push((topic, payload));
        async { Ok(()) }.boxed()
    }
    fn replay(&self, r: ReplayRange) -> BoxFuture<'_, Result<ReplayChunk, ReplayFailure>> {
        let h = self.history.lock().unwrap();
        let oldest = *self.oldest.lock().unwrap();
        let newest = h.last().map(|m| m.seq).unwrap_or(0);
        let messages = h
            .iter()
            .filter(|m| m.seq >= r.from.max(oldest) && m.seq <= r.to && m.epoch == r.epoch)
            .filter(|m| r.patterns.iter().any(|p| p.matches(&m.topic)))
            .cloned()
            .collect();
        let chunk = ReplayChunk {
            oldest,
            newest,
            next: newest + 1,
            messages,
        };
        async move { Ok(chunk) }.boxed()
    }
    fn feed(
        &self,
        _p: Pattern,
    ) -> BoxFuture<'_, Result<BoxStream<'static, FabricItem>, FeedFailure>> {
        let rx = self.feed.lock().unwrap().take();
        async move {
            match rx {
                Some(rx) => Ok(tokio_stream_from(rx)),
                None => Err(FeedFailure("taken".into())),
            }
        }
        .boxed()
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<FabricItem>) -> BoxStream<'static, FabricItem> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn msg(seq: u64, topic: &str) -> FabricMessage {
    FabricMessage {
        topic: topic.into(),
        payload: Bytes::from(format!("{{\"n\":{seq}}}")),
        origin: "b1".into(),
        epoch: 7,
        seq,
        timestamp_us: 1,
        publisher: Some("w0".into()),
    }
}

struct Browser {
    to_hub: fmpsc::Sender<Result<Message, std::convert::Infallible>>,
    from_hub: fmpsc::Receiver<Message>,
}

impl Browser {
    async fn send(&mut self, v: Value) {
        self.to_hub
            .send(Ok(Message::Text(v.to_string().into())))
            .await
            .unwrap();
    }
    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.from_hub.next())
            .await
            .expect("timeout")
            .expect("closed")
    }
    async fn json(&mut self) -> Value {
        loop {
            match self.next().await {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn setup(opts: HubOptions) -> (Hub, Arc<MemoryFabric>, mpsc::Sender<FabricItem>) {
    let (tx, rx) = mpsc::channel(1024);
    let fabric = Arc::new(MemoryFabric {
        feed: Mutex::new(Some(rx)),
        ..Default::default()
    });
    (Hub::with_fabric(fabric.clone(), opts), fabric, tx)
}

fn connect(hub: &Hub, sink_capacity: usize) -> Browser {
    let (to_hub, hub_rx) = fmpsc::channel(16);
    let (hub_tx, from_hub) = fmpsc::channel(sink_capacity);
    let hub = hub.clone();
    tokio::spawn(async move {
        hub.serve_socket(Identity::anyone("t"), hub_tx, hub_rx)
            .await
    });
    Browser { to_hub, from_hub }
}

async fn subscribed(b: &mut Browser, topics: Value, since: Option<&str>) -> Value {
    let mut req = json!({"op":"subscribe","topics":topics});
    if let Some(s) = since {
        req["since"] = json!(s);
    }
    b.send(req).await;
    let v = b.json().await;
    assert_eq!(v["op"], "subscribed", "{v}");
    v
}

#[tokio::test]
async fn events_reach_every_matching_connection_in_order() {
    let (hub, fabric, feed) = setup(HubOptions::new("w1"));
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
    assert_eq!(hub.metrics().deliveries.load(Relaxed), 6);
}

#[tokio::test]
async fn bad_input_gets_its_error_code_and_the_connection_stays() {
    let (hub, _fabric, _feed) = setup(
        HubOptions::new("w1")
            .publish_rate(0.0, 1)
            .max_frame(100, 1000),
    );
    let mut a = connect(&hub, 64);
    a.json().await;
    let cases = [
        (json!("not an object"), "bad_json"),
        (json!({"op":"dance"}), "unknown_op"),
        (json!({"op":"subscribe","topics":["a..b"]}), "bad_topic"),
        (
            json!({"op":"subscribe","topics":["_fanfare.hb.#"]}),
            "forbidden",
        ),
        (
            json!({"op":"subscribe","topics":["a"],"since":"garbage"}),
            "bad_since",
        ),
        (json!({"op":"publish","topic":"a b","data":1}), "bad_topic"),
        (
            json!({"op":"publish","topic":"_fanfare.x","data":1}),
            "forbidden",
        ),
        (json!({"op":"publish","topic":"a","data":1}), ""),
        (json!({"op":"publish","topic":"a","data":2}), "rate_limited"),
        (
            json!({"op":"publish","topic":"a","data":"x".repeat(200)}),
            "too_large",
        ),
    ];
    for (req, code) in cases {
        a.send(req.clone()).await;
        if code.is_empty() {
            continue;
        }
        let v = a.json().await;
        assert_eq!(
            (v["op"].as_str(), v["code"].as_str()),
            (Some("error"), Some(code)),
            "{req}"
        );
    }
    a.to_hub
        .send(Ok(Message::Binary(Bytes::from_static(b"\x00"))))
        .await
        .unwrap();
    assert_eq!(a.json().await["code"], "bad_json");
    a.send(json!({"op":"ping"})).await;
    assert_eq!(a.json().await["op"], "pong");
    assert_eq!(hub.metrics().errors(protocol::ErrorCode::RateLimited), 1);
}

#[tokio::test]
async fn abuse_closes_with_1008() {
    let (hub, _f, _feed) = setup(HubOptions::new("w1").error_rate(0.0, 3));
    let mut a = connect(&hub, 64);
    a.json().await;
    for _ in 0..4 {
        a.send(json!({"op":"x"})).await;
    }
    for _ in 0..4 {
        assert_eq!(a.json().await["code"], "unknown_op");
    }
    match a.next().await {
        Message::Close(Some(c)) => assert_eq!(c.code, 1008),
        other => panic!("{other:?}"),
    }
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
    let v = subscribed(&mut c, json!(["#"]), Some("b1:7:4")).await;
    assert_eq!(
        (v["recovered"].as_bool(), v["replayed"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(c.json().await["pos"], "b1:7:5");
    assert_eq!(c.json().await["pos"], "b1:7:6");
    // From 1 with a filter: history for 2..=3, ring for 4..=6.
    let mut d = connect(&hub, 64);
    d.json().await;
    let v = subscribed(&mut d, json!(["a.*"]), Some("b1:7:1")).await;
    assert_eq!(v["replayed"], 3);
    for s in [2, 4, 6] {
        assert_eq!(d.json().await["pos"], format!("b1:7:{s}"));
    }
    feed.send(FabricItem::Message(msg(7, "a.y"))).await.unwrap();
    assert_eq!(d.json().await["pos"], "b1:7:7");
    // History lost 1..=2: recovered false and a gap first.
    *fabric.oldest.lock().unwrap() = 3;
    let mut e = connect(&hub, 64);
    e.json().await;
    let v = subscribed(&mut e, json!(["#"]), Some("b1:7:0")).await;
    assert_eq!(v["recovered"], false);
    let g = e.json().await;
    assert_eq!(
        (g["op"].as_str(), g["first"].as_u64(), g["last"].as_u64()),
        (Some("gap"), Some(1), Some(2))
    );
    assert_eq!(e.json().await["pos"], "b1:7:3");
}

struct TokenAuth;

impl Authorizer for TokenAuth {
    fn authorize(&self, r: &AuthRequest<'_>) -> Result<Identity, Denied> {
        match r.token {
            Some("alice") => Ok(Identity {
                name: "alice".into(),
                subscribe: vec![Pattern::parse("public.#").unwrap()],
                publish: vec![Pattern::parse("public.*").unwrap()],
            }),
            _ => Err(Denied("unknown token".into())),
        }
    }
}

fn connect_pending(hub: &Hub) -> Browser {
    let (to_hub, hub_rx) = fmpsc::channel(16);
    let (hub_tx, from_hub) = fmpsc::channel(64);
    let inner = hub.inner.clone();
    let access = connection::Access::Pending(axum::http::HeaderMap::new());
    tokio::spawn(async move { connection::serve(inner, access, hub_tx, hub_rx).await });
    Browser { to_hub, from_hub }
}

#[tokio::test]
async fn a_token_in_the_first_frame_grants_only_its_patterns() {
    let (hub, _f, _feed) = setup(
        HubOptions::new("w1")
            .authorizer(TokenAuth)
            .auth_in_first_frame(true),
    );
    let mut a = connect_pending(&hub);
    assert_eq!(a.json().await["op"], "welcome");
    a.send(json!({"op":"subscribe","topics":["public.#"]}))
        .await;
    assert_eq!(a.json().await["code"], "forbidden", "nothing before auth");
    a.send(json!({"op":"auth","token":"alice"})).await;
    assert_eq!(
        a.json().await,
        json!({"op":"authorized","identity":"alice"})
    );
    subscribed(&mut a, json!(["public.news"]), None).await;
    a.send(json!({"op":"subscribe","topics":["private.#"]}))
        .await;
    assert_eq!(a.json().await["code"], "forbidden");
    a.send(json!({"op":"publish","topic":"private.x","data":1}))
        .await;
    assert_eq!(a.json().await["code"], "forbidden");
    // A bad token: an error, then close 4003.
    let mut b = connect_pending(&hub);
    b.json().await;
    b.send(json!({"op":"auth","token":"mallory"})).await;
    assert_eq!(b.json().await["code"], "forbidden");
    match b.next().await {
        Message::Close(Some(c)) => assert_eq!(c.code, 4003),
        other => panic!("{other:?}"),
    }
    assert_eq!(hub.metrics().refused_auth.load(Relaxed), 1);
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
