//! Starting each forwarder under test on port 0 and reading its endpoints
//! from its readiness line.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::c_tools::CTools;
use super::config::{BenchConfig, Column};
use super::procs::{field, Proc};

/// Environment variable that turns the bench binary into one of its helper roles.
pub const ROLE_VAR: &str = "FANFARE_BENCH_ROLE";

/// How long a forwarder may take to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running forwarder and where to reach it.
pub struct Forwarder {
    /// The process; dropping it kills the forwarder.
    pub proc: Proc,
    /// Where the load generator PUSHes (`tcp://127.0.0.1:P`).
    pub pull: String,
    /// Where subscribers connect (`tcp://127.0.0.1:P`).
    pub publish: String,
    /// The Fanfare replay endpoint, for forwarders that have one.
    pub replay: Option<String>,
    /// The Fanfare admin endpoint (`http://127.0.0.1:P`), for forwarders that have one.
    pub admin: Option<String>,
}

/// The broadcaster's buffers, made comparable to the reference and sized for
/// the run: each subscriber queue holds as many messages as zmq_proxy's PUB
/// high-water mark (`hwm` messages), and history holds the whole run, so a
/// fanfare-client subscriber that falls behind can always be repaired. With the
/// defaults (16 MiB per subscriber, 100 000 messages / 64 MiB of history) a
/// full-speed burst of 1000-byte messages outruns history in ~0.15 s.
pub fn broadcaster_buffers(config: &BenchConfig, payload: usize) -> Vec<String> {
    let per_message = payload + 128;
    let queue = (config.hwm as usize * per_message).max(64 * 1024);
    let history = config.messages as usize + 1000;
    vec![
        "--subscriber-queue-bytes".into(),
        queue.to_string(),
        "--history-count".into(),
        history.to_string(),
        "--history-bytes".into(),
        (history * per_message).to_string(),
    ]
}

/// Starts the forwarder of `column` and waits for its readiness line.
pub fn start(
    column: Column,
    tools: &CTools,
    config: &BenchConfig,
    payload: usize,
) -> Result<Forwarder> {
    let (name, command) = match column {
        Column::ZmqProxy => {
            let mut command = Command::new(&tools.proxy);
            command.arg(config.hwm.to_string());
            ("zmq_proxy", command)
        }
        Column::NaiveZmqRs => {
            let mut command =
                Command::new(std::env::current_exe().context("locate the bench binary")?);
            command.env(ROLE_VAR, "naive-forwarder");
            ("naive zmq.rs loop", command)
        }
        Column::Broadcaster
        | Column::FanfareClient
        | Column::BroadcasterBefore
        | Column::ClientBefore => {
            let bin = config
                .binary_for(column)
                .context("no broadcaster binary for this column")?;
            if !bin.is_file() {
                bail!(
                    "no broadcaster binary at {}: build it first with \
                     `cargo build --release -p fanfare-broadcaster` (same CARGO_TARGET_DIR), \
                     set FANFARE_BROADCASTER_BIN, or leave it out with FANFARE_BENCH_COLUMNS=proxy,naive",
                    bin.display()
                );
            }
            let mut command = Command::new(bin);
            command
                .args(["--pull", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"])
                .args(["--replay", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0"])
                .args(["--id", "bench"])
                .args(broadcaster_buffers(config, payload))
                .env(
                    "FANFARE_LOG",
                    std::env::var("FANFARE_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
                );
            ("broadcaster", command)
        }
    };
    let mut proc = Proc::spawn(name, command)?;
    let ready = proc.expect_line("ready ", READY_TIMEOUT)?;
    let endpoint = |key: &str| -> Result<String> {
        field(&ready, key)
            .map(str::to_owned)
            .with_context(|| format!("{name}: no `{key}=` in `{ready}`"))
    };
    let pull = endpoint("pull")?;
    let publish = endpoint("pub")?;
    let replay = field(&ready, "replay").map(str::to_owned);
    let admin = field(&ready, "admin").map(str::to_owned);
    Ok(Forwarder {
        proc,
        pull,
        publish,
        replay,
        admin,
    })
}
