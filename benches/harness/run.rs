//! One measurement: a forwarder, S subscribers and the load generator, from
//! start to the last subscriber's result line.

use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::admin;
use super::c_tools::CTools;
use super::config::{BenchConfig, Column};
use super::forwarders::{self, Forwarder, ROLE_VAR};
use super::procs::{cpu_steal_ticks, cpu_us, field, steal_share, Proc};

/// How long subscribers may take to see the first probe (their subscription in place).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What one subscriber reported.
#[derive(Clone, Debug)]
pub struct SinkResult {
    /// Data messages received, duplicates included.
    pub received: u64,
    /// Distinct data messages received.
    pub unique: u64,
    /// From the first data message to the last, in microseconds.
    pub elapsed_us: u64,
    /// Why it stopped: `marker`, `quiet` or `deadline`.
    pub end: String,
    /// Messages missing by the Fanfare stamp's seq (raw SUB on the broadcaster),
    /// or reported unrecoverable (fanfare-client).
    pub stamp_missing: u64,
    /// Messages fanfare-client fetched from history (gap repair).
    pub replayed: u64,
    /// Times fanfare-client closed the subscription as a slow consumer and it was resumed.
    pub resumes: u64,
}

impl SinkResult {
    /// Distinct messages per second delivered to this subscriber.
    pub fn rate(&self) -> f64 {
        if self.elapsed_us == 0 {
            0.0
        } else {
            self.unique as f64 * 1e6 / self.elapsed_us as f64
        }
    }
}

/// The broadcaster's own counters after a run (its `/metrics`).
#[derive(Clone, Copy, Debug)]
pub struct BroadcasterCounters {
    /// `fanfare_ingress_messages_total`.
    pub ingress: f64,
    /// `fanfare_ingress_rejected_total`.
    pub rejected: f64,
    /// `fanfare_egress_dropped_total`: messages not sent to a subscriber whose queue was full.
    pub egress_dropped: f64,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The load generator's send rate (msg/s): what the forwarder took in.
    pub ingest_rate: f64,
    /// One entry per subscriber.
    pub sinks: Vec<SinkResult>,
    /// The broadcaster's counters, when the forwarder is the broadcaster and answered.
    pub counters: Option<BroadcasterCounters>,
    /// CPU time (user + system) from `go` to the last result, per message sent.
    pub cpu: CpuPerMessage,
    /// Share of the machine's CPU time the hypervisor stole meanwhile (0..1).
    pub steal: f64,
}

/// CPU time per message sent, in µs, of each process of a run (from
/// `/proc/<pid>/stat`, 10 ms ticks: runs of ≥ 0.5 s keep the error ≤ 2 %).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuPerMessage {
    /// The forwarder under test (zmq_proxy, the naive loop or the broadcaster).
    pub forwarder: f64,
    /// The load generator.
    pub load: f64,
    /// All subscribers together.
    pub subscribers: f64,
}

/// Runs `column` once with `subscribers` subscribers and `payload`-byte payloads.
pub fn run_once(
    tools: &CTools,
    config: &BenchConfig,
    column: Column,
    subscribers: usize,
    payload: usize,
) -> Result<RunResult> {
    let mut forwarder = forwarders::start(column, tools, config, payload)?;
    let measured = measure(tools, config, column, subscribers, payload, &forwarder);
    // A forwarder that died is the first thing to say about a failed run.
    match (measured, forwarder.proc.ensure_running()) {
        (Ok(mut result), Ok(())) => {
            if let Some(admin) = &forwarder.admin {
                match admin::scrape(admin) {
                    Ok(metrics) => {
                        let get = |name: &str| metrics.get(name).copied().unwrap_or(f64::NAN);
                        result.counters = Some(BroadcasterCounters {
                            ingress: get("fanfare_ingress_messages_total"),
                            rejected: get("fanfare_ingress_rejected_total"),
                            egress_dropped: get("fanfare_egress_dropped_total"),
                        });
                    }
                    Err(error) => eprintln!("warning: {admin}/metrics: {error:#}"),
                }
            }
            Ok(result)
        }
        (Ok(_), Err(died)) => Err(died),
        (Err(error), Ok(())) => Err(error),
        (Err(error), Err(died)) => Err(anyhow!("{died:#}\n  and then: {error:#}")),
    }
}

/// Subscribers and load generator against a running forwarder.
fn measure(
    tools: &CTools,
    config: &BenchConfig,
    column: Column,
    subscribers: usize,
    payload: usize,
    forwarder: &Forwarder,
) -> Result<RunResult> {
    // Slowest credible delivery is 10k msg/s; every wait below derives from it.
    let deadline = Duration::from_secs(30) + Duration::from_millis(config.messages / 10);
    let messages = config.messages.to_string();
    let mut sinks = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let command = subscriber_command(tools, config, column, forwarder, deadline)?;
        sinks.push(Proc::spawn(format!("subscriber {i}"), command)?);
    }
    let mut command = Command::new(&tools.load);
    command.args([
        &forwarder.pull,
        &messages,
        &payload.to_string(),
        &config.hwm.to_string(),
        &config.rate.to_string(),
    ]);
    let mut load = Proc::spawn("zmq_load", command)?;
    load.expect_line("probing", SUBSCRIBE_TIMEOUT)?;
    for sink in &mut sinks {
        sink.expect_line("subscribed", SUBSCRIBE_TIMEOUT)?;
    }
    let (forwarder_pid, load_pid) = (forwarder.proc.pid(), load.pid());
    let sink_pids: Vec<u32> = sinks.iter().map(Proc::pid).collect();
    // CPU µs so far of the forwarder, the load generator and all subscribers.
    let cpu_now = || {
        [
            cpu_us(forwarder_pid),
            cpu_us(load_pid),
            sink_pids.iter().map(|&p| cpu_us(p)).sum::<u64>(),
        ]
    };
    let before = cpu_now();
    let steal_before = cpu_steal_ticks();
    load.send_line("go")?;
    let mut results = Vec::with_capacity(subscribers);
    for sink in &mut sinks {
        let line = sink.expect_line("result ", deadline + Duration::from_secs(10))?;
        results.push(
            parse_sink(&line)
                .with_context(|| format!("{}: bad result line `{line}`", sink.name()))?,
        );
    }
    let sent = load.expect_line("sent ", Duration::from_secs(10))?;
    let sent_us: f64 = field(&sent, "elapsed_us")
        .context("no elapsed_us in `sent` line")?
        .parse()?;
    let after = cpu_now();
    let steal = steal_share(steal_before, cpu_steal_ticks());
    let per_message =
        |i: usize| after[i].saturating_sub(before[i]) as f64 / config.messages.max(1) as f64;
    let cpu = CpuPerMessage {
        forwarder: per_message(0),
        load: per_message(1),
        subscribers: per_message(2),
    };
    load.close_stdin();
    let _ = load.wait_exit(Duration::from_secs(2));
    Ok(RunResult {
        ingest_rate: config.messages as f64 * 1e6 / sent_us.max(1.0),
        sinks: results,
        counters: None,
        cpu,
        steal,
    })
}

/// The command line of one subscriber: the raw libzmq SUB, or the bench
/// binary as a fanfare-client subscriber for the fanfare-client column.
fn subscriber_command(
    tools: &CTools,
    config: &BenchConfig,
    column: Column,
    forwarder: &Forwarder,
    deadline: Duration,
) -> Result<Command> {
    let messages = config.messages.to_string();
    let quiet = config.quiet_ms.to_string();
    let deadline = deadline.as_millis().to_string();
    if column.through_client() {
        let replay = forwarder
            .replay
            .as_deref()
            .context("the broadcaster printed no replay endpoint")?;
        let exe = match (&config.before_client, column) {
            (Some(old), Column::ClientBefore) => old.clone(),
            _ => std::env::current_exe().context("locate the bench binary")?,
        };
        let mut command = Command::new(exe);
        command.env(ROLE_VAR, "client-sink");
        command.args([
            forwarder.pull.as_str(),
            &forwarder.publish,
            replay,
            &messages,
            &quiet,
            &deadline,
        ]);
        Ok(command)
    } else {
        let mut command = Command::new(&tools.sink);
        command.args([
            forwarder.publish.as_str(),
            "bench",
            &messages,
            &config.hwm.to_string(),
            &quiet,
            &deadline,
        ]);
        Ok(command)
    }
}

fn parse_sink(line: &str) -> Result<SinkResult> {
    let number = |key: &str| -> Result<u64> {
        Ok(field(line, key)
            .with_context(|| format!("no {key}"))?
            .parse()?)
    };
    Ok(SinkResult {
        received: number("received")?,
        unique: number("unique")?,
        elapsed_us: number("elapsed_us")?,
        end: field(line, "end").unwrap_or("?").to_owned(),
        stamp_missing: number("stamp_missing").unwrap_or(0),
        replayed: number("replayed").unwrap_or(0),
        resumes: number("resumes").unwrap_or(0),
    })
}
