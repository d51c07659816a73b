//! The floor (side C of the fanout bench): a websocket server that encodes
//! each event once — websocket header included — and writes the same bytes
//! to every connection, all the events due in a 1 ms tick in one write. One
//! writer thread by default (`FANFARE_FANOUT_FLOOR_THREADS` splits the
//! connections over more, each thread pacing the same events). It is its own
//! publisher: on `run R RATE COUNT` (stdin) it produces COUNT events paced at
//! RATE/s and answers `done run=R sent=N elapsed_us=E dropped_conns=D`; it
//! prints `ready port=P` at start.
//!
//! Per connection it keeps at most `MAX_PENDING` unwritten bytes; a
//! connection past that is dropped (the load generator counts its loss).
//!
//! Rooms mode (third argument ROOMS > 0): a connection opened on
//! `/?room=N` is in room N; event j goes to room `j % ROOMS` only, and is
//! written to that room's connections alone (one write per event and
//! connection: with many rooms a tick rarely holds two events of a room).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::event::{event_data, fanfare_frame, room_event_data, room_slot};

/// Unwritten bytes a connection may hold before it is dropped.
const MAX_PENDING: usize = 8 << 20;
/// Largest upgrade request read.
const MAX_REQUEST: usize = 8 << 10;
/// Handshakes waiting for a writer thread (full: the connection is dropped).
const ACCEPT_QUEUE: usize = 16_384;

/// A run for the writer threads: id, events/s, events.
type Run = (u64, f64, u64);
/// A connection handed to a writer thread, with its room (0 without rooms).
type Adopted = (std::net::TcpStream, u64);

struct Out {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Out {
    /// Writes what it can without waiting; false when the connection is gone
    /// or over its budget.
    fn push(&mut self, frame: &[u8]) -> bool {
        if self.pending.is_empty() {
            match self.stream.try_write(frame) {
                Ok(n) if n == frame.len() => return true,
                Ok(n) => self.pending.extend_from_slice(&frame[n..]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.pending.extend_from_slice(frame)
                }
                Err(_) => return false,
            }
            return true;
        }
        if self.pending.len() + frame.len() > MAX_PENDING {
            return false;
        }
        self.pending.extend_from_slice(frame);
        self.flush()
    }

    fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match self.stream.try_write(&self.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }
}

/// The `room=N` query parameter of the request line (0 when absent).
fn room_of_request(text: &str) -> u64 {
    let target = text.split_whitespace().nth(1).unwrap_or("");
    target
        .split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .find_map(|kv| kv.strip_prefix("room="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn handshake(mut s: TcpStream) -> Result<(TcpStream, u64)> {
    s.set_nodelay(true)?;
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        anyhow::ensure!(req.len() < MAX_REQUEST, "upgrade request too large");
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed during the upgrade");
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let room = room_of_request(&text);
    let key = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .context("no Sec-WebSocket-Key")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    s.write_all(resp.as_bytes()).await?;
    Ok((s, room))
}

/// One unmasked text frame holding `payload`.
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x81);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// The floor role's main (`FANFARE_BENCH_ROLE=floor`, args: pad bytes,
/// writer threads, rooms).
pub fn run(args: &[String]) -> Result<()> {
    let pad: usize = args.first().map_or(Ok(40), |a| a.parse())?;
    let threads: usize = args.get(1).map_or(Ok(1), |a| a.parse())?;
    let threads = threads.max(1);
    let rooms: u64 = args.get(2).map_or(Ok(0), |a| a.parse())?;
    anyhow::ensure!(
        rooms <= super::rooms::MAX_ROOMS,
        "floor: at most {} rooms",
        super::rooms::MAX_ROOMS
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let mut conn_txs = Vec::new();
    let mut run_txs = Vec::new();
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<(u128, u64)>(threads);
    for _ in 0..threads {
        let (conn_tx, conn_rx) = mpsc::channel::<Adopted>(ACCEPT_QUEUE);
        let (run_tx, run_rx) = mpsc::channel::<Run>(4);
        conn_txs.push(conn_tx);
        run_txs.push(run_tx);
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) if rooms > 0 => {
                        rt.block_on(room_writer(pad, rooms, conn_rx, run_rx, done))
                    }
                    Ok(rt) => rt.block_on(writer(pad, conn_rx, run_rx, done)),
                    Err(e) => eprintln!("floor: runtime: {e}"),
                }
            })?;
    }
    std::thread::Builder::new()
        .name("floor-accept".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(rt) = rt else { return };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                let mut next = 0usize;
                while let Ok((s, _)) = listener.accept().await {
                    let tx = conn_txs[next % conn_txs.len()].clone();
                    next = next.wrapping_add(1);
                    tokio::spawn(async move {
                        if let Ok((s, room)) = handshake(s).await {
                            if let Ok(s) = s.into_std() {
                                let _ = tx.try_send((s, room));
                            }
                        }
                    });
                }
            });
        })?;
    println!("ready port={port}");
    for line in std::io::stdin().lines() {
        let line = line?;
        let Some((r, rate, count)) = super::event::parse_run(&line) else {
            eprintln!("floor: unknown command {line:?}");
            continue;
        };
        for tx in &run_txs {
            tx.blocking_send((r, rate, count))
                .map_err(|_| anyhow::anyhow!("floor: a writer thread ended"))?;
        }
        let (mut elapsed, mut dropped) = (0u128, 0u64);
        for _ in 0..threads {
            let (e, d) = done_rx.recv().context("floor: a writer thread ended")?;
            elapsed = elapsed.max(e);
            dropped += d;
        }
        println!("done run={r} sent={count} elapsed_us={elapsed} dropped_conns={dropped}");
    }
    Ok(())
}

fn adopt(outs: &mut Vec<Out>, (s, _room): Adopted) {
    if let Ok(stream) = TcpStream::from_std(s) {
        outs.push(Out {
            stream,
            pending: Vec::new(),
        });
    }
}

/// One writer thread: its share of the connections, every run.
async fn writer(
    pad: usize,
    mut conn_rx: mpsc::Receiver<Adopted>,
    mut run_rx: mpsc::Receiver<Run>,
    done: std::sync::mpsc::SyncSender<(u128, u64)>,
) {
    let mut outs: Vec<Out> = Vec::new();
    let mut dropped = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    loop {
        let (r, rate, count) = tokio::select! {
            run = run_rx.recv() => match run {
                Some(run) => run,
                None => return,
            },
            Some(s) = conn_rx.recv() => {
                adopt(&mut outs, s);
                continue;
            }
        };
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < count {
            while let Ok(s) = conn_rx.try_recv() {
                adopt(&mut outs, s);
            }
            let due = super::event::due(start.elapsed(), rate, count);
            batch.clear();
            while sent < due {
                batch.extend_from_slice(&ws_frame(
                    fanfare_frame("bench.e2e", &event_data(r, sent, pad)).as_bytes(),
                ));
                sent += 1;
            }
            outs.retain_mut(|o| {
                let keep = if batch.is_empty() {
                    o.flush()
                } else {
                    o.push(&batch)
                };
                dropped += u64::from(!keep);
                keep
            });
            tick.tick().await;
        }
        let elapsed = start.elapsed().as_micros();
        // Drain what is pending (bounded: the budget per connection, 10 s).
        let until = Instant::now() + Duration::from_secs(10);
        while outs.iter().any(|o| !o.pending.is_empty()) && Instant::now() < until {
            outs.retain_mut(|o| o.flush());
            tick.tick().await;
        }
        if done.send((elapsed, dropped)).is_err() {
            return;
        }
    }
}

/// One writer thread of the rooms mode: its connections by room; each event
/// is encoded once and written to its room's connections only.
async fn room_writer(
    pad: usize,
    rooms: u64,
    mut conn_rx: mpsc::Receiver<Adopted>,
    mut run_rx: mpsc::Receiver<Run>,
    done: std::sync::mpsc::SyncSender<(u128, u64)>,
) {
    let slots = usize::try_from(rooms).unwrap_or(1).max(1);
    let mut by_room: Vec<Vec<Out>> = (0..slots).map(|_| Vec::new()).collect();
    let adopt_room = |by_room: &mut Vec<Vec<Out>>, (s, room): Adopted| {
        let Some(list) = usize::try_from(room).ok().and_then(|r| by_room.get_mut(r)) else {
            return; // a room out of range: not served, its client counts the loss
        };
        if let Ok(stream) = TcpStream::from_std(s) {
            list.push(Out {
                stream,
                pending: Vec::new(),
            });
        }
    };
    let mut dropped = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flush_all = |by_room: &mut Vec<Vec<Out>>, dropped: &mut u64| {
        for list in by_room.iter_mut() {
            list.retain_mut(|o| {
                let keep = o.pending.is_empty() || o.flush();
                *dropped += u64::from(!keep);
                keep
            });
        }
    };
    loop {
        let (r, rate, count) = tokio::select! {
            run = run_rx.recv() => match run {
                Some(run) => run,
                None => return,
            },
            Some(a) = conn_rx.recv() => {
                adopt_room(&mut by_room, a);
                continue;
            }
        };
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < count {
            while let Ok(a) = conn_rx.try_recv() {
                adopt_room(&mut by_room, a);
            }
            // Connections still holding bytes first, so events stay in order.
            flush_all(&mut by_room, &mut dropped);
            let due = super::event::due(start.elapsed(), rate, count);
            while sent < due {
                let (room, i) = room_slot(sent, rooms);
                let frame = ws_frame(
                    fanfare_frame(&format!("room.{room}"), &room_event_data(r, i, room, pad))
                        .as_bytes(),
                );
                if let Some(list) = usize::try_from(room).ok().and_then(|r| by_room.get_mut(r)) {
                    list.retain_mut(|o| {
                        let keep = o.push(&frame);
                        dropped += u64::from(!keep);
                        keep
                    });
                }
                sent += 1;
            }
            tick.tick().await;
        }
        let elapsed = start.elapsed().as_micros();
        let until = Instant::now() + Duration::from_secs(10);
        while by_room.iter().flatten().any(|o| !o.pending.is_empty()) && Instant::now() < until {
            flush_all(&mut by_room, &mut dropped);
            tick.tick().await;
        }
        if done.send((elapsed, dropped)).is_err() {
            return;
        }
    }
}
