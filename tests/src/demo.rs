//! The real demo (`fanfare-demo-web`: supervisor, embedded or child
//! broadcasters, hub workers) as a child process on port 0, waited for by
//! its `ready http://…` line; its stdout (the child broadcasters' pids);
//! HTTP GETs and Prometheus samples from its workers.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::binary::demo_binary;
use crate::websocket::{Ws, RECV_TIMEOUT};

/// How long the demo may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running demo: supervisor, embedded broadcaster, workers. Killed on drop
/// (the workers stop when the supervisor's pipes close).
pub struct Demo {
    /// The supervisor.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The shared port.
    pub port: u16,
    /// Its stdout lines so far (at most [`MAX_LINES`]).
    lines: Arc<Mutex<Vec<String>>>,
}

/// Most stdout lines of the demo kept for [`Demo::output`].
pub const MAX_LINES: usize = 10_000;

/// One `broadcaster id=… pid=… … admin=…` line of a demo started with
/// `--broadcasters N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildBroadcaster {
    /// Its origin id (`b1` …).
    pub id: String,
    /// Its pid.
    pub pid: u32,
    /// Admin `host:port`.
    pub admin: String,
}

impl Demo {
    /// Starts `fanfare-demo-web --port 0 ARGS…` (with `--threads 1` unless
    /// `ARGS` set it) and waits for its ready line.
    pub async fn start(args: &[&str]) -> Result<Demo> {
        let mut child = Command::new(demo_binary()?)
            .args(["--port", "0"])
            .args(if args.contains(&"--threads") {
                &[][..]
            } else {
                &["--threads", "1"][..]
            })
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("FANFARE_DEMO_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting fanfare-demo-web")?;
        let out = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(out).lines();
        let kept = Arc::new(Mutex::new(Vec::new()));
        let keep = {
            let kept = kept.clone();
            move |line: &str| {
                if let Ok(mut k) = kept.lock() {
                    if k.len() < MAX_LINES {
                        k.push(line.to_owned());
                    }
                }
            }
        };
        let base = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                keep(&line);
                if let Some(url) = line.strip_prefix("ready ") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("demo exited before it was ready")
        })
        .await
        .context("demo not ready within 90 s")??;
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep(&line);
            }
        });
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("port")?;
        Ok(Demo {
            child,
            base,
            port,
            lines: kept,
        })
    }

    /// Its stdout lines so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The child broadcasters as last (re)started, by id (`--broadcasters N`).
    pub fn broadcasters(&self) -> std::collections::BTreeMap<String, ChildBroadcaster> {
        let mut out = std::collections::BTreeMap::new();
        for line in self.output() {
            let Some(rest) = line.strip_prefix("broadcaster ") else {
                continue;
            };
            let field = |k: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(k))
                    .map(str::to_owned)
            };
            let (Some(id), Some(pid), Some(admin)) = (field("id="), field("pid="), field("admin="))
            else {
                continue;
            };
            let Ok(pid) = pid.parse() else { continue };
            let admin = admin.trim_start_matches("http://").to_owned();
            out.insert(id.clone(), ChildBroadcaster { id, pid, admin });
        }
        out
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

    /// `GET path` on whichever worker the kernel picks: the whole response.
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
