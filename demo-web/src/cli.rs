//! Command line of the supervisor and of its (hidden) worker subcommand.

use clap::{Args, Parser, Subcommand};

/// Fanfare live demo: a broadcaster and N web workers on one port.
///
/// With `--broadcasters N` (N ≥ 2) the demo runs N federated broadcaster
/// processes instead (linked by `--peer`, mesh or ring), and every worker's
/// client gets all of them: it subscribes through all, drops duplicates and
/// publishes through its preferred one, failing over to another when that
/// one dies. Kill any broadcaster (`kill -9 PID`, pids are printed as
/// `broadcaster id=… pid=…` and shown in the Fabric tab): every page stays
/// live and loses nothing; the supervisor restarts it on the same ports
/// (new epoch) and it rejoins the fabric.
#[derive(Debug, Parser)]
#[command(name = "fanfare-demo-web", version)]
pub struct Cli {
    /// Tokio worker threads of the supervisor and of each worker (default: 2 for
    /// the supervisor; each worker the machine's cores ÷ workers, at least 1).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// What to run (default: the supervisor).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Supervisor options.
    #[command(flatten)]
    pub demo: DemoArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One web worker (started by the supervisor).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Runs a broadcaster and stops it when stdin closes (started by the
    /// supervisor for `--broadcasters N`).
    #[command(hide = true)]
    Guard {
        /// The broadcaster binary and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

/// Hub settings shared by the supervisor and its workers.
#[derive(Debug, Clone, Args)]
pub struct HubArgs {
    /// Frames queued per websocket before it is closed with 4008.
    #[arg(long, default_value_t = 1024)]
    pub ws_queue: usize,
    /// Events kept in each worker's ring for resumes.
    #[arg(long, default_value_t = 10_000)]
    pub ring: usize,
    /// Largest browser frame answered normally, bytes (larger: too_large).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_frame: usize,
    /// Browser publishes per second per connection.
    #[arg(long, default_value_t = 20.0)]
    pub publish_rate: f64,
    /// Kernel send buffer (SO_SNDBUF) of each connection, bytes.
    #[arg(long, default_value_t = 128 * 1024)]
    pub ws_send_buffer: u32,
    /// Allowed page origins (repeat); none = same origin only.
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,
    /// A shared token browsers must present (`?token=`, bearer header,
    /// cookie, or the first frame with `--auth-in-first-frame`); none =
    /// everyone is allowed everything.
    #[arg(long)]
    pub auth_token: Option<String>,
    /// Accept upgrades without a token; the browser then sends
    /// `{"op":"auth","token":…}` first (or is closed with 4003 after
    /// `--auth-timeout-ms`).
    #[arg(long)]
    pub auth_in_first_frame: bool,
    /// How long a connection opened without a token may take to send `auth`.
    #[arg(long, default_value_t = 10_000)]
    pub auth_timeout_ms: u64,
}

/// Supervisor options.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Port all workers listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Use running broadcaster(s) instead of an embedded one:
    /// `pull=tcp://…,pub=tcp://…,replay=tcp://…[,admin=HOST:PORT]` (a
    /// broadcaster's ready line works; with `admin` the Fabric view shows
    /// it). Repeat for a federation (already linked by their own `--peer`):
    /// every worker gets all of them and fails over between them; worker i
    /// prefers broadcaster i mod n.
    #[arg(long)]
    pub broadcaster: Vec<String>,
    /// Run this many federated broadcasters as supervised child processes
    /// (N ≥ 2; 1 = one embedded broadcaster). Each is linked to the others
    /// (`--topology`); every worker gets all of them and fails over; a
    /// broadcaster that dies is restarted on the same ports (new epoch) and
    /// rejoins.
    #[arg(long, default_value_t = 1)]
    pub broadcasters: usize,
    /// How `--broadcasters N` link: `mesh` (everyone `--peer`s everyone) or
    /// `ring` (each its two neighbours, both ways).
    #[arg(long, value_enum, default_value_t = crate::fleet::Topology::Mesh)]
    pub topology: crate::fleet::Topology,
    /// The broadcaster binary for `--broadcasters N` (default: `broadcaster`
    /// next to this binary, else on PATH).
    #[arg(long, env = "FANFARE_BROADCASTER_BIN")]
    pub broadcaster_bin: Option<std::path::PathBuf>,
    /// Broadcaster heartbeat interval for `--broadcasters N`, ms (how fast
    /// links and clients notice a dead one).
    #[arg(long, default_value_t = 250)]
    pub broadcaster_heartbeat_ms: u64,
    /// Embedded (or child) broadcasters: messages kept in history.
    #[arg(long, default_value_t = 100_000)]
    pub history: usize,
    /// Hub settings.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// Worker options.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Worker id (shown to browsers).
    #[arg(long)]
    pub id: String,
    /// Address to listen on.
    #[arg(long)]
    pub host: String,
    /// Port (shared with the other workers through SO_REUSEPORT).
    #[arg(long)]
    pub port: u16,
    /// A broadcaster, `pull=…,pub=…,replay=…`; repeat: the client gets all
    /// of them (the first is published through first) and fails over.
    #[arg(long, required = true)]
    pub broadcaster: Vec<String>,
    /// How long a silent broadcaster is trusted (heartbeat timeout), ms.
    #[arg(long, default_value_t = 1500)]
    pub heartbeat_timeout_ms: u64,
    /// Publisher ids this worker vouches for (`from` in events; others are
    /// `from_unverified`): the demo's worker ids. Repeat.
    #[arg(long = "trusted-publisher")]
    pub trusted_publishers: Vec<String>,
    /// Hub settings.
    #[command(flatten)]
    pub hub: HubArgs,
}

impl HubArgs {
    /// The same settings as worker arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            format!("--ws-queue={}", self.ws_queue),
            format!("--ring={}", self.ring),
            format!("--max-frame={}", self.max_frame),
            format!("--publish-rate={}", self.publish_rate),
            format!("--ws-send-buffer={}", self.ws_send_buffer),
        ];
        v.extend(
            self.allowed_origins
                .iter()
                .map(|o| format!("--allowed-origin={o}")),
        );
        if let Some(t) = &self.auth_token {
            v.push(format!("--auth-token={t}"));
        }
        if self.auth_in_first_frame {
            v.push("--auth-in-first-frame".to_owned());
        }
        v.push(format!("--auth-timeout-ms={}", self.auth_timeout_ms));
        v
    }
}

/// A running broadcaster's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Ingress.
    pub pull: String,
    /// Egress.
    pub publish: String,
    /// Replay.
    pub replay: String,
    /// Admin HTTP `host:port`, when known.
    pub admin: Option<String>,
}

impl Target {
    /// As a worker's `--broadcaster` value.
    pub fn to_arg(&self) -> String {
        format!(
            "pull={},pub={},replay={}",
            self.pull, self.publish, self.replay
        )
    }
}

/// Endpoints of a running broadcaster, from
/// `pull=…,pub=…,replay=…[,admin=…]` (or its readiness line).
pub fn parse_broadcaster(s: &str) -> anyhow::Result<Target> {
    let (mut pull, mut publish, mut replay, mut admin) = (None, None, None, None);
    for kv in s
        .split([',', ' '])
        .filter(|x| !x.is_empty() && *x != "ready")
    {
        match kv.split_once('=') {
            Some(("pull", v)) => pull = Some(v.to_owned()),
            Some(("pub", v)) => publish = Some(v.to_owned()),
            Some(("replay", v)) => replay = Some(v.to_owned()),
            Some(("admin", v)) => admin = Some(v.trim_start_matches("http://").to_owned()),
            _ => {}
        }
    }
    match (pull, publish, replay) {
        (Some(pull), Some(publish), Some(replay)) => Ok(Target {
            pull,
            publish,
            replay,
            admin,
        }),
        _ => anyhow::bail!("--broadcaster needs pull=…,pub=…,replay=…"),
    }
}
