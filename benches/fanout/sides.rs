//! The three sides of the fanout bench, each started on free ports with
//! readiness lines, all on loopback:
//! * `fanfare`: the broadcaster binary + the demo (`fanfare-demo-web`, W
//!   workers on one SO_REUSEPORT port) + a fanfare-client publisher process;
//! * `socketio`: `redis-server` (persistence off) + W Socket.IO 4 servers
//!   with `@socket.io/redis-adapter` + a `@socket.io/redis-emitter` publisher;
//! * `floor`: the one-thread writer of pre-encoded frames (its own publisher).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::load::Protocol;
use super::procs::{broadcaster_endpoints, demo_port, field, Proc};
use super::ROLE_VAR;

/// How long a process may take to print its readiness line.
const READY: Duration = Duration::from_secs(60);

/// Which side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Broadcaster + demo workers.
    Fanfare,
    /// Socket.IO 4 + Redis adapter.
    SocketIo,
    /// The one-thread floor.
    Floor,
}

impl Kind {
    /// All sides, in the order a repetition runs them.
    pub const ALL: [Kind; 3] = [Kind::Fanfare, Kind::SocketIo, Kind::Floor];

    /// Name in settings and CSV.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Fanfare => "fanfare",
            Kind::SocketIo => "socketio",
            Kind::Floor => "floor",
        }
    }

    /// Name in tables and plots.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Fanfare => "Fanfare (broadcaster + demo workers)",
            Kind::SocketIo => "Socket.IO 4 + Redis adapter",
            Kind::Floor => "floor (one-thread pre-encoded writer)",
        }
    }
}

/// Everything a side needs that is found once per bench run.
pub struct Tools {
    /// `broadcaster` (release).
    pub broadcaster: PathBuf,
    /// `fanfare-demo-web` (release).
    pub demo: PathBuf,
    /// `benches/socketio` with its `node_modules`.
    pub socketio_dir: PathBuf,
}

/// Checks what `kinds` need and installs the node packages if missing; fails
/// with what to install otherwise.
pub fn prepare(kinds: &[Kind], tools: &Tools) -> Result<()> {
    if kinds.contains(&Kind::Fanfare) {
        for (bin, package) in [
            (&tools.broadcaster, "fanfare-broadcaster"),
            (&tools.demo, "fanfare-demo-web"),
        ] {
            if !bin.is_file() {
                bail!(
                    "no binary at {}: build it first with `cargo build --release -p {package}` \
                     (same CARGO_TARGET_DIR), or set FANFARE_BROADCASTER_BIN / FANFARE_DEMO_BIN",
                    bin.display()
                );
            }
        }
    }
    if kinds.contains(&Kind::SocketIo) {
        let missing: Vec<&str> = [
            ("node", "--version"),
            ("npm", "--version"),
            ("redis-server", "--version"),
        ]
        .into_iter()
        .filter(|(cmd, arg)| {
            !Command::new(cmd)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(cmd, _)| cmd)
        .collect();
        if !missing.is_empty() {
            bail!(
                "the Socket.IO side needs {}: `sudo apt-get install -y nodejs npm redis-server` \
                 (or leave it out with FANFARE_FANOUT_SIDES=fanfare,floor)",
                missing.join(", ")
            );
        }
        if !tools.socketio_dir.join("node_modules").is_dir() {
            eprintln!(
                "fanout: installing the Socket.IO side's node packages (npm ci in {})",
                tools.socketio_dir.display()
            );
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&tools.socketio_dir)
                .status()
                .context("running npm ci")?;
            if !status.success() {
                bail!(
                    "npm ci in {} failed ({status})",
                    tools.socketio_dir.display()
                );
            }
        }
    }
    Ok(())
}

/// A running side.
pub struct Side {
    /// Which one.
    pub kind: Kind,
    /// How its clients talk.
    pub protocol: Protocol,
    /// The websocket URLs to spread the clients over (round robin).
    pub urls: Vec<String>,
    /// The processes that serve the websockets (CPU per delivery is theirs).
    pub server_pids: Vec<u32>,
    /// Other processes of the side (broadcaster, redis), by name.
    pub other_pids: Vec<(String, u32)>,
    /// The broadcaster's admin endpoint, `http://HOST:PORT` (Fanfare).
    pub admin: Option<String>,
    /// The workers' shared port, for their /metrics (Fanfare).
    pub hub_port: Option<u16>,
    /// The port whose sent bytes are the side's egress toward its servers
    /// (the broadcaster's PUB, redis).
    pub egress_port: Option<u16>,
    publisher: usize,
    procs: Vec<Proc>,
}

/// Settings of a side.
pub struct SideConfig {
    /// Worker processes (Fanfare) or Socket.IO servers.
    pub workers: usize,
    /// `--threads` of the demo workers (None: the demo's default).
    pub threads: Option<usize>,
    /// Padding bytes in each event.
    pub pad: usize,
    /// Writer threads of the floor.
    pub floor_threads: usize,
    /// Rooms (0: the one-topic mode); the publishers spread events over them.
    pub rooms: u64,
}

impl Side {
    /// Starts side `kind`.
    pub fn start(kind: Kind, tools: &Tools, cfg: &SideConfig) -> Result<Side> {
        match kind {
            Kind::Fanfare => start_fanfare(tools, cfg),
            Kind::SocketIo => start_socketio(tools, cfg),
            Kind::Floor => start_floor(cfg),
        }
    }

    /// A side with no processes, standing in while one restarts.
    pub fn placeholder(kind: Kind) -> Side {
        Side {
            kind,
            protocol: Protocol::Floor,
            urls: vec![String::new()],
            server_pids: Vec::new(),
            other_pids: Vec::new(),
            admin: None,
            hub_port: None,
            egress_port: None,
            publisher: 0,
            procs: Vec::new(),
        }
    }

    /// URL of client `k`.
    pub fn url(&self, k: usize) -> String {
        self.urls[k % self.urls.len()].clone()
    }

    /// Tells the publisher to send `count` events of run `run` at `rate`/s;
    /// returns (sent, elapsed µs) once it is done.
    pub fn publish(&mut self, run: u64, rate: f64, count: u64) -> Result<(u64, u64)> {
        let p = &mut self.procs[self.publisher];
        p.send_line(&format!("run {run} {rate} {count}"))?;
        let expected = Duration::from_secs_f64(count as f64 / rate);
        let line = p.expect_line(
            &format!("done run={run} "),
            expected * 3 + Duration::from_secs(30),
        )?;
        let num = |k: &str| -> Result<u64> {
            field(&line, k)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {k}= in {line:?}"))
        };
        Ok((num("sent")?, num("elapsed_us")?))
    }

    /// Fails if a process of the side has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        for p in &mut self.procs {
            p.ensure_running()?;
        }
        Ok(())
    }
}

fn ready_port(p: &mut Proc) -> Result<u16> {
    let line = p.expect_line("ready", READY)?;
    field(&line, "port")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{}: no port= in {line:?}", p.name()))
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.get(s.rfind(')')? + 2..)?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn start_fanfare(tools: &Tools, cfg: &SideConfig) -> Result<Side> {
    let mut command = Command::new(&tools.broadcaster);
    command
        .args(["--pull", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"])
        .args(["--replay", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--id", "bench"])
        .env("FANFARE_LOG", "warn");
    let mut broadcaster = Proc::spawn("broadcaster", command)?;
    let ready = broadcaster.expect_line("ready ", READY)?;
    let (pull, publish, replay) = broadcaster_endpoints(&ready)?;
    let admin = field(&ready, "admin").map(str::to_owned);
    let mut command = Command::new(&tools.demo);
    command
        .args(["--port", "0", "--workers", &cfg.workers.to_string()])
        .args([
            "--broadcaster",
            &format!("pull={pull},pub={publish},replay={replay}"),
        ])
        .env("RUST_LOG", "warn");
    if let Some(t) = cfg.threads {
        command.args(["--threads", &t.to_string()]);
    }
    let mut demo = Proc::spawn("fanfare-demo-web", command)?;
    let ready = demo.expect_line("ready http://", READY)?;
    let port = demo_port(&ready)?;
    let workers = children_of(demo.pid());
    if workers.len() != cfg.workers {
        bail!(
            "demo: found {} worker processes, expected {}",
            workers.len(),
            cfg.workers
        );
    }
    let mut command = Command::new(std::env::current_exe().context("locate the bench binary")?);
    command.env(ROLE_VAR, "fanout-publisher").args([
        &pull,
        &publish,
        &replay,
        &cfg.pad.to_string(),
    ]);
    if cfg.rooms > 0 {
        command.arg(cfg.rooms.to_string());
    }
    let mut publisher = Proc::spawn("fanfare publisher", command)?;
    publisher.expect_line("ready", READY)?;
    Ok(Side {
        kind: Kind::Fanfare,
        protocol: Protocol::Fanfare,
        urls: vec![format!("ws://127.0.0.1:{port}/ws")],
        server_pids: workers,
        other_pids: vec![("broadcaster".into(), broadcaster.pid())],
        admin,
        hub_port: Some(port),
        egress_port: publish.rsplit(':').next().and_then(|p| p.parse().ok()),
        publisher: 2,
        procs: vec![broadcaster, demo, publisher],
    })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_redis() -> Result<(Proc, u16)> {
    let mut last = None;
    for _ in 0..3 {
        // redis-server cannot listen on port 0: take a free port, then start
        // it there (retried if another process took the port meanwhile).
        let port = free_port()?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "notice"]);
        let mut redis = Proc::spawn("redis-server", command)?;
        match redis.expect_matching(
            "Ready to accept connections",
            |l| l.contains("Ready to accept connections"),
            READY,
        ) {
            Ok(_) => return Ok((redis, port)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
}

fn node(dir: &Path, script: &str, args: &[&str], name: String) -> Result<Proc> {
    let mut command = Command::new("node");
    command.arg(dir.join(script)).args(args).current_dir(dir);
    Proc::spawn(name, command)
}

fn start_socketio(tools: &Tools, cfg: &SideConfig) -> Result<Side> {
    let (redis, redis_port) = start_redis()?;
    let port = redis_port;
    let url = format!("redis://127.0.0.1:{port}");
    let mut procs = vec![redis];
    let mut urls = Vec::new();
    let mut server_pids = Vec::new();
    for k in 0..cfg.workers {
        let mut p = node(
            &tools.socketio_dir,
            "server.js",
            &[&url],
            format!("socket.io server {k}"),
        )?;
        let port = ready_port(&mut p)?;
        urls.push(format!(
            "ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        ));
        server_pids.push(p.pid());
        procs.push(p);
    }
    let (pad, rooms) = (cfg.pad.to_string(), cfg.rooms.to_string());
    let mut args = vec![url.as_str(), pad.as_str()];
    if cfg.rooms > 0 {
        args.push(&rooms);
    }
    let mut publisher = node(
        &tools.socketio_dir,
        "publisher.js",
        &args,
        "socket.io redis-emitter publisher".into(),
    )?;
    publisher.expect_line("ready", READY)?;
    procs.push(publisher);
    let redis_pid = procs[0].pid();
    Ok(Side {
        kind: Kind::SocketIo,
        protocol: Protocol::SocketIo,
        urls,
        server_pids,
        other_pids: vec![("redis".into(), redis_pid)],
        admin: None,
        hub_port: None,
        egress_port: Some(redis_port),
        publisher: procs.len() - 1,
        procs,
    })
}

fn start_floor(cfg: &SideConfig) -> Result<Side> {
    let mut command = Command::new(std::env::current_exe().context("locate the bench binary")?);
    command
        .env(ROLE_VAR, "floor")
        .args([cfg.pad.to_string(), cfg.floor_threads.to_string()]);
    if cfg.rooms > 0 {
        command.arg(cfg.rooms.to_string());
    }
    let mut floor = Proc::spawn("floor", command)?;
    let port = ready_port(&mut floor)?;
    Ok(Side {
        kind: Kind::Floor,
        protocol: Protocol::Floor,
        urls: vec![format!("ws://127.0.0.1:{port}/")],
        server_pids: vec![floor.pid()],
        other_pids: Vec::new(),
        admin: None,
        hub_port: None,
        egress_port: None,
        publisher: 0,
        procs: vec![floor],
    })
}
