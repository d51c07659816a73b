//! `--broadcasters N` (N ≥ 2): N federated broadcaster processes, supervised.
//!
//! Start-up: every broadcaster is first started on port 0 with no peers, so
//! that each announces its real endpoints on its readiness line; then each
//! is restarted on those same ports with `--peer` to the others' PUB
//! endpoints (full mesh or ring), learning their replay endpoints from their
//! heartbeats. From then on a broadcaster that exits for any reason (e.g.
//! SIGKILL) is started again on the same ports with the same peers, after a
//! short backoff: it comes back with a new epoch, its peers' links reconnect
//! to it and the workers' clients find it again.
//!
//! Each broadcaster runs under a *guard* (this binary, hidden `guard`
//! subcommand) that owns it and kills it when its stdin closes, so the
//! broadcasters stop with the supervisor even if the supervisor is killed.
//! The pid the demo reports is the broadcaster's own.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio_util::sync::CancellationToken;

/// How long a broadcaster may take to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Restart backoff: first wait, and the most it doubles to.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A broadcaster that ran this long is considered healthy again (backoff reset).
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// How the broadcasters link to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// Every broadcaster `--peer`s every other one.
    Mesh,
    /// Broadcaster i `--peer`s its two ring neighbours (links both ways).
    Ring,
}

/// One broadcaster's endpoints, from its readiness line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Ingress PULL.
    pub pull: String,
    /// Egress PUB.
    pub publish: String,
    /// Replay ROUTER.
    pub replay: String,
    /// Admin HTTP `host:port`.
    pub admin: String,
}

impl Endpoints {
    /// Parses `ready pull=… pub=… replay=… admin=…`.
    fn parse(line: &str) -> anyhow::Result<Self> {
        let (mut pull, mut publish, mut replay, mut admin) = (None, None, None, None);
        for kv in line.split_whitespace() {
            match kv.split_once('=') {
                Some(("pull", v)) => pull = Some(v.to_owned()),
                Some(("pub", v)) => publish = Some(v.to_owned()),
                Some(("replay", v)) => replay = Some(v.to_owned()),
                Some(("admin", v)) => {
                    admin = Some(v.trim_start_matches("http://").to_owned());
                }
                _ => {}
            }
        }
        match (pull, publish, replay, admin) {
            (Some(pull), Some(publish), Some(replay), Some(admin)) => Ok(Self {
                pull,
                publish,
                replay,
                admin,
            }),
            _ => bail!("not a broadcaster readiness line: {line:?}"),
        }
    }
}

/// What the dashboards show of one broadcaster.
#[derive(Debug, Clone)]
pub struct Status {
    /// Its pid while it runs.
    pub pid: Option<u32>,
    /// Running and ready.
    pub up: bool,
    /// Times started after the initial start.
    pub restarts: u32,
}

/// One supervised broadcaster.
pub struct Node {
    /// Its origin id (`b1` …).
    pub id: String,
    /// Its endpoints (fixed across restarts).
    pub endpoints: Endpoints,
    /// The PUB endpoints it `--peer`s.
    pub peers: Vec<String>,
    /// Pid, up/down, restarts.
    pub status: Mutex<Status>,
}

impl Node {
    /// A copy of its status.
    pub fn status(&self) -> Status {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        match self.status.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

/// The running broadcasters and their supervisor tasks.
pub struct Fleet {
    /// The broadcasters, `b1` … `bN`.
    pub nodes: Vec<Arc<Node>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Settings every broadcaster gets.
#[derive(Debug, Clone)]
pub struct FleetArgs {
    /// The broadcaster binary.
    pub bin: PathBuf,
    /// How many.
    pub count: usize,
    /// How they link.
    pub topology: Topology,
    /// Messages kept in each one's history.
    pub history: usize,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
}

/// A guarded broadcaster process.
struct Running {
    /// The guard (its stdin held in `stdin`: closing it stops both).
    guard: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    endpoints: Endpoints,
}

impl Running {
    async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.guard.wait())
            .await
            .is_err()
        {
            let _ = self.guard.kill().await;
        }
    }
}

impl Fleet {
    /// Starts `count` linked broadcasters; returns once all are ready with
    /// their peers configured.
    pub async fn start(args: FleetArgs, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let n = args.count.max(1);
        let ids: Vec<String> = (1..=n).map(|i| format!("b{i}")).collect();
        // 1. Port 0, no peers: learn the endpoints.
        let mut first = Vec::new();
        for id in &ids {
            let r = spawn(&args, id, None, &[])
                .await
                .with_context(|| format!("starting broadcaster {id}"))?;
            first.push(r);
        }
        let endpoints: Vec<Endpoints> = first.iter().map(|r| r.endpoints.clone()).collect();
        for r in first {
            r.stop().await;
        }
        // 2. The same ports, with peers.
        let mut nodes = Vec::new();
        let mut tasks = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let peers: Vec<String> = peers_of(i, n, args.topology)
                .into_iter()
                .map(|j| endpoints[j].publish.clone())
                .collect();
            let e = endpoints[i].clone();
            let r = spawn_retrying(&args, id, &e, &peers).await?;
            let node = Arc::new(Node {
                id: id.clone(),
                endpoints: e,
                peers,
                status: Mutex::new(Status {
                    pid: Some(r.pid),
                    up: true,
                    restarts: 0,
                }),
            });
            announce(&node, r.pid);
            tasks.push(tokio::spawn(supervise(
                args.clone(),
                node.clone(),
                r,
                shutdown.child_token(),
            )));
            nodes.push(node);
        }
        Ok(Self { nodes, tasks })
    }

    /// Waits for the supervisor tasks (after `shutdown` was cancelled): every
    /// broadcaster is stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The indices broadcaster `i` of `n` `--peer`s.
fn peers_of(i: usize, n: usize, topology: Topology) -> Vec<usize> {
    match topology {
        Topology::Mesh => (0..n).filter(|&j| j != i).collect(),
        Topology::Ring => {
            let mut v = vec![(i + 1) % n, (i + n - 1) % n];
            v.sort_unstable();
            v.dedup();
            v.retain(|&j| j != i);
            v
        }
    }
}

/// Prints the line the tests (and people) read: which pid is which broadcaster.
fn announce(node: &Node, pid: u32) {
    let e = &node.endpoints;
    println!(
        "broadcaster id={} pid={pid} pull={} pub={} replay={} admin=http://{} peers={}",
        node.id,
        e.pull,
        e.publish,
        e.replay,
        e.admin,
        node.peers.join(",")
    );
}

/// Restarts `node` whenever it exits, until `shutdown`.
async fn supervise(
    args: FleetArgs,
    node: Arc<Node>,
    mut running: Running,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = tokio::time::Instant::now();
        let status = tokio::select! {
            s = running.guard.wait() => s,
            _ = shutdown.cancelled() => {
                running.stop().await;
                node.set(|s| { s.up = false; s.pid = None; });
                return;
            }
        };
        node.set(|s| {
            s.up = false;
            s.pid = None;
        });
        tracing::warn!(broadcaster = %node.id, pid = running.pid, ?status, "broadcaster exited; restarting it");
        println!("broadcaster id={} pid={} exited", node.id, running.pid);
        if started.elapsed() > HEALTHY_AFTER {
            backoff = BACKOFF_MIN;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            match spawn_retrying(&args, &node.id, &node.endpoints, &node.peers).await {
                Ok(r) => {
                    node.set(|s| {
                        s.up = true;
                        s.pid = Some(r.pid);
                        s.restarts = s.restarts.saturating_add(1);
                    });
                    announce(&node, r.pid);
                    running = r;
                    break;
                }
                Err(e) => {
                    tracing::error!(broadcaster = %node.id, error = %format!("{e:#}"), "restart failed")
                }
            }
        }
    }
}

/// Starts on fixed ports; the old process's sockets may still be closing,
/// so a failed bind is retried for a few seconds.
async fn spawn_retrying(
    args: &FleetArgs,
    id: &str,
    e: &Endpoints,
    peers: &[String],
) -> anyhow::Result<Running> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match spawn(args, id, Some(e), peers).await {
            Ok(r) if r.endpoints == *e => return Ok(r),
            Ok(r) => {
                let got = r.endpoints.clone();
                r.stop().await;
                bail!("broadcaster {id} came up on other endpoints: {got:?}");
            }
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(broadcaster = id, error = %format!("{err:#}"), "start failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(err.context(format!("starting broadcaster {id}"))),
        }
    }
}

/// Starts one guarded broadcaster and waits for its readiness line.
async fn spawn(
    args: &FleetArgs,
    id: &str,
    at: Option<&Endpoints>,
    peers: &[String],
) -> anyhow::Result<Running> {
    let any = Endpoints {
        pull: "tcp://127.0.0.1:0".into(),
        publish: "tcp://127.0.0.1:0".into(),
        replay: "tcp://127.0.0.1:0".into(),
        admin: "127.0.0.1:0".into(),
    };
    let e = at.unwrap_or(&any);
    let exe = std::env::current_exe().context("finding my own binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("guard")
        .arg("--")
        .arg(&args.bin)
        .args(["--id", id, "--pull", &e.pull, "--pub", &e.publish])
        .args(["--replay", &e.replay, "--admin", &e.admin])
        .arg(format!("--history-count={}", args.history))
        .arg(format!("--heartbeat-ms={}", args.heartbeat_ms));
    for p in peers {
        cmd.arg(format!("--peer={p}"));
    }
    if std::env::var_os("FANFARE_LOG").is_none() {
        cmd.env("FANFARE_LOG", "warn");
    }
    let mut guard = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.bin.display()))?;
    let stdin = guard.stdin.take();
    let out = guard.stdout.take().context("guard stdout")?;
    let mut lines = BufReader::new(out).lines();
    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        let mut pid = None;
        while let Some(line) = lines.next_line().await? {
            if let Some(p) = line.strip_prefix("guard pid=") {
                pid = p.trim().parse::<u32>().ok();
            } else if line.starts_with("ready ") {
                let e = Endpoints::parse(&line)?;
                return Ok((pid.context("no pid from the guard")?, e));
            } else {
                println!("[{id}] {line}");
            }
        }
        bail!("broadcaster {id} exited before it was ready")
    })
    .await;
    let (pid, endpoints) = match ready {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let _ = guard.kill().await;
            return Err(e);
        }
        Err(_) => {
            let _ = guard.kill().await;
            bail!("broadcaster {id} not ready within {READY_TIMEOUT:?}");
        }
    };
    // Keep draining its stdout (it says little after the readiness line).
    let tag = id.to_owned();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[{tag}] {line}");
        }
    });
    Ok(Running {
        guard,
        stdin,
        pid,
        endpoints,
    })
}

/// The hidden `guard` subcommand: runs `command`, prints `guard pid=PID`,
/// passes its stdout through, exits with it, and stops it (SIGTERM, then
/// SIGKILL after 3 s) when stdin closes.
pub async fn guard(command: Vec<String>) -> anyhow::Result<()> {
    let (bin, rest) = command.split_first().context("guard: no command")?;
    let mut child = Command::new(bin)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("guard: starting {bin}"))?;
    let pid = child.id().context("guard: no pid")?;
    println!("guard pid={pid}");
    tokio::select! {
        s = child.wait() => {
            use std::os::unix::process::ExitStatusExt as _;
            let s = s?;
            // Like a shell: 128 + the signal that ended it.
            std::process::exit(s.code().or_else(|| s.signal().map(|n| 128 + n)).unwrap_or(1));
        }
        _ = crate::worker::stdin_closed() => {
            if let Some(p) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
            if tokio::time::timeout(Duration::from_secs(3), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_and_ring_peers() {
        assert_eq!(peers_of(0, 3, Topology::Mesh), vec![1, 2]);
        assert_eq!(peers_of(1, 2, Topology::Ring), vec![0]);
        assert_eq!(peers_of(0, 4, Topology::Ring), vec![1, 3]);
    }

    #[test]
    fn parses_the_readiness_line() {
        let e = Endpoints::parse(
            "ready pull=tcp://127.0.0.1:1 pub=tcp://127.0.0.1:2 replay=tcp://127.0.0.1:3 admin=http://127.0.0.1:4",
        )
        .unwrap();
        assert_eq!(e.admin, "127.0.0.1:4");
        assert!(Endpoints::parse("ready pull=x").is_err());
    }
}
