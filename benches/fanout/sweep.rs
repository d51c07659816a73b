//! One measured level (a publisher run at a fixed rate, open loop), the
//! sweep that finds a side's saturation, and the settings.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::load::{Load, Protocol, RunStats};
use super::procs::{cpu_steal_ticks, cpu_us, steal_share};
use super::rooms;
use super::sides::{Kind, Side};

/// Settings (environment, see benches/README.md).
pub struct Settings {
    /// Client counts (`FANFARE_FANOUT_CLIENTS`).
    pub clients: Vec<usize>,
    /// Sides (`FANFARE_FANOUT_SIDES`).
    pub sides: Vec<Kind>,
    /// Repetitions (`FANFARE_FANOUT_REPS`).
    pub reps: usize,
    /// Seconds of publishing per level (`FANFARE_FANOUT_SECONDS`).
    pub seconds: f64,
    /// First level of a sweep, deliveries/s (`FANFARE_FANOUT_START`).
    pub start: f64,
    /// Factor between coarse levels (`FANFARE_FANOUT_STEP`).
    pub step: f64,
    /// Bisection steps after the coarse sweep (`FANFARE_FANOUT_REFINE`).
    pub refine: usize,
    /// Highest level tried, deliveries/s (`FANFARE_FANOUT_MAX_RATE`).
    pub max_rate: f64,
    /// A level passes only with p99 at or below this (`FANFARE_FANOUT_MAX_P99_MS`).
    pub max_p99_ms: f64,
    /// Loss above this fraction fails a level (`FANFARE_FANOUT_MAX_LOSS`).
    pub max_loss: f64,
    /// Fanfare workers = Socket.IO servers (`FANFARE_FANOUT_WORKERS`).
    pub workers: usize,
    /// Demo worker threads (`FANFARE_FANOUT_THREADS`; unset: the demo's default).
    pub threads: Option<usize>,
    /// Load generator threads (`FANFARE_FANOUT_LOAD_THREADS`).
    pub load_threads: usize,
    /// Padding bytes per event (`FANFARE_FANOUT_PAD`).
    pub pad: usize,
    /// Writer threads of the floor (`FANFARE_FANOUT_FLOOR_THREADS`).
    pub floor_threads: usize,
    /// Loads at which every side's latency is measured, % of Fanfare's saturation.
    pub points: Vec<u64>,
    /// Rooms (`FANFARE_FANOUT_ROOMS`; 0: the one-topic mode).
    pub rooms: u64,
    /// Subscribers per room when the client count is not given
    /// (`FANFARE_FANOUT_ROOM_SUBS`).
    pub room_subs: usize,
    /// Connections opened per second in rooms mode (`FANFARE_FANOUT_CONNECT_RATE`).
    pub connect_rate: f64,
}

fn var<T: FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(v) => v.trim().parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

fn list<T: FromStr>(name: &str, default: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let v = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    v.split(',')
        .map(|x| x.trim().parse().with_context(|| format!("{name}={v}")))
        .collect()
}

impl Settings {
    /// Defaults overridden by the environment.
    pub fn from_env() -> Result<Settings> {
        let sides = std::env::var("FANFARE_FANOUT_SIDES")
            .unwrap_or_else(|_| "fanfare,socketio,floor".into())
            .split(',')
            .map(|k| {
                Kind::ALL
                    .into_iter()
                    .find(|s| s.key() == k.trim())
                    .with_context(|| {
                        format!(
                            "FANFARE_FANOUT_SIDES: unknown side {k:?} (fanfare, socketio, floor)"
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let threads: usize = var("FANFARE_FANOUT_THREADS", 0)?;
        let rooms: u64 = var("FANFARE_FANOUT_ROOMS", 0)?;
        let room_subs: usize = var("FANFARE_FANOUT_ROOM_SUBS", 3)?;
        anyhow::ensure!(
            rooms <= rooms::MAX_ROOMS && (rooms == 0 || room_subs > 0),
            "FANFARE_FANOUT_ROOMS ≤ {} and FANFARE_FANOUT_ROOM_SUBS > 0",
            rooms::MAX_ROOMS
        );
        // Rooms mode: C = rooms × subscribers unless the client counts are given.
        let default_clients = if rooms > 0 {
            usize::try_from(rooms)
                .ok()
                .and_then(|r| r.checked_mul(room_subs))
                .context("FANFARE_FANOUT_ROOMS × FANFARE_FANOUT_ROOM_SUBS overflows")?
                .to_string()
        } else {
            "200,1000".to_owned()
        };
        let s = Settings {
            clients: list("FANFARE_FANOUT_CLIENTS", &default_clients)?,
            sides,
            reps: var("FANFARE_FANOUT_REPS", 3)?,
            seconds: var("FANFARE_FANOUT_SECONDS", 2.5)?,
            start: var("FANFARE_FANOUT_START", 40_000.0)?,
            step: var("FANFARE_FANOUT_STEP", 1.5)?,
            refine: var("FANFARE_FANOUT_REFINE", 2)?,
            max_rate: var("FANFARE_FANOUT_MAX_RATE", 3_000_000.0)?,
            max_p99_ms: var("FANFARE_FANOUT_MAX_P99_MS", 1000.0)?,
            max_loss: var("FANFARE_FANOUT_MAX_LOSS", 0.001)?,
            workers: var("FANFARE_FANOUT_WORKERS", 4)?,
            threads: (threads > 0).then_some(threads),
            load_threads: var("FANFARE_FANOUT_LOAD_THREADS", 2)?,
            pad: var("FANFARE_FANOUT_PAD", 40)?,
            floor_threads: var("FANFARE_FANOUT_FLOOR_THREADS", 1)?,
            points: list("FANFARE_FANOUT_POINTS", "10,50,90")?,
            rooms,
            room_subs,
            connect_rate: var("FANFARE_FANOUT_CONNECT_RATE", 2000.0)?,
        };
        anyhow::ensure!(
            s.connect_rate > 0.0 && s.connect_rate.is_finite(),
            "FANFARE_FANOUT_CONNECT_RATE must be > 0"
        );
        anyhow::ensure!(
            rooms == 0 || s.clients.iter().all(|&c| c as u64 >= rooms),
            "rooms mode: every client count must be ≥ FANFARE_FANOUT_ROOMS (every room has a subscriber)"
        );
        anyhow::ensure!(
            s.reps > 0 && s.seconds > 0.0 && s.start > 0.0 && s.step > 1.0 && !s.clients.is_empty() && s.workers > 0,
            "FANFARE_FANOUT_*: reps, seconds, start, workers must be > 0, step > 1, clients not empty"
        );
        Ok(s)
    }
}

/// What one level measured.
#[derive(Clone, Debug)]
pub struct Level {
    /// Repetition (0-based).
    pub rep: usize,
    /// Clients.
    pub clients: usize,
    /// Side.
    pub side: Kind,
    /// `sweep`, or `pN` for a latency point at N % of Fanfare's saturation.
    pub phase: String,
    /// Offered deliveries/s (event rate × clients).
    pub offered: f64,
    /// Deliveries/s received (distinct deliveries over the publishing time).
    pub achieved: f64,
    /// Events published and deliveries expected.
    pub sent: u64,
    /// See `sent`.
    pub expected: u64,
    /// Distinct deliveries received.
    pub received: u64,
    /// Sequence gaps and duplicates (summed over connections).
    pub gaps: u64,
    /// See `gaps`.
    pub dups: u64,
    /// Latency quantiles, ms.
    pub p50: f64,
    /// See `p50`.
    pub p99: f64,
    /// p50 over the first and the last third of the run (backlog check).
    pub early_p50: f64,
    /// See `early_p50`.
    pub late_p50: f64,
    /// Largest latency, ms.
    pub max: f64,
    /// How late the publisher finished, relative to plan (1.0 = on time).
    pub publisher_lag: f64,
    /// Connections that ended during the level.
    pub closed: usize,
    /// CPU of the serving processes per delivery, µs.
    pub server_cpu_per_delivery: f64,
    /// CPU of the other processes (broadcaster, redis) per delivery, µs.
    pub other_cpu_per_delivery: f64,
    /// CPU of this process (the load generator) per delivery, µs.
    pub load_cpu_per_delivery: f64,
    /// Share of the machine's CPU time the hypervisor stole during the level
    /// (a shared VM: a level with much of it measured a smaller machine).
    pub steal: f64,
    /// Whether the level counts as sustained.
    pub pass: bool,
    /// Why not, when it does not.
    pub why: String,
    /// What the rooms mode measures besides (None in the one-topic mode).
    pub rooms: Option<RoomLevel>,
}

/// The rooms mode's extra figures of a level.
#[derive(Clone, Debug, Default)]
pub struct RoomLevel {
    /// Messages published per second (offered deliveries/s ÷ subscribers per room).
    pub messages_per_s: f64,
    /// Deliveries of another room's events (must be 0).
    pub stray: u64,
    /// TCP bytes the broadcaster's PUB socket (Fanfare) or redis (Socket.IO)
    /// sent over the level (None without `ss`).
    pub egress_bytes: Option<u64>,
    /// The broadcaster's `fanfare_subscribers` after the level.
    pub subscribers: Option<f64>,
    /// `fanfare_egress_messages_total` of the broadcaster over the level (Fanfare).
    pub egress_messages: Option<f64>,
    /// Per worker: id, `fanfare_hub_events_in_total` over the level, events
    /// its browsers wanted (of rooms it has a connection in).
    pub intake: Vec<(String, f64, u64)>,
}

impl RoomLevel {
    /// Messages the workers took in ÷ messages their browsers wanted (all
    /// workers together; None without the hub counters).
    pub fn intake_ratio(&self) -> Option<f64> {
        let got: f64 = self.intake.iter().map(|w| w.1).sum();
        let wanted: u64 = self.intake.iter().map(|w| w.2).sum();
        (wanted > 0 && !self.intake.is_empty()).then(|| got / wanted as f64)
    }

    /// The highest ratio of one worker.
    pub fn intake_ratio_max(&self) -> Option<f64> {
        self.intake
            .iter()
            .filter(|w| w.2 > 0)
            .map(|w| w.1 / w.2 as f64)
            .reduce(f64::max)
    }
}

impl Level {
    /// Lost fraction of the expected deliveries.
    pub fn loss(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        self.expected.saturating_sub(self.received) as f64 / self.expected as f64
    }
}

/// The running side and its clients, restartable after a level that lost
/// connections.
pub struct Bench<'a> {
    /// Settings.
    pub settings: &'a Settings,
    /// The load generator's runtime.
    pub rt: &'a tokio::runtime::Runtime,
    /// The side.
    pub side: Side,
    /// Its clients.
    pub load: Option<Load>,
    /// Next run id (0 is the warm-up).
    pub next_run: u64,
}

impl Bench<'_> {
    /// Connects `clients` connections to the side and warms them up.
    pub fn connect(&mut self, clients: usize) -> Result<()> {
        let rooms = self.settings.rooms;
        let urls: Vec<String> = (0..clients)
            .map(|k| {
                let url = self.side.url(k);
                if rooms > 0 && self.side.protocol == Protocol::Floor {
                    format!("{url}?room={}", rooms::room_of(k, rooms))
                } else {
                    url
                }
            })
            .collect();
        let load = if rooms > 0 {
            // Paced, and above ~28k connections to one port only spread
            // source addresses have ports enough.
            let want = (clients as u64).saturating_mul(2).saturating_add(4096);
            let nofile = rooms::raise_nofile(want);
            anyhow::ensure!(
                nofile >= (clients as u64).saturating_add(512),
                "open-file limit {nofile} is too low for {clients} connections in one load generator \
                 (and one floor process): raise the hard `ulimit -n` (needs CAP_SYS_RESOURCE) or give \
                 FANFARE_FANOUT_CLIENTS ≤ the limit − 512"
            );
            let per_second = self.settings.connect_rate;
            let began = Instant::now();
            let load = self.rt.block_on(Load::connect_rooms(
                self.side.protocol,
                &urls,
                rooms,
                64,
                per_second,
            ))?;
            eprintln!(
                "  {} connections in {rooms} rooms opened in {:.1} s",
                clients,
                began.elapsed().as_secs_f64()
            );
            load
        } else {
            self.rt
                .block_on(Load::connect(self.side.protocol, &urls, 64))?
        };
        // Warm-up: run 0 until every connection has seen an event (rooms
        // mode: one event per room per round).
        let (warm_rate, warm_count) = if rooms > 0 {
            (20_000.0, rooms)
        } else {
            (200.0, 20)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while load.warm() < clients {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}: only {}/{clients} connections got a warm-up event within 60 s",
                self.side.kind.key(),
                load.warm()
            );
            self.side.publish(0, warm_rate, warm_count)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        self.load = Some(load);
        // One discarded level at half the first sweep rate: the first
        // seconds after C connections opened are not representative (both
        // servers and the load generator grow their buffers then).
        self.level(0, "settle", (self.settings.start / 2.0).max(1000.0))?;
        Ok(())
    }

    /// Closes the clients.
    pub fn disconnect(&mut self) {
        if let Some(load) = self.load.take() {
            self.rt.block_on(load.close());
        }
    }

    /// Runs one level at `offered` deliveries/s.
    pub fn level(&mut self, rep: usize, phase: &str, offered: f64) -> Result<Level> {
        let s = self.settings;
        let load = self.load.as_ref().context("not connected")?;
        let clients = load.conns.len();
        // Rooms mode: each message reaches its room's subscribers only.
        let rate = if s.rooms > 0 {
            offered * s.rooms as f64 / clients as f64
        } else {
            offered / clients as f64
        };
        let count = ((rate * s.seconds).round() as u64).max(10);
        let run = self.next_run.max(1);
        self.next_run = run + 1;
        // The early/late thirds are by sequence, per room in rooms mode.
        load.plan(run, count.div_ceil(s.rooms.max(1)));
        let probe0 = (s.rooms > 0).then(|| RoomProbe::take(&self.side, s.workers));
        let closed_before = load.closed();
        let pids: Vec<u32> = self.side.server_pids.clone();
        let others: Vec<u32> = self.side.other_pids.iter().map(|(_, p)| *p).collect();
        let cpu = |p: &[u32]| p.iter().map(|&p| cpu_us(p)).sum::<u64>();
        let me = std::process::id();
        let (cpu0, other0, load0) = (cpu(&pids), cpu(&others), cpu_us(me));
        let steal0 = cpu_steal_ticks();
        let (sent, elapsed_us) = self.side.publish(run, rate, count)?;
        let expected = if s.rooms > 0 {
            rooms::expected(clients, s.rooms, sent)
        } else {
            sent * clients as u64
        };
        // Drain: until everything arrived or nothing moved for 2 s (≤ 30 s).
        let done = Instant::now();
        let mut last = load.progress();
        let mut moved = Instant::now();
        while last < expected
            && moved.elapsed() < Duration::from_secs(2)
            && done.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(10));
            let now = load.progress();
            if now != last {
                last = now;
                moved = Instant::now();
            }
        }
        let (cpu1, other1, load1) = (cpu(&pids), cpu(&others), cpu_us(me));
        let steal = steal_share(steal0, cpu_steal_ticks());
        let probe1 = (s.rooms > 0).then(|| RoomProbe::take(&self.side, s.workers));
        let st: RunStats = load.collect(run);
        let room_level = match (probe0, probe1) {
            (Some(a), Some(b)) => {
                let workers: Vec<Option<String>> =
                    load.conns.iter().map(|c| c.worker.get().cloned()).collect();
                let wanted = rooms::wanted_by_worker(&workers, s.rooms, sent);
                let intake = b
                    .events_in
                    .iter()
                    .map(|(w, v1)| {
                        let v0 = a.events_in.get(w).copied().unwrap_or(0.0);
                        (
                            w.clone(),
                            (v1 - v0).max(0.0),
                            wanted.get(w).copied().unwrap_or(0),
                        )
                    })
                    .collect();
                Some(RoomLevel {
                    messages_per_s: rate,
                    stray: st.stray,
                    egress_bytes: a.sent.zip(b.sent).map(|(x, y)| y.saturating_sub(x)),
                    subscribers: b.egress.map(|e| e.1),
                    egress_messages: a.egress.zip(b.egress).map(|(x, y)| (y.0 - x.0).max(0.0)),
                    intake,
                })
            }
            _ => None,
        };
        let closed = load.closed() - closed_before;
        let elapsed = (elapsed_us as f64 / 1e6).max(1e-3);
        let planned = count as f64 / rate;
        let received = st.received.max(1) as f64;
        let mut level = Level {
            rep,
            clients,
            side: self.side.kind,
            phase: phase.to_owned(),
            offered,
            achieved: st.received as f64 / elapsed.max(planned),
            sent,
            expected,
            received: st.received,
            gaps: st.gaps,
            dups: st.dups,
            p50: st.all.quantile_ms(0.5),
            p99: st.all.quantile_ms(0.99),
            early_p50: st.early.quantile_ms(0.5),
            late_p50: st.late.quantile_ms(0.5),
            max: st.all.max_ms(),
            publisher_lag: elapsed / planned,
            closed,
            server_cpu_per_delivery: cpu1.saturating_sub(cpu0) as f64 / received,
            other_cpu_per_delivery: other1.saturating_sub(other0) as f64 / received,
            load_cpu_per_delivery: load1.saturating_sub(load0) as f64 / received,
            steal,
            pass: true,
            why: String::new(),
            rooms: room_level,
        };
        let mut why = Vec::new();
        if level.loss() >= s.max_loss {
            why.push(format!("loss {:.3} %", level.loss() * 100.0));
        }
        if closed > 0 {
            why.push(format!("{closed} connections closed"));
        }
        if st.stray > 0 {
            why.push(format!("{} deliveries of another room", st.stray));
        }
        if level.publisher_lag > 1.2 {
            why.push(format!("publisher {:.2}× late", level.publisher_lag));
        }
        if level.p99.is_nan() || level.p99 > s.max_p99_ms {
            why.push(format!("p99 {:.0} ms > {:.0} ms", level.p99, s.max_p99_ms));
        }
        if level.late_p50 > 2.0 * level.early_p50 + 50.0 {
            why.push(format!(
                "backlog grows (p50 {:.1} → {:.1} ms)",
                level.early_p50, level.late_p50
            ));
        }
        level.pass = why.is_empty();
        level.why = why.join(", ");
        eprintln!(
            "  {:<8} C={clients:<5} {phase:<5} offered {:>9.0}/s got {:>9.0}/s  p50 {:>7.2} ms p99 {:>8.2} ms  loss {:.3} % gaps {} dups {}  cpu {:.2}+{:.2} µs/d (load gen {:.2}) steal {:.0} %  {}",
            self.side.kind.key(),
            offered,
            level.achieved,
            level.p50,
            level.p99,
            level.loss() * 100.0,
            level.gaps,
            level.dups,
            level.server_cpu_per_delivery,
            level.other_cpu_per_delivery,
            level.load_cpu_per_delivery,
            level.steal * 100.0,
            if level.pass { "ok".to_owned() } else { format!("FAIL: {}", level.why) }
        );
        if let Some(r) = &level.rooms {
            eprintln!(
                "           rooms: {:.0} msg/s, sent by {} {} B/delivery, egress msgs/delivery {} ({} subscribers), intake ÷ wanted {} (max worker {})",
                r.messages_per_s,
                if self.side.kind == Kind::SocketIo { "redis" } else { "broadcaster" },
                r.egress_bytes.map_or("—".into(), |b| format!("{:.1}", b as f64 / received)),
                r.egress_messages.map_or("—".into(), |e| format!("{:.3}", e / received)),
                r.subscribers.map_or("—".into(), |v| format!("{v:.0}")),
                r.intake_ratio().map_or("—".into(), |v| format!("{v:.3}")),
                r.intake_ratio_max().map_or("—".into(), |v| format!("{v:.3}")),
            );
        }
        self.side.ensure_running()?;
        Ok(level)
    }

    /// Reconnects when a level lost connections (a Fanfare worker closes a
    /// websocket whose queue is full with 4008; the floor drops one over its
    /// budget), so the next level starts with all C.
    pub fn heal(&mut self, restart: impl FnOnce() -> Result<Side>) -> Result<()> {
        let Some(load) = self.load.as_ref() else {
            return Ok(());
        };
        if load.closed() == 0 {
            return Ok(());
        }
        let clients = load.conns.len();
        let kind = self.side.kind;
        self.disconnect();
        // The old side goes first (its processes are killed on drop).
        self.side = Side::placeholder(kind);
        self.side = restart()?;
        self.connect(clients)
    }
}

/// Counters of a side read before and after a rooms-mode level.
struct RoomProbe {
    sent: Option<u64>,
    egress: Option<(f64, f64)>,
    events_in: std::collections::BTreeMap<String, f64>,
}

impl RoomProbe {
    fn take(side: &Side, workers: usize) -> RoomProbe {
        let sent = side.egress_port.and_then(rooms::sent_bytes);
        let egress = side
            .admin
            .as_deref()
            .and_then(|a| match rooms::broadcaster_egress(a) {
                Ok(v) => Some(v),
                Err(e) => {
                    eprintln!("  broadcaster metrics: {e:#}");
                    None
                }
            });
        let events_in = side
            .hub_port
            .map(|p| match rooms::worker_events_in(p, workers) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("  worker metrics: {e:#}");
                    Default::default()
                }
            })
            .unwrap_or_default();
        RoomProbe {
            sent,
            egress,
            events_in,
        }
    }
}
