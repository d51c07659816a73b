//! Command-line interface of the `broadcaster` binary: the run flags and the
//! `pub`, `tail` and `stats` tools.

pub mod publish;
pub mod stats;
pub mod tail;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::Config;

/// Default ingress endpoint of the tools.
pub const DEFAULT_PULL: &str = "tcp://127.0.0.1:5557";
/// Default egress endpoint of the tools.
pub const DEFAULT_PUB: &str = "tcp://127.0.0.1:5558";
/// Default replay endpoint of the tools.
pub const DEFAULT_REPLAY: &str = "tcp://127.0.0.1:5559";
/// Default admin address of the tools.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:5560";

/// Fanfare broadcaster: ZeroMQ PULL → stamp → PUB, with history and replay.
#[derive(Debug, Parser)]
#[command(name = "broadcaster", version, about)]
pub struct Cli {
    /// Flags for running the broadcaster.
    #[command(flatten)]
    pub run: RunArgs,
    /// A tool to run instead of the broadcaster.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish DATA (or each line of stdin) on TOPIC.
    Pub(publish::PubArgs),
    /// Print messages matching PATTERN as they come (optionally from --since).
    Tail(tail::TailArgs),
    /// Show a running broadcaster's statistics.
    Stats(stats::StatsArgs),
}

/// Flags of the broadcaster itself. Each overrides the config file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Ingress (PULL) endpoint [default: tcp://127.0.0.1:5557].
    #[arg(long, env = "FANFARE_PULL")]
    pub pull: Option<String>,
    /// Egress (PUB) endpoint [default: tcp://127.0.0.1:5558].
    #[arg(long = "pub", env = "FANFARE_PUB")]
    pub publish: Option<String>,
    /// Replay (ROUTER) endpoint [default: tcp://127.0.0.1:5559].
    #[arg(long, env = "FANFARE_REPLAY")]
    pub replay: Option<String>,
    /// Admin HTTP address, or `off` [default: 127.0.0.1:5560].
    #[arg(long, env = "FANFARE_ADMIN")]
    pub admin: Option<String>,
    /// Origin id [default: the host name].
    #[arg(long, env = "FANFARE_ID")]
    pub id: Option<String>,
    /// TOML file with the same keys (pull, pub, replay, admin, id, history-count, …).
    #[arg(long, env = "FANFARE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest payload accepted, bytes [default: 1048576].
    #[arg(long, env = "FANFARE_MAX_PAYLOAD")]
    pub max_payload: Option<usize>,
    /// History bound, messages [default: 100000].
    #[arg(long, env = "FANFARE_HISTORY_COUNT")]
    pub history_count: Option<usize>,
    /// History bound, bytes [default: 67108864].
    #[arg(long, env = "FANFARE_HISTORY_BYTES")]
    pub history_bytes: Option<usize>,
    /// History bound, seconds [default: 600].
    #[arg(long, env = "FANFARE_HISTORY_AGE_SECS")]
    pub history_age_secs: Option<u64>,
    /// Heartbeat interval, ms [default: 1000].
    #[arg(long, env = "FANFARE_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Per-subscriber queue bound, bytes [default: 16777216].
    #[arg(long, env = "FANFARE_SUBSCRIBER_QUEUE_BYTES")]
    pub subscriber_queue_bytes: Option<usize>,
    /// Graceful shutdown budget, ms [default: 5000].
    #[arg(long, env = "FANFARE_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
}

impl RunArgs {
    /// Defaults, then the config file, then flags and environment.
    pub fn into_config(self) -> Result<Config, crate::ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(
            pull,
            publish,
            replay,
            id,
            max_payload,
            history_count,
            history_bytes
        );
        set!(
            history_age_secs,
            heartbeat_ms,
            subscriber_queue_bytes,
            shutdown_timeout_ms
        );
        if let Some(a) = self.admin {
            c.admin = (a != "off").then_some(a);
        }
        c.validate()?;
        Ok(c)
    }
}
