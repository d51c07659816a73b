//! `soak`: C clients on one worker, each subscribed to one of T topics
//! (`soak.t<k mod T>`), a fanfare-client publisher at R msg/s spread round
//! robin over the topics (data `{"t":…,"i":…,"pad":…}`, `i` counting per
//! topic), and churn: every `60 / (C × churn)` s the next client (round
//! robin) closes its websocket and opens a new one, resuming with `since`
//! (its last `pos`, as fanfare.js does) or, with resume off, subscribing
//! plainly. Every client checks `i` continuity over its whole life
//! (across resumes): a jump with no `gap` frame before it is a *silent gap*.
//! The worker's VmRSS and open fds are sampled every S s.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fanfare_client::{Client, ClientOptions};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::dial::{Dialer, Ws};
use super::event::due;
use super::server::{fds, rss_kib, Bins, Server};

/// Soak settings.
pub struct SoakConfig {
    /// Clients.
    pub clients: usize,
    /// Topics (each client subscribes one).
    pub topics: usize,
    /// Published messages per second (all topics).
    pub rate: f64,
    /// Fraction of the clients replaced per minute.
    pub churn_per_min: f64,
    /// Reconnect with `since` (else a plain subscribe).
    pub resume: bool,
    /// Seconds before the measured part (rings and buffers fill).
    pub warmup_s: u64,
    /// Measured seconds.
    pub duration_s: u64,
    /// Seconds between samples.
    pub sample_s: u64,
    /// Padding bytes per event.
    pub pad: usize,
}

/// Counters over all clients.
#[derive(Default)]
pub struct Totals {
    /// Events received (live and replayed).
    pub events: AtomicU64,
    /// Events skipped with no `gap` frame before the jump.
    pub silent: AtomicU64,
    /// Events skipped after a `gap` frame (explicit loss).
    pub explicit: AtomicU64,
    /// `gap` frames.
    pub gap_frames: AtomicU64,
    /// Events at or below one already seen.
    pub dups: AtomicU64,
    /// Sum of `replayed` over `resumed` frames.
    pub replayed: AtomicU64,
    /// Resumes whose `replayed` differed from the events counted before `resumed`.
    pub replay_mismatch: AtomicU64,
    /// Connections the clients closed on purpose (churn).
    pub churned: AtomicU64,
    /// Close frames from the server (e.g. 4008).
    pub server_closes: AtomicU64,
    /// Connections that ended without a close frame, and failed connects.
    pub dropped: AtomicU64,
    /// `error` frames.
    pub errors: AtomicU64,
}

/// One sample.
pub struct Sample {
    /// Seconds since the publisher started.
    pub t_s: f64,
    /// Worker VmRSS, KiB.
    pub rss_kib: u64,
    /// Worker open fds.
    pub fds: usize,
    /// Broadcaster VmRSS, KiB.
    pub broadcaster_kib: u64,
    /// Worker's `fanfare_hub_connections_open`.
    pub open: u64,
    /// Totals at that time: events, silent, explicit, replayed, churned.
    pub events: u64,
    /// See `events`.
    pub silent: u64,
    /// See `events`.
    pub explicit: u64,
    /// See `events`.
    pub replayed: u64,
    /// See `events`.
    pub churned: u64,
}

/// The whole run.
pub struct SoakResult {
    /// Every sample (the first ones are the warm-up).
    pub samples: Vec<Sample>,
    /// Index of the first measured sample (end of warm-up).
    pub measured_from: usize,
    /// Final counters.
    pub totals: Arc<Totals>,
    /// Messages published.
    pub published: u64,
}

fn event_data(t: usize, i: u64, pad: &str) -> String {
    format!("{{\"t\":{t},\"i\":{i},\"pad\":\"{pad}\"}}")
}

/// One client's view of its topic, kept across its reconnects.
#[derive(Default)]
struct Track {
    next_i: Option<u64>,
    pos: Option<String>,
    gap_pending: bool,
    resuming: bool,
    in_replay: u64,
}

impl Track {
    fn frame(&mut self, text: &str, totals: &Totals) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            totals.errors.fetch_add(1, Relaxed);
            return;
        };
        match v["op"].as_str() {
            Some("event") => {
                let Some(i) = v["data"]["i"].as_u64() else {
                    return;
                };
                totals.events.fetch_add(1, Relaxed);
                if self.resuming {
                    self.in_replay += 1;
                }
                if let Some(n) = self.next_i {
                    if i < n {
                        totals.dups.fetch_add(1, Relaxed);
                        return;
                    }
                    let skipped = i - n;
                    if self.gap_pending {
                        totals.explicit.fetch_add(skipped, Relaxed);
                    } else {
                        totals.silent.fetch_add(skipped, Relaxed);
                    }
                }
                self.next_i = Some(i + 1);
                self.gap_pending = false;
                if let Some(p) = v["pos"].as_str() {
                    self.pos = Some(p.to_owned());
                }
            }
            Some("gap") => {
                totals.gap_frames.fetch_add(1, Relaxed);
                self.gap_pending = true;
            }
            Some("subscribed") => {
                self.resuming = v["resuming"] == true;
                self.in_replay = 0;
            }
            Some("resumed") => {
                let replayed = v["replayed"].as_u64().unwrap_or(0);
                totals.replayed.fetch_add(replayed, Relaxed);
                if replayed != self.in_replay {
                    totals.replay_mismatch.fetch_add(1, Relaxed);
                }
                self.resuming = false;
            }
            Some("error") => {
                totals.errors.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }
}

struct ClientCtx {
    k: usize,
    topic: String,
    resume: bool,
    dialer: Dialer,
    churn: Arc<Notify>,
    totals: Arc<Totals>,
    stop: CancellationToken,
}

/// How one connection ended.
enum End {
    Stop,
    Churn,
    Lost,
}

async fn client(cx: ClientCtx, ready: tokio::sync::mpsc::Sender<()>) {
    let mut track = Track::default();
    let mut first = true;
    while !cx.stop.is_cancelled() {
        let ws = match cx.dialer.open(cx.k, "/ws").await {
            Ok(ws) => ws,
            Err(e) => {
                if first {
                    eprintln!("soak: client {} cannot connect: {e:#}", cx.k);
                }
                cx.totals.dropped.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let end = session(&cx, ws, &mut track, first.then_some(&ready)).await;
        first = false;
        match end {
            End::Stop => return,
            End::Churn => {
                cx.totals.churned.fetch_add(1, Relaxed);
            }
            End::Lost => {}
        }
        if !cx.resume {
            track.next_i = None;
            track.pos = None;
        }
    }
}

async fn session(
    cx: &ClientCtx,
    mut ws: Ws,
    track: &mut Track,
    ready: Option<&tokio::sync::mpsc::Sender<()>>,
) -> End {
    let mut sub = serde_json::json!({"op": "subscribe", "topics": [cx.topic]});
    if let (true, Some(p)) = (cx.resume, &track.pos) {
        sub["since"] = Value::from(p.as_str());
    }
    if ws.send(Message::text(sub.to_string())).await.is_err() {
        cx.totals.dropped.fetch_add(1, Relaxed);
        return End::Lost;
    }
    let mut ready = ready;
    loop {
        let m = tokio::select! {
            biased;
            _ = cx.stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return End::Stop;
            }
            _ = cx.churn.notified() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return End::Churn;
            }
            m = ws.next() => m,
        };
        match m {
            Some(Ok(Message::Text(t))) => {
                track.frame(t.as_str(), &cx.totals);
                if let (Some(r), true) = (ready, t.as_str().contains("\"op\":\"subscribed\"")) {
                    let _ = r.try_send(());
                    ready = None;
                }
            }
            Some(Ok(Message::Close(_))) => {
                cx.totals.server_closes.fetch_add(1, Relaxed);
                return End::Lost;
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => {
                cx.totals.dropped.fetch_add(1, Relaxed);
                return End::Lost;
            }
        }
    }
}

async fn publish(
    server: &Server,
    cfg: &SoakConfig,
    stop: CancellationToken,
    sent: Arc<AtomicU64>,
) -> Result<()> {
    let client = Client::connect(
        ClientOptions::new(&server.pull, &server.publish, &server.replay).publisher_id("soak"),
    )
    .await
    .context("publisher connect")?;
    let pad = "x".repeat(cfg.pad);
    let topics: Vec<String> = (0..cfg.topics).map(|t| format!("soak.t{t}")).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.is_cancelled() {
        let due = due(start.elapsed(), cfg.rate, u64::MAX);
        while n < due {
            let t = (n % cfg.topics as u64) as usize;
            let i = n / cfg.topics as u64;
            client
                .publish(&topics[t], event_data(t, i, &pad))
                .await
                .context("publish")?;
            n += 1;
        }
        sent.store(n, Relaxed);
        tick.tick().await;
    }
    client.close().await;
    Ok(())
}

/// Runs the soak on a fresh server.
pub async fn run(
    bins: &Bins,
    worker_env: &[(String, String)],
    demo_args: &[String],
    cfg: &SoakConfig,
    parallel: usize,
) -> Result<SoakResult> {
    let server = Server::start(bins, worker_env, demo_args).await?;
    let dialer = Dialer::new(server.port);
    let totals = Arc::new(Totals::default());
    let stop = CancellationToken::new();
    let churns: Vec<Arc<Notify>> = (0..cfg.clients).map(|_| Arc::new(Notify::new())).collect();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(cfg.clients.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    let topics = cfg.topics.max(1);
    let batch = parallel.max(1);
    let deadline = Duration::from_secs(120 + cfg.clients as u64 / 50);
    tokio::time::timeout(deadline, async {
        // Opened `batch` at a time: each batch subscribed before the next.
        for (k, churn) in churns.iter().enumerate() {
            let cx = ClientCtx {
                k,
                topic: format!("soak.t{}", k % topics),
                resume: cfg.resume,
                dialer: dialer.clone(),
                churn: churn.clone(),
                totals: totals.clone(),
                stop: stop.clone(),
            };
            tasks.spawn(client(cx, ready_tx.clone()));
            if (k + 1) % batch == 0 || k + 1 == cfg.clients {
                for _ in 0..(k % batch + 1) {
                    ready_rx.recv().await.context("a client task ended")?;
                }
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("clients not subscribed in time")??;
    drop(ready_tx);
    server
        .wait_open(cfg.clients as u64, Duration::from_secs(30))
        .await?;
    eprintln!(
        "soak: {} clients subscribed; publishing {} msg/s over {} topics; worker pid={}",
        cfg.clients, cfg.rate, topics, server.worker_pid
    );

    let sent = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stop, sent) = (stop.child_token(), sent.clone());
        let server_ref = &server;
        async move { publish(server_ref, cfg, stop, sent).await }
    };
    let sampler = async {
        let start = Instant::now();
        let churn_every =
            Duration::from_secs_f64(60.0 / (cfg.clients as f64 * cfg.churn_per_min).max(1e-6));
        let mut churn_tick = tokio::time::interval(churn_every);
        churn_tick.tick().await;
        let mut sample_tick = tokio::time::interval(Duration::from_secs(cfg.sample_s.max(1)));
        let total_s = cfg.warmup_s + cfg.duration_s;
        let mut samples = Vec::new();
        let mut measured_from = None;
        let mut next_churn = 0usize;
        loop {
            tokio::select! {
                _ = churn_tick.tick(), if cfg.churn_per_min > 0.0 => {
                    churns[next_churn % churns.len()].notify_one();
                    next_churn += 1;
                }
                _ = sample_tick.tick() => {
                    let t_s = start.elapsed().as_secs_f64();
                    let s = Sample {
                        t_s,
                        rss_kib: rss_kib(server.worker_pid)?,
                        fds: fds(server.worker_pid)?,
                        broadcaster_kib: rss_kib(server.broadcaster_pid).unwrap_or(0),
                        open: server.open_connections().await?,
                        events: totals.events.load(Relaxed),
                        silent: totals.silent.load(Relaxed),
                        explicit: totals.explicit.load(Relaxed),
                        replayed: totals.replayed.load(Relaxed),
                        churned: totals.churned.load(Relaxed),
                    };
                    eprintln!(
                        "soak t={:>5.0}s rss={} KiB fds={} open={} events={} silent={} explicit={} replayed={} churned={} broadcaster={} KiB",
                        s.t_s, s.rss_kib, s.fds, s.open, s.events, s.silent, s.explicit, s.replayed, s.churned, s.broadcaster_kib
                    );
                    if measured_from.is_none() && t_s >= cfg.warmup_s as f64 {
                        measured_from = Some(samples.len());
                    }
                    samples.push(s);
                    if t_s >= total_s as f64 {
                        return anyhow::Ok((samples, measured_from.unwrap_or(0)));
                    }
                }
            }
        }
    };
    let pub_stop = stop.clone();
    let ((samples, measured_from), published) = tokio::select! {
        r = publisher => {
            r?;
            anyhow::bail!("publisher stopped early");
        }
        r = sampler => {
            pub_stop.cancel();
            (r?, sent.load(Relaxed))
        }
    };
    // Let the last events arrive, then stop the clients.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    drop(server);
    Ok(SoakResult {
        samples,
        measured_from,
        totals,
        published,
    })
}
