//! What the hub tests share: the real demo started on port 0 (waiting for
//! its `ready http://…` line) and websocket clients with timeouts.

#![allow(dead_code)] // each test binary uses a part

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every receive in these tests waits at most this long.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(15);

/// The demo binary, built once per test process (so it is never stale).
pub fn demo_bin() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Ok(p) = std::env::var("FANFARE_DEMO_BIN") {
                return Ok(PathBuf::from(p));
            }
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut args = vec!["build", "--quiet", "-p", "fanfare-demo-web"];
            if !cfg!(debug_assertions) {
                args.push("--release"); // benchmarks
            }
            let status = std::process::Command::new(cargo)
                .args(&args)
                .current_dir(&root)
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !status.success() {
                return Err("cargo build -p fanfare-demo-web failed".into());
            }
            // target/<profile>/deps/<test exe> → target/<profile>/fanfare-demo-web
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe
                .parent()
                .and_then(|d| d.parent())
                .ok_or("no target dir")?;
            Ok(dir.join("fanfare-demo-web"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A running demo: supervisor, embedded broadcaster, workers. Killed on drop
/// (the workers stop when the supervisor's pipes close).
pub struct Demo {
    /// The supervisor.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The shared port.
    pub port: u16,
}

impl Demo {
    /// Starts `fanfare-demo-web --port 0 ARGS…` and waits for its ready line.
    pub async fn start(args: &[&str]) -> Result<Demo> {
        let mut child = Command::new(demo_bin()?)
            .args(["--port", "0"])
            .args(if args.contains(&"--threads") {
                &[][..]
            } else {
                &["--threads", "1"][..]
            })
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting fanfare-demo-web")?;
        let out = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(out).lines();
        let base = tokio::time::timeout(Duration::from_secs(90), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("ready ") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("demo exited before it was ready")
        })
        .await
        .context("demo not ready within 90 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("port")?;
        Ok(Demo { child, base, port })
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Connects until the kernel hands the connection to `pick(worker)`.
    pub async fn connect_where(&self, pick: impl Fn(&str) -> bool) -> Result<Ws> {
        for _ in 0..300 {
            let ws = Ws::connect(&self.ws_url()).await?;
            if pick(&ws.worker) {
                return Ok(ws);
            }
        }
        bail!("no connection landed on the wanted worker in 300 tries")
    }

    /// One client on each of `n` distinct workers.
    pub async fn one_per_worker(&self, n: usize) -> Result<Vec<Ws>> {
        let mut out: Vec<Ws> = Vec::new();
        for _ in 0..300 {
            if out.len() == n {
                return Ok(out);
            }
            let ws = Ws::connect(&self.ws_url()).await?;
            if !out.iter().any(|o| o.worker == ws.worker) {
                out.push(ws);
            }
        }
        bail!("could not reach {n} distinct workers")
    }
}

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

    /// Publishes JSON.
    pub async fn publish(&mut self, topic: &str, data: Value) -> Result<()> {
        self.send(&serde_json::json!({"op": "publish", "topic": topic, "data": data}))
            .await
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

impl Demo {
    /// `GET path` on whichever worker the kernel picks: (worker id, body).
    pub async fn get(&self, path: &str) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut body = String::new();
        tokio::time::timeout(RECV_TIMEOUT, s.read_to_string(&mut body)).await??;
        Ok(body)
    }

    /// The Prometheus text of worker `worker` (retries until the kernel picks it).
    pub async fn metrics_of(&self, worker: &str) -> Result<String> {
        let label = format!("worker=\"{worker}\"");
        for _ in 0..300 {
            let body = self.get("/metrics").await?;
            if body.contains(&label) {
                return Ok(body);
            }
        }
        bail!("never reached worker {worker} for /metrics")
    }
}

/// The value of a Prometheus sample line starting with `prefix`.
pub fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
