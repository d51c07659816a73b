//! The server under test: the `broadcaster` binary and `fanfare-demo-web
//! --workers 1` on port 0, each waited for by its readiness line; the one
//! worker's pid (from its `/api/info`), VmRSS, open fds and Prometheus
//! samples.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::procs::{broadcaster_endpoints, demo_port, Proc};

/// How long a process may take to print its readiness line.
const READY: Duration = Duration::from_secs(60);
/// Every HTTP GET to the worker waits at most this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The binaries (`FANFARE_BROADCASTER_BIN`, `FANFARE_DEMO_BIN`, else
/// `<target>/release/…`).
pub struct Bins {
    /// `broadcaster`.
    pub broadcaster: PathBuf,
    /// `fanfare-demo-web`.
    pub demo: PathBuf,
}

impl Bins {
    /// Finds both binaries; fails saying how to build a missing one.
    pub fn find() -> Result<Bins> {
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::current_exe()
                .context("locate the bench binary")?
                .ancestors()
                .nth(3)
                .map(PathBuf::from)
                .context("bench binary is not under <target>/<profile>/deps")?,
        };
        let bin = |var: &str, name: &str| {
            std::env::var_os(var).map_or_else(|| target.join("release").join(name), PathBuf::from)
        };
        let bins = Bins {
            broadcaster: bin("FANFARE_BROADCASTER_BIN", "broadcaster"),
            demo: bin("FANFARE_DEMO_BIN", "fanfare-demo-web"),
        };
        for (path, package) in [
            (&bins.broadcaster, "fanfare-broadcaster"),
            (&bins.demo, "fanfare-demo-web"),
        ] {
            anyhow::ensure!(
                path.is_file(),
                "no binary at {}: `cargo build --release -p {package}` first \
                 (or set FANFARE_BROADCASTER_BIN / FANFARE_DEMO_BIN)",
                path.display()
            );
        }
        Ok(bins)
    }
}

/// A running broadcaster + one demo worker (killed on drop).
pub struct Server {
    /// The broadcaster's endpoints, for a fanfare-client publisher.
    pub pull: String,
    /// See `pull`.
    pub publish: String,
    /// See `pull`.
    pub replay: String,
    /// The websocket port.
    pub port: u16,
    /// The worker process (the demo supervisor's only child).
    pub worker_pid: u32,
    /// The broadcaster process.
    pub broadcaster_pid: u32,
    _procs: Vec<Proc>,
}

impl Server {
    /// Starts both; `worker_env` (`K=V` pairs) goes to the demo and its
    /// worker only, `demo_args` are added to the demo's command line.
    pub async fn start(
        bins: &Bins,
        worker_env: &[(String, String)],
        demo_args: &[String],
    ) -> Result<Server> {
        let mut command = Command::new(&bins.broadcaster);
        command
            .args(["--pull", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"])
            .args([
                "--replay",
                "tcp://127.0.0.1:0",
                "--admin",
                "off",
                "--id",
                "mem",
            ])
            .env("FANFARE_LOG", "warn");
        let mut broadcaster = Proc::spawn("broadcaster", command)?;
        let ready = broadcaster.expect_line("ready ", READY)?;
        let (pull, publish, replay) = broadcaster_endpoints(&ready)?;
        let mut command = Command::new(&bins.demo);
        command
            .args(["--port", "0", "--workers", "1"])
            .arg(format!(
                "--broadcaster=pull={pull},pub={publish},replay={replay}"
            ))
            .args(demo_args)
            .env("RUST_LOG", "warn")
            .envs(worker_env.iter().map(|(k, v)| (k, v)));
        let mut demo = Proc::spawn("fanfare-demo-web", command)?;
        let ready = demo.expect_line("ready http://", READY)?;
        let port = demo_port(&ready)?;
        let info = get(port, "/api/info").await?;
        let worker_pid = number_after(&info, "\"pid\":")
            .and_then(|p| u32::try_from(p).ok())
            .with_context(|| format!("no pid in /api/info: {info:?}"))?;
        Ok(Server {
            pull,
            publish,
            replay,
            port,
            worker_pid,
            broadcaster_pid: broadcaster.pid(),
            _procs: vec![broadcaster, demo],
        })
    }

    /// The worker's `fanfare_hub_connections_open`.
    pub async fn open_connections(&self) -> Result<u64> {
        let text = get(self.port, "/metrics").await?;
        text.lines()
            .find(|l| l.starts_with("fanfare_hub_connections_open"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .context("no fanfare_hub_connections_open in /metrics")
    }

    /// Waits (bounded) until the worker counts `n` open websockets.
    pub async fn wait_open(&self, n: u64, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = self.open_connections().await?;
            if open == n {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "worker shows {open} open websockets, expected {n}, after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    fanfare_tests::procfs::rss_kib(pid)
}

/// Open fds of `pid`.
pub fn fds(pid: u32) -> Result<usize> {
    fanfare_tests::procfs::open_fds(pid)
}

/// `GET path` on the worker: the whole response (headers and body).
async fn get(port: u16, path: &str) -> Result<String> {
    tokio::time::timeout(HTTP_TIMEOUT, async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        anyhow::Ok(body)
    })
    .await
    .with_context(|| format!("GET {path} timed out"))?
}

/// The digits after `key` in `text`.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = text.get(text.find(key)? + key.len()..)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}
