//! The websocket load generator: C connections speaking Fanfare's browser
//! protocol, Socket.IO 4 (engine.io v4 over a websocket) or the floor's bare
//! frames; per connection it counts deliveries, sequence gaps and duplicates
//! and a latency histogram (publisher wall clock in the event → receipt) for
//! the run in progress.
//!
//! Every event carries `"bench_r":R,"bench_i":I,"bench_t":T` (run, sequence
//! of one publisher within that run, publisher time in µs since the epoch).
//! Run 0 is the warm-up: it only marks a connection as reached.
//!
//! Rooms mode (`Load::connect_rooms`): connection k joins room `k % rooms`
//! only (Fanfare `subscribe` to `room.N`, Socket.IO `join` with an ack, the
//! floor's `?room=N`), events carry `"bench_room"` and a per-room sequence;
//! an event of another room is counted as stray. Connections are paced,
//! bound to spread loopback sources and use small websocket buffers.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::hist::Hist;

/// Every connect step waits at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How a connection talks to its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Fanfare hub: `/ws`, `welcome`, `subscribe` → `subscribed`, `event` frames.
    Fanfare,
    /// Socket.IO 4: `/socket.io/?EIO=4&transport=websocket`, `0{…}`, `40` →
    /// `40{sid}`, `42["event",…]`, ping `2` answered `3`.
    SocketIo,
    /// The floor: any path, events as bare text frames.
    Floor,
}

/// What one connection saw of the current run.
#[derive(Default)]
pub struct RunStats {
    /// The run these counts belong to.
    pub run: u64,
    /// Distinct events received (sequence moved forward).
    pub received: u64,
    /// Events skipped (sequence jumped forward by more than one).
    pub gaps: u64,
    /// Events at or below a sequence already seen.
    pub dups: u64,
    /// Events of another room (rooms mode).
    pub stray: u64,
    next_i: u64,
    /// Every latency of the run.
    pub all: Hist,
    /// Latencies of the first and the last third of the run (by sequence).
    pub early: Hist,
    /// See `early`.
    pub late: Hist,
}

/// The shared state of one connection.
#[derive(Default)]
pub struct Conn {
    /// Counts of the current run (the connection task holds the lock per event).
    pub stats: Mutex<RunStats>,
    /// Whether a warm-up event (run 0) arrived.
    pub warm: std::sync::atomic::AtomicBool,
    /// Whether the connection ended.
    pub closed: std::sync::atomic::AtomicBool,
    /// Events of the current run (lock-free progress counter for the harness).
    pub progress: AtomicU64,
    /// Its room (rooms mode).
    pub room: Option<u64>,
    /// The worker that serves it (Fanfare's `welcome`).
    pub worker: OnceLock<String>,
}

/// The run the harness is measuring and its planned length (for the thirds).
#[derive(Default)]
pub struct Plan {
    /// Run id.
    pub run: AtomicU64,
    /// Events the publisher will send in it.
    pub count: AtomicU64,
}

/// C connections to one side.
pub struct Load {
    /// Per connection state, in connect order.
    pub conns: Vec<Arc<Conn>>,
    plan: Arc<Plan>,
    tasks: JoinSet<()>,
}

fn number(frame: &str, key: &str) -> Option<u64> {
    let at = frame.find(key)? + key.len();
    let rest = frame.get(at..)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

fn now_us() -> u64 {
    fanfare_protocol::stamp::now_us()
}

impl Conn {
    fn event(&self, plan: &Plan, frame: &str) {
        let (Some(r), Some(i), Some(t)) = (
            number(frame, "\"bench_r\":"),
            number(frame, "\"bench_i\":"),
            number(frame, "\"bench_t\":"),
        ) else {
            return;
        };
        let latency = now_us().saturating_sub(t);
        let stray = self
            .room
            .is_some_and(|room| number(frame, "\"bench_room\":") != Some(room));
        if r == 0 {
            if stray {
                return;
            }
            self.warm.store(true, Relaxed);
            return;
        }
        let Ok(mut s) = self.stats.lock() else { return };
        if s.run != r {
            if r < s.run {
                return; // a straggler of an earlier run
            }
            *s = RunStats {
                run: r,
                ..RunStats::default()
            };
        }
        if stray {
            s.stray += 1;
            return;
        }
        if i < s.next_i {
            s.dups += 1;
            return;
        }
        s.gaps += i - s.next_i;
        s.next_i = i + 1;
        s.received += 1;
        s.all.record(latency);
        let count = plan.count.load(Relaxed);
        if i < count / 3 {
            s.early.record(latency);
        } else if i >= count - count / 3 {
            s.late.record(latency);
        }
        drop(s);
        self.progress.store(i + 1, Relaxed);
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Websocket buffers of the rooms mode: tungstenite's default read buffer
/// (128 KiB per connection) does not fit 30k connections.
fn small_buffers() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens `url` from a connection bound to `source` (port chosen by the kernel).
async fn open_from(url: &str, source: Ipv4Addr) -> Result<WsStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = url.into_client_request()?;
    let host = req.uri().host().context("no host in the url")?;
    let port = req.uri().port_u16().context("no port in the url")?;
    let addr: SocketAddr = format!("{host}:{port}").parse().context("server address")?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    // The previous side's connections leave their ports in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .context("tcp connect timed out")??;
    tcp.set_nodelay(true)?;
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(req, stream, Some(small_buffers())),
    )
    .await
    .context("websocket upgrade timed out")??;
    Ok(ws)
}

async fn open(url: &str) -> Result<WsStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = url.into_client_request()?;
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(req, None, true),
    )
    .await
    .context("websocket connect timed out")??;
    Ok(ws)
}

async fn next_text(ws: &mut WsStream) -> Result<String> {
    super::ws::next_text(ws, CONNECT_TIMEOUT).await
}

/// The string value of `"key":"…"` in a frame.
fn text_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let at = frame.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = frame.get(at..)?;
    rest.get(..rest.find('"')?)
}

/// Where connection `k` connects: its url and, in rooms mode, its room and
/// source address.
struct Target<'a> {
    url: &'a str,
    room: Option<u64>,
    source: Option<Ipv4Addr>,
}

/// Opens one connection and completes the protocol's greeting (and its
/// room's subscribe or join); returns it with the Fanfare worker's id.
async fn connect(protocol: Protocol, t: Target<'_>) -> Result<(WsStream, Option<String>)> {
    let mut ws = match t.source {
        Some(source) => open_from(t.url, source).await?,
        None => open(t.url).await?,
    };
    let mut worker = None;
    match protocol {
        Protocol::Fanfare => {
            let welcome = next_text(&mut ws).await?;
            anyhow::ensure!(
                welcome.contains("\"welcome\""),
                "expected welcome, got {welcome}"
            );
            worker = text_field(&welcome, "worker").map(str::to_owned);
            let subscribe = match t.room {
                Some(room) => format!(r#"{{"op":"subscribe","topics":["room.{room}"]}}"#),
                None => r#"{"op":"subscribe","topics":["bench.#"]}"#.to_owned(),
            };
            ws.send(Message::text(subscribe)).await?;
            loop {
                let f = next_text(&mut ws).await?;
                if f.contains("\"subscribed\"") {
                    break;
                }
                anyhow::ensure!(!f.contains("\"error\""), "subscribe refused: {f}");
            }
        }
        Protocol::SocketIo => {
            let open = next_text(&mut ws).await?;
            anyhow::ensure!(
                open.starts_with("0{"),
                "expected engine.io open, got {open}"
            );
            ws.send(Message::text("40")).await?;
            loop {
                let f = next_text(&mut ws).await?;
                if f.starts_with("40") {
                    break;
                }
                if f == "2" {
                    ws.send(Message::text("3")).await?;
                    continue;
                }
                anyhow::ensure!(!f.starts_with("44"), "socket.io connect refused: {f}");
            }
            if let Some(room) = t.room {
                // emit("join", "room.N", ack) → the ack packet `430[…]`.
                ws.send(Message::text(format!(r#"420["join","room.{room}"]"#)))
                    .await?;
                loop {
                    let f = next_text(&mut ws).await?;
                    if f.starts_with("430") {
                        break;
                    }
                    if f == "2" {
                        ws.send(Message::text("3")).await?;
                    }
                }
            }
        }
        Protocol::Floor => {}
    }
    Ok((ws, worker))
}

async fn serve(protocol: Protocol, mut ws: WsStream, conn: Arc<Conn>, plan: Arc<Plan>) {
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Text(t) => {
                if protocol == Protocol::SocketIo && t.as_str() == "2" {
                    if ws.send(Message::text("3")).await.is_err() {
                        break;
                    }
                    continue;
                }
                conn.event(&plan, t.as_str());
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    conn.closed.store(true, Relaxed);
}

impl Load {
    /// Opens `urls.len()` connections (in order, at most `parallel` at once)
    /// on the current runtime; fails if any cannot connect.
    pub async fn connect(protocol: Protocol, urls: &[String], parallel: usize) -> Result<Load> {
        Self::connect_with(protocol, urls, parallel, None, f64::INFINITY).await
    }

    /// Like `connect`, in rooms mode: connection k in room `k % rooms`,
    /// bound to a loopback source of its own, at most `per_second` opened
    /// per second.
    pub async fn connect_rooms(
        protocol: Protocol,
        urls: &[String],
        rooms: u64,
        parallel: usize,
        per_second: f64,
    ) -> Result<Load> {
        Self::connect_with(protocol, urls, parallel, Some(rooms), per_second).await
    }

    async fn connect_with(
        protocol: Protocol,
        urls: &[String],
        parallel: usize,
        rooms: Option<u64>,
        per_second: f64,
    ) -> Result<Load> {
        let plan = Arc::new(Plan::default());
        let conns: Vec<Arc<Conn>> = (0..urls.len())
            .map(|k| {
                Arc::new(Conn {
                    room: rooms.map(|r| super::rooms::room_of(k, r)),
                    ..Conn::default()
                })
            })
            .collect();
        let began = Instant::now();
        let mut tasks = JoinSet::new();
        let mut opening = JoinSet::new();
        let mut started = 0;
        let mut opened = 0;
        while opened < urls.len() {
            while started < urls.len() && opening.len() < parallel.max(1) {
                // Paced: connection k not before k / per_second.
                let due = Duration::from_secs_f64(started as f64 / per_second);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    if !opening.is_empty() {
                        break; // collect finished ones meanwhile
                    }
                    tokio::time::sleep(wait).await;
                }
                let url = urls[started].clone();
                let k = started;
                let room = conns[k].room;
                let source = rooms.map(|_| super::rooms::source(k));
                opening.spawn(async move {
                    let t = Target {
                        url: &url,
                        room,
                        source,
                    };
                    (k, connect(protocol, t).await)
                });
                started += 1;
            }
            let Some(done) = opening.join_next().await else {
                break;
            };
            let (k, ws) = done.context("connect task")?;
            let (ws, worker) = ws.with_context(|| format!("connection {k} to {}", urls[k]))?;
            if let Some(w) = worker {
                let _ = conns[k].worker.set(w);
            }
            tasks.spawn(serve(protocol, ws, conns[k].clone(), plan.clone()));
            opened += 1;
        }
        Ok(Load { conns, plan, tasks })
    }

    /// Announces the run about to start (for the early/late thirds).
    pub fn plan(&self, run: u64, count: u64) {
        self.plan.count.store(count, Relaxed);
        self.plan.run.store(run, Relaxed);
        for c in &self.conns {
            c.progress.store(0, Relaxed);
        }
    }

    /// Connections that saw a warm-up event.
    pub fn warm(&self) -> usize {
        self.conns.iter().filter(|c| c.warm.load(Relaxed)).count()
    }

    /// Connections that ended.
    pub fn closed(&self) -> usize {
        self.conns.iter().filter(|c| c.closed.load(Relaxed)).count()
    }

    /// Sum over connections of the highest sequence + 1 seen in the run
    /// (a cheap progress measure while it drains).
    pub fn progress(&self) -> u64 {
        self.conns.iter().map(|c| c.progress.load(Relaxed)).sum()
    }

    /// Merged counts of run `run` over all connections.
    pub fn collect(&self, run: u64) -> RunStats {
        let mut total = RunStats {
            run,
            ..RunStats::default()
        };
        for c in &self.conns {
            let Ok(s) = c.stats.lock() else { continue };
            if s.run != run {
                continue;
            }
            total.received += s.received;
            total.gaps += s.gaps;
            total.dups += s.dups;
            total.stray += s.stray;
            total.all.merge(&s.all);
            total.early.merge(&s.early);
            total.late.merge(&s.late);
        }
        total
    }

    /// Closes every connection (aborts their tasks).
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
