//! The `broadcaster` binary's command line: the run flags and the `pub`,
//! `tail`, `stats` and `topo` tools. Its one public item is [`Cli`]: the binary
//! parses it and calls [`Cli::run`].
//!
//! This is the binary's code. It lives in the library because the `pub`
//! tool speaks ZMTP through the crate-private `zmtp` module, which stays
//! private; like binary code it reports errors with `anyhow`.

mod publish;
mod serve;
mod stats;
mod tail;
mod topo;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::Config;

/// Default ingress endpoint of the tools.
const DEFAULT_PULL: &str = "tcp://127.0.0.1:5557";
/// Default egress endpoint of the tools.
const DEFAULT_PUB: &str = "tcp://127.0.0.1:5558";
/// Default replay endpoint of the tools.
const DEFAULT_REPLAY: &str = "tcp://127.0.0.1:5559";
/// Default admin address of the tools.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:5560";

/// Fanfare broadcaster: ZeroMQ PULL → stamp → PUB, with history and replay.
#[derive(Debug, Parser)]
#[command(name = "broadcaster", version, about)]
pub struct Cli {
    /// Flags for running the broadcaster.
    #[command(flatten)]
    run: RunArgs,
    /// A tool to run instead of the broadcaster.
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// Runs what the command line asks for: a tool, or the broadcaster
    /// itself until SIGINT or SIGTERM (then a graceful drain). Prints the
    /// `ready …` line on stdout once every socket is bound.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            None => serve::until_signal(self.run.into_config()?).await,
            Some(Command::Pub(a)) => publish::run(a).await,
            Some(Command::Tail(a)) => tail::run(a).await,
            Some(Command::Stats(a)) => stats::run(a).await,
            Some(Command::Topo(a)) => topo::run(a).await,
        }
    }
}

/// The tools.
#[derive(Debug, Subcommand)]
enum Command {
    /// Publish DATA (or each line of stdin) on TOPIC.
    Pub(publish::PubArgs),
    /// Print messages matching PATTERN as they come (optionally from --since).
    Tail(tail::TailArgs),
    /// Show a running broadcaster's statistics.
    Stats(stats::StatsArgs),
    /// Show the fabric as a running broadcaster sees it: links and origins.
    Topo(topo::TopoArgs),
}

/// Flags of the broadcaster itself. Each overrides the config file.
#[derive(Debug, Args)]
struct RunArgs {
    /// Ingress (PULL) endpoint [default: tcp://127.0.0.1:5557].
    #[arg(long, env = "FANFARE_PULL")]
    pull: Option<String>,
    /// Egress (PUB) endpoint [default: tcp://127.0.0.1:5558].
    #[arg(long = "pub", env = "FANFARE_PUB")]
    publish: Option<String>,
    /// Replay (ROUTER) endpoint [default: tcp://127.0.0.1:5559].
    #[arg(long, env = "FANFARE_REPLAY")]
    replay: Option<String>,
    /// Admin HTTP address, or `off` [default: 127.0.0.1:5560].
    #[arg(long, env = "FANFARE_ADMIN")]
    admin: Option<String>,
    /// Origin id [default: the host name].
    #[arg(long, env = "FANFARE_ID")]
    id: Option<String>,
    /// TOML file with the same keys (pull, pub, replay, admin, id, history-count, …).
    #[arg(long, env = "FANFARE_CONFIG")]
    config: Option<PathBuf>,
    /// Largest payload accepted, bytes [default: 1048576].
    #[arg(long, env = "FANFARE_MAX_PAYLOAD")]
    max_payload: Option<usize>,
    /// History bound, messages [default: 100000].
    #[arg(long, env = "FANFARE_HISTORY_COUNT")]
    history_count: Option<usize>,
    /// History bound, bytes [default: 67108864].
    #[arg(long, env = "FANFARE_HISTORY_BYTES")]
    history_bytes: Option<usize>,
    /// History bound, seconds [default: 600].
    #[arg(long, env = "FANFARE_HISTORY_AGE_SECS")]
    history_age_secs: Option<u64>,
    /// Heartbeat interval, ms [default: 1000].
    #[arg(long, env = "FANFARE_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Per-subscriber queue bound, bytes [default: 16777216].
    #[arg(long, env = "FANFARE_SUBSCRIBER_QUEUE_BYTES")]
    subscriber_queue_bytes: Option<usize>,
    /// Most connections per socket [default: 4096].
    #[arg(long, env = "FANFARE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// A started frame must complete within this, ms [default: 10000].
    #[arg(long, env = "FANFARE_FRAME_DEADLINE_MS")]
    frame_deadline_ms: Option<u64>,
    /// Silent PULL/replay peers are cut after this, ms; 0 = never [default: 300000].
    #[arg(long, env = "FANFARE_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// A subscriber that takes no bytes this long is cut, ms [default: 15000].
    #[arg(long, env = "FANFARE_WRITE_STALL_MS")]
    write_stall_ms: Option<u64>,
    /// At the cap, peers idle this long may be evicted, ms [default: 10000].
    #[arg(long, env = "FANFARE_EVICT_IDLE_MS")]
    evict_idle_ms: Option<u64>,
    /// Most messages in one replay reply [default: 4096].
    #[arg(long, env = "FANFARE_REPLAY_MAX_MESSAGES")]
    replay_max_messages: Option<usize>,
    /// Most bytes in one replay reply [default: 8388608].
    #[arg(long, env = "FANFARE_REPLAY_MAX_BYTES")]
    replay_max_bytes: Option<usize>,
    /// Most history entries one replay reply examines [default: 4096].
    #[arg(long, env = "FANFARE_REPLAY_SCAN_ENTRIES")]
    replay_scan_entries: Option<usize>,
    /// Most entry × pattern tests in one replay reply [default: 65536].
    #[arg(long, env = "FANFARE_REPLAY_SCAN_MATCHES")]
    replay_scan_matches: Option<usize>,
    /// Most filtering time of one replay reply, ms [default: 10].
    #[arg(long, env = "FANFARE_REPLAY_SCAN_MS")]
    replay_scan_ms: Option<u64>,
    /// Replay scans running at once [default: 2].
    #[arg(long, env = "FANFARE_REPLAY_WORKERS")]
    replay_workers: Option<usize>,
    /// Bytes of all replay replies being written, in total [default: 67108864].
    #[arg(long, env = "FANFARE_REPLAY_INFLIGHT_BYTES")]
    replay_inflight_bytes: Option<usize>,
    /// Deadline of each replay reply write, ms [default: 5000].
    #[arg(long, env = "FANFARE_REPLAY_WRITE_TIMEOUT_MS")]
    replay_write_timeout_ms: Option<u64>,
    /// Graceful shutdown budget, ms [default: 5000].
    #[arg(long, env = "FANFARE_SHUTDOWN_TIMEOUT_MS")]
    shutdown_timeout_ms: Option<u64>,
    /// A peer broadcaster's PUB endpoint to federate with (repeatable; the
    /// variable takes a comma-separated list). Replaces the file's [[peer]]s.
    #[arg(long = "peer", env = "FANFARE_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Messages re-published over this many links are dropped [default: 8].
    #[arg(long, env = "FANFARE_HOP_LIMIT")]
    hop_limit: Option<u8>,
    /// A link silent this long (no heartbeat) reconnects, ms [default: 5000].
    #[arg(long, env = "FANFARE_PEER_STALL_MS")]
    peer_stall_ms: Option<u64>,
}

impl RunArgs {
    /// Defaults, then the config file, then flags and environment.
    fn into_config(self) -> Result<Config, crate::ConfigError> {
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
        set!(
            max_connections,
            frame_deadline_ms,
            idle_timeout_ms,
            write_stall_ms,
            evict_idle_ms
        );
        set!(
            replay_max_messages,
            replay_max_bytes,
            replay_scan_entries,
            replay_scan_matches
        );
        set!(
            replay_scan_ms,
            replay_workers,
            replay_inflight_bytes,
            replay_write_timeout_ms
        );
        set!(hop_limit, peer_stall_ms);
        if !self.peers.is_empty() {
            c.peers = self
                .peers
                .into_iter()
                .map(crate::config::PeerConfig::new)
                .collect();
        }
        if let Some(a) = self.admin {
            c.admin = (a != "off").then_some(a);
        }
        c.validate()?;
        Ok(c)
    }
}
