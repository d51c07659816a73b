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

mod delivery;
mod input;
mod resume;

#[derive(Default)]
pub(super) struct MemoryFabric {
    pub(super) feed: Mutex<Option<mpsc::Receiver<FabricItem>>>,
    pub(super) history: Mutex<Vec<FabricMessage>>,
    pub(super) oldest: Mutex<u64>,
    pub(super) published: Mutex<Vec<(String, Bytes)>>,
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
                None => Err(FeedFailure::Closed),
            }
        }
        .boxed()
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<FabricItem>) -> BoxStream<'static, FabricItem> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

pub(super) fn msg(seq: u64, topic: &str) -> FabricMessage {
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

pub(super) struct Browser {
    pub(super) to_hub: fmpsc::Sender<Result<Message, std::convert::Infallible>>,
    pub(super) from_hub: fmpsc::Receiver<Message>,
}

impl Browser {
    pub(super) async fn send(&mut self, v: Value) {
        self.to_hub
            .send(Ok(Message::Text(v.to_string().into())))
            .await
            .unwrap();
    }
    pub(super) async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.from_hub.next())
            .await
            .expect("timeout")
            .expect("closed")
    }
    pub(super) async fn json(&mut self) -> Value {
        loop {
            match self.next().await {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

pub(super) fn setup(opts: HubOptions) -> (Hub, Arc<MemoryFabric>, mpsc::Sender<FabricItem>) {
    let (tx, rx) = mpsc::channel(1024);
    let fabric = Arc::new(MemoryFabric {
        feed: Mutex::new(Some(rx)),
        ..Default::default()
    });
    (Hub::with_fabric(fabric.clone(), opts), fabric, tx)
}

pub(super) fn connect(hub: &Hub, sink_capacity: usize) -> Browser {
    let (to_hub, hub_rx) = fmpsc::channel(16);
    let (hub_tx, from_hub) = fmpsc::channel(sink_capacity);
    let hub = hub.clone();
    tokio::spawn(async move {
        hub.serve_socket(Identity::anyone("t"), hub_tx, hub_rx)
            .await
    });
    Browser { to_hub, from_hub }
}

pub(super) async fn subscribed(b: &mut Browser, topics: Value, since: Option<&str>) -> Value {
    let mut req = json!({"op":"subscribe","topics":topics});
    if let Some(s) = since {
        req["since"] = json!(s);
    }
    b.send(req).await;
    let v = b.json().await;
    assert_eq!(v["op"], "subscribed", "{v}");
    v
}

/// A `subscribe` with `since`: checks `subscribed` (`resuming`), returns the
/// replay part (event and gap frames) and the `resumed` frame that ends it.
pub(super) async fn resumed(b: &mut Browser, topics: Value, since: &str) -> (Vec<Value>, Value) {
    let v = subscribed(b, topics, Some(since)).await;
    assert_eq!(v["resuming"], true, "{v}");
    let mut part = Vec::new();
    loop {
        let v = b.json().await;
        if v["op"] == "resumed" {
            return (part, v);
        }
        assert!(part.len() < 100_000, "no resumed");
        part.push(v);
    }
}
