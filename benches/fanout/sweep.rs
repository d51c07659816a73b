//! One measured level (a publisher run at a fixed rate, open loop), the
//! sweep that finds a side's saturation, and the settings.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::load::{Load, RunStats};
use super::sides::{cpu_us, Kind, Side};

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
        let s = Settings {
            clients: list("FANFARE_FANOUT_CLIENTS", "200,1000")?,
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
        };
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
    /// Whether the level counts as sustained.
    pub pass: bool,
    /// Why not, when it does not.
    pub why: String,
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
        let urls: Vec<String> = (0..clients).map(|k| self.side.url(k)).collect();
        let load = self
            .rt
            .block_on(Load::connect(self.side.protocol, &urls, 64))?;
        // Warm-up: run 0 until every connection has seen an event.
        let deadline = Instant::now() + Duration::from_secs(60);
        while load.warm() < clients {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}: only {}/{clients} connections got a warm-up event within 60 s",
                self.side.kind.key(),
                load.warm()
            );
            self.side.publish(0, 200.0, 20)?;
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
        let rate = offered / clients as f64;
        let count = ((rate * s.seconds).round() as u64).max(10);
        let run = self.next_run.max(1);
        self.next_run = run + 1;
        load.plan(run, count);
        let closed_before = load.closed();
        let pids: Vec<u32> = self.side.server_pids.clone();
        let others: Vec<u32> = self.side.other_pids.iter().map(|(_, p)| *p).collect();
        let cpu = |p: &[u32]| p.iter().map(|&p| cpu_us(p)).sum::<u64>();
        let me = std::process::id();
        let (cpu0, other0, load0) = (cpu(&pids), cpu(&others), cpu_us(me));
        let (sent, elapsed_us) = self.side.publish(run, rate, count)?;
        let expected = sent * clients as u64;
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
        let st: RunStats = load.collect(run);
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
            pass: true,
            why: String::new(),
        };
        let mut why = Vec::new();
        if level.loss() >= s.max_loss {
            why.push(format!("loss {:.3} %", level.loss() * 100.0));
        }
        if closed > 0 {
            why.push(format!("{closed} connections closed"));
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
            "  {:<8} C={clients:<5} {phase:<5} offered {:>9.0}/s got {:>9.0}/s  p50 {:>7.2} ms p99 {:>8.2} ms  loss {:.3} % gaps {} dups {}  cpu {:.2}+{:.2} µs/d (load gen {:.2})  {}",
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
            if level.pass { "ok".to_owned() } else { format!("FAIL: {}", level.why) }
        );
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
