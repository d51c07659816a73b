//! Child processes of the benchmark: spawned with piped stdio, read line by
//! line on a thread so every wait has a timeout, killed on drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How many stderr lines of a child are kept for error messages.
const STDERR_TAIL: usize = 20;

/// Set to `1`, every child's stderr line is also printed on the bench's
/// stderr as it comes, prefixed with the child's name (to see what the
/// servers logged during a level, e.g. a stall).
pub const ECHO_VAR: &str = "FANFARE_BENCH_ECHO_STDERR";

/// A running child process. Dropping it kills the process and reaps it.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Arc<AtomicBool>,
}

impl Proc {
    /// Spawns `command` with stdin, stdout and stderr piped.
    pub fn spawn(name: impl Into<String>, mut command: Command) -> Result<Proc> {
        let name = name.into();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("child stdout is not piped")?;
        let stderr = child.stderr.take().context("child stderr is not piped")?;
        // Unbounded on purpose: a child prints a handful of lines, and the
        // reader thread must never block the child.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let tail = Arc::clone(&stderr_tail);
        let stderr_done = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&stderr_done);
        let echo = std::env::var_os(ECHO_VAR).is_some_and(|v| v == "1");
        let prefix = name.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[{prefix}] {line}");
                }
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
            done.store(true, Ordering::Release);
        });
        Ok(Proc {
            name,
            child,
            stdin,
            stdout: rx,
            stderr_tail,
            stderr_done,
        })
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    #[allow(dead_code)] // used by the fanout bench only
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a stdout line starting with `prefix` and
    /// returns it; other lines are skipped.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        self.expect_matching(prefix, |line| line.starts_with(prefix), timeout)
    }

    /// Waits up to `timeout` for a stdout line for which `wanted` holds
    /// (`what` names it in errors) and returns it; other lines are skipped.
    pub fn expect_matching(
        &mut self,
        what: &str,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        let prefix = what;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "{}: no `{prefix}` line within {timeout:?}{}",
                        self.name,
                        self.stderr_note()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: give the child a moment to exit, for its status and stderr.
                    let _ = self.wait_exit(Duration::from_secs(1));
                    let status = match self.child.try_wait() {
                        Ok(Some(status)) => status.to_string(),
                        _ => "still running".to_owned(),
                    };
                    bail!(
                        "{}: closed its stdout ({status}) before printing `{prefix}`{}",
                        self.name,
                        self.stderr_note()
                    )
                }
            }
        }
    }

    /// Writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", self.name))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("{}: write stdin", self.name))
    }

    /// Closes the child's stdin (its signal to finish).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for the child to exit, polling every 5 ms.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(5));
        }
        bail!("{}: still running after {timeout:?}", self.name)
    }

    /// Fails (with the tail of its stderr) if the child has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{}: exited during the run ({status}){}",
                self.name,
                self.stderr_note()
            ),
        }
    }

    fn stderr_note(&self) -> String {
        // Once the child has exited, its stderr reader finishes soon: wait for it (bounded).
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.stderr_done.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n  {}", tail.join("\n  "))
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads `key=value` out of a line such as `ready pull=tcp://… pub=tcp://…`.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// The `pull`, `pub` and `replay` endpoints of a broadcaster's ready line
/// (the fanout and memory benches; forwarding also starts forwarders that
/// have no replay endpoint, and reads its fields one by one).
#[allow(dead_code)]
pub fn broadcaster_endpoints(ready: &str) -> Result<(String, String, String)> {
    let endpoint = |key: &str| -> Result<String> {
        field(ready, key)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("broadcaster: no `{key}=` in `{ready}`"))
    };
    Ok((endpoint("pull")?, endpoint("pub")?, endpoint("replay")?))
}

/// The port of the demo's `ready http://host:port` line (the fanout and
/// memory benches).
#[allow(dead_code)]
pub fn demo_port(ready: &str) -> Result<u16> {
    ready
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| anyhow!("demo: no port in {ready:?}"))
}

/// CPU time (user + system) of `pid` in µs, from /proc (0 if unreadable).
pub fn cpu_us(pid: u32) -> u64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state is field 3, utime 14, stime 15.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks.saturating_mul(1_000_000) / clock_ticks()
}

fn clock_ticks() -> u64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; getconf says.
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// The machine's CPU ticks from /proc/stat: (stolen by the hypervisor, all).
/// Two readings give the share of a period a shared VM did not get to run.
pub fn cpu_steal_ticks() -> (u64, u64) {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<u64> = s
                .lines()
                .next()?
                .strip_prefix("cpu ")?
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is in user).
            Some((*f.get(7)?, f.iter().take(8).sum()))
        })
        .unwrap_or((0, 0))
}

/// The share (0..1) of the machine's CPU time stolen between two readings of
/// [`cpu_steal_ticks`] (0 when nothing was counted).
pub fn steal_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        0.0
    } else {
        after.0.saturating_sub(before.0) as f64 / total as f64
    }
}
