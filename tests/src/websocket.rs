//! A websocket client speaking the hub's browser protocol (`welcome`,
//! `subscribe`/`subscribed`, `publish`, events), with a timeout on every
//! receive.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every websocket connect and receive (and the demo's HTTP GETs) waits at
/// most this long.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(15);

/// A websocket client speaking the browser protocol.
pub struct Ws {
    /// The socket.
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Worker id from `welcome`.
    pub worker: String,
    /// Connection id from `welcome`.
    pub conn: String,
}

impl Ws {
    /// Connects and reads `welcome`.
    pub async fn connect(url: &str) -> Result<Ws> {
        Self::connect_request(url.into_client_request()?).await
    }

    /// Connects with a prepared request (headers) and reads `welcome`.
    pub async fn connect_request(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Ws> {
        let (stream, _) = tokio::time::timeout(
            RECV_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(req, None, true),
        )
        .await
        .context("connect timed out")??;
        let mut ws = Ws {
            stream,
            worker: String::new(),
            conn: String::new(),
        };
        let w = ws.recv().await?;
        anyhow::ensure!(w["op"] == "welcome", "expected welcome, got {w}");
        ws.worker = w["worker"].as_str().unwrap_or_default().to_owned();
        ws.conn = w["conn"].as_str().unwrap_or_default().to_owned();
        Ok(ws)
    }

    /// Sends one JSON frame.
    pub async fn send(&mut self, v: &Value) -> Result<()> {
        self.stream.send(Message::text(v.to_string())).await?;
        Ok(())
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, s: String) -> Result<()> {
        self.stream.send(Message::text(s)).await?;
        Ok(())
    }

    /// The next text frame as JSON (pings and pongs skipped).
    pub async fn recv(&mut self) -> Result<Value> {
        loop {
            let m = tokio::time::timeout(RECV_TIMEOUT, self.stream.next())
                .await
                .context("receive timed out")?
                .context("connection ended")??;
            match m {
                Message::Text(t) => return Ok(serde_json::from_str(&t)?),
                Message::Close(c) => bail!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Subscribes and returns the `subscribed` answer.
    pub async fn subscribe(&mut self, topics: &[&str], since: Option<&str>) -> Result<Value> {
        let mut req = serde_json::json!({"op": "subscribe", "topics": topics});
        if let Some(s) = since {
            req["since"] = Value::from(s);
        }
        self.send(&req).await?;
        let v = self.recv().await?;
        anyhow::ensure!(v["op"] == "subscribed", "expected subscribed, got {v}");
        Ok(v)
    }

    /// Resumes: a `subscribe` with `since`, then reads its answer to the
    /// end. Returns the replay part (the `event` and `gap` frames between
    /// `subscribed` and `resumed`, at most `max`) and the `resumed` frame.
    pub async fn resume(
        &mut self,
        topics: &[&str],
        since: &str,
        max: usize,
    ) -> Result<(Vec<Value>, Value)> {
        let v = self.subscribe(topics, Some(since)).await?;
        anyhow::ensure!(v["resuming"] == true, "expected resuming, got {v}");
        let mut part = Vec::new();
        loop {
            let v = self.recv().await?;
            if v["op"] == "resumed" {
                return Ok((part, v));
            }
            anyhow::ensure!(part.len() < max, "more than {max} frames before resumed");
            part.push(v);
        }
    }

    /// Publishes JSON.
    pub async fn publish(&mut self, topic: &str, data: Value) -> Result<()> {
        self.send(&serde_json::json!({"op": "publish", "topic": topic, "data": data}))
            .await
    }

    /// Publishes `{"i": i}` on `topic` and waits (each receive under the
    /// usual timeout) until `receiver` gets that event back; returns the
    /// publish → event time. Other frames on `receiver` are skipped.
    pub async fn round_trip(
        &mut self,
        receiver: &mut Ws,
        topic: &str,
        i: u64,
    ) -> Result<std::time::Duration> {
        let t0 = std::time::Instant::now();
        self.publish(topic, serde_json::json!({ "i": i })).await?;
        loop {
            let v = receiver.recv().await?;
            if v["data"]["i"] == i {
                return Ok(t0.elapsed());
            }
        }
    }

    /// Reads until the close frame; returns its code (frames before it are skipped).
    pub async fn close_code(&mut self, within: Duration) -> Result<Option<CloseFrame>> {
        tokio::time::timeout(within, async {
            while let Some(m) = self.stream.next().await {
                match m {
                    Ok(Message::Close(c)) => return Ok(c),
                    Ok(_) => continue,
                    Err(e) => bail!("socket error before close: {e}"),
                }
            }
            bail!("ended without a close frame")
        })
        .await
        .context("no close frame in time")?
    }
}

/// `seq` of an event's `pos` (`origin:epoch:seq`).
pub fn seq_of(ev: &Value) -> u64 {
    ev["pos"]
        .as_str()
        .and_then(|p| p.rsplit(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
