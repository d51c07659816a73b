//! The `broadcaster` binary as a child process of a test.
//!
//! [`BroadcasterProcess::spawn`] binds every socket on port 0, waits for the
//! readiness line (with a timeout) and parses the real endpoints. Stderr (the
//! logs) and any later stdout go to a file under `target/test-logs` for
//! post-mortem; when a test panics, the tail of that log is printed. The
//! child is SIGKILLed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use tokio::sync::oneshot;

use crate::binary::{broadcaster_binary, log_dir};
use crate::endpoints::{Endpoints, READY_PREFIX};

/// How long a broadcaster may take to print its readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `broadcaster` child process.
pub struct BroadcasterProcess {
    child: Option<Child>,
    endpoints: Endpoints,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    nofile: Option<u64>,
}

impl BroadcasterProcess {
    /// Starts a broadcaster on port 0 everywhere (admin HTTP included) with
    /// `extra_args` (e.g. `["--id", "b1"]`) and waits for its readiness line.
    pub async fn spawn(extra_args: &[&str]) -> Result<Self> {
        Self::spawn_on(Ports::ANY, extra_args, &[]).await
    }

    /// Like [`Self::spawn`], with environment variables set for the child
    /// (e.g. `FANFARE_ID`; kept on [`Self::restart`]).
    pub async fn spawn_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        Self::spawn_on(Ports::ANY, extra_args, env).await
    }

    /// Like [`Self::spawn`], with `--admin off`: no admin HTTP endpoint
    /// (`endpoints().admin` is `None`).
    pub async fn spawn_without_admin(extra_args: &[&str]) -> Result<Self> {
        Self::spawn_on(Ports::ANY_WITHOUT_ADMIN, extra_args, &[]).await
    }

    /// Like [`Self::spawn`], under `ulimit -n nofile` (soft and hard limit
    /// on open files), through `sh`.
    pub async fn spawn_with_open_files(nofile: u64, extra_args: &[&str]) -> Result<Self> {
        Self::spawn_limited(Ports::ANY, extra_args, &[], Some(nofile)).await
    }

    async fn spawn_on(ports: Ports, extra_args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        Self::spawn_limited(ports, extra_args, env, None).await
    }

    async fn spawn_limited(
        ports: Ports,
        extra_args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Result<Self> {
        let extra: Vec<String> = extra_args.iter().map(|s| (*s).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (child, endpoints, log_path) = start(ports, &extra, &env, nofile).await?;
        Ok(Self {
            child: Some(child),
            endpoints,
            extra_args: extra,
            env,
            log_path,
            nofile,
        })
    }

    /// The endpoints announced in the readiness line.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Where this process's stderr (and stdout after the readiness line) goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM (graceful shutdown); see [`Self::wait_exit`].
    pub fn sigterm(&self) -> Result<()> {
        self.signal(Signal::TERM)
    }

    /// Sends SIGINT (graceful shutdown, as Ctrl-C).
    pub fn sigint(&self) -> Result<()> {
        self.signal(Signal::INT)
    }

    /// Sends SIGSTOP: the process stops reading its sockets (and handling
    /// signals) until [`Self::sigcont`], so a test can leave data unread in
    /// them deterministically.
    pub fn sigstop(&self) -> Result<()> {
        self.signal(Signal::STOP)
    }

    /// Sends SIGCONT (after [`Self::sigstop`]).
    pub fn sigcont(&self) -> Result<()> {
        self.signal(Signal::CONT)
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self.pid().context("broadcaster is not running")?;
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .context("bad pid")?;
        kill_process(pid, sig).context("kill")?;
        Ok(())
    }

    /// SIGKILLs the child and reaps it.
    pub fn sigkill(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("broadcaster is not running")?;
        let _ = child.kill();
        Ok(child.wait()?)
    }

    /// Waits (polling) until the child exits, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().context("broadcaster is not running")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("broadcaster did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs the broadcaster if it runs, then starts it again on the same
    /// ports (passed explicitly; admin off if it was) with the same extra
    /// arguments.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.sigkill()?;
        }
        let ports = Ports::of(&self.endpoints)?;
        // The old listening sockets are closed by the kernel on exit; a bind
        // may still race with it, so retry within the readiness deadline.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match start(ports, &self.extra_args, &self.env, self.nofile).await {
                Ok((child, endpoints, log_path)) => {
                    if Ports::of(&endpoints)? != ports {
                        bail!("restarted on other ports: {endpoints:?}");
                    }
                    self.child = Some(child);
                    self.endpoints = endpoints;
                    self.log_path = log_path;
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("fanfare-tests: restart attempt failed, retrying: {e:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for BroadcasterProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- broadcaster log {} (last {} lines) ----",
                self.log_path.display(),
                tail.len()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The ports a broadcaster binds (0 = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ports {
    /// Pull, pub, replay.
    zmq: [u16; 3],
    /// Admin HTTP; `None` = `--admin off`.
    admin: Option<u16>,
}

impl Ports {
    const ANY: Self = Self {
        zmq: [0; 3],
        admin: Some(0),
    };
    const ANY_WITHOUT_ADMIN: Self = Self {
        zmq: [0; 3],
        admin: None,
    };

    /// The ports a running broadcaster announced.
    fn of(e: &Endpoints) -> Result<Self> {
        Ok(Self {
            zmq: e.ports()?,
            admin: e.admin_port()?,
        })
    }
}

/// Starts one child with the given ports and waits for readiness.
async fn start(
    ports: Ports,
    extra: &[String],
    env: &[(String, String)],
    nofile: Option<u64>,
) -> Result<(Child, Endpoints, PathBuf)> {
    let bin = broadcaster_binary()?;
    let log_path = next_log_path();
    let log = File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let [pull, publish, replay] = ports.zmq;
    let admin = ports
        .admin
        .map_or_else(|| "off".to_owned(), |p| format!("127.0.0.1:{p}"));
    let mut command = match nofile {
        None => Command::new(&bin),
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                .arg(&bin);
            c
        }
    };
    let mut child = command
        .args(["--pull", &format!("tcp://127.0.0.1:{pull}")])
        .args(["--pub", &format!("tcp://127.0.0.1:{publish}")])
        .args(["--replay", &format!("tcp://127.0.0.1:{replay}")])
        .args(["--admin", &admin])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "FANFARE_LOG",
            std::env::var("FANFARE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.try_clone()?))
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let (ready_tx, ready_rx) = oneshot::channel();
    std::thread::spawn(move || pump_stdout(stdout, log, ready_tx));
    let line = match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
        Ok(Ok(line)) => line,
        outcome => {
            let _ = child.kill();
            let status = child.wait().ok();
            let why = if outcome.is_err() {
                "timed out"
            } else {
                "stdout closed"
            };
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "broadcaster never printed its readiness line ({why}, exit {status:?}); log {}:\n{log}",
                log_path.display()
            );
        }
    };
    let endpoints = Endpoints::parse_ready(&line)?;
    Ok((child, endpoints, log_path))
}

/// Reads stdout: hands the readiness line over, copies everything else to the log.
fn pump_stdout(stdout: std::process::ChildStdout, mut log: File, ready: oneshot::Sender<String>) {
    let mut ready = Some(ready);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.starts_with(READY_PREFIX) {
            if let Some(tx) = ready.take() {
                let _ = tx.send(line);
                continue;
            }
        }
        let _ = writeln!(log, "[stdout] {line}");
    }
}

fn next_log_path() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let test = std::thread::current().name().unwrap_or("test").replace(
        |c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-',
        "_",
    );
    log_dir().join(format!("{test}-{}-{n}.log", std::process::id()))
}
