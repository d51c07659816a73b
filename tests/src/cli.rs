//! Running the `broadcaster` binary's tools (`pub`, `tail`, `stats`) as
//! child processes, with timeouts and line-by-line stdout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::binary::broadcaster_binary;

/// Output of a finished tool run.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

/// Runs `broadcaster ARGS…` with `stdin` fed in, at most `timeout`.
pub async fn run_tool(
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<ToolOutput> {
    let bin = broadcaster_binary()?;
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {} {args:?}", bin.display()))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).await?;
        drop(pipe);
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("broadcaster {args:?} did not finish within {timeout:?}"))??;
    Ok(ToolOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A long-running tool (such as `tail`) whose stdout is read line by line.
pub struct RunningTool {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl RunningTool {
    /// Starts `broadcaster ARGS…`; stderr goes to `stderr_log`.
    pub fn spawn(args: &[&str], stderr_log: &Path) -> Result<Self> {
        let bin = broadcaster_binary()?;
        let log = std::fs::File::create(stderr_log)?;
        let mut child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {} {args:?}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The next stdout line, failing after `timeout` or at end of output.
    pub async fn next_line(&mut self, timeout: Duration) -> Result<String> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Err(_) => bail!("no output line within {timeout:?}"),
            Ok(Ok(Some(l))) => Ok(l),
            Ok(Ok(None)) => bail!("tool exited (stdout closed)"),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Waits for the tool to exit by itself, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("tool did not exit within {timeout:?}"))?
            .context("wait")
    }
}

/// One line of `tail`: `topic origin:epoch:seq payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailLine {
    /// Topic.
    pub topic: String,
    /// Origin id.
    pub origin: String,
    /// Epoch.
    pub epoch: u64,
    /// Seq.
    pub seq: u64,
    /// Payload (lossy text).
    pub payload: String,
}

impl TailLine {
    /// Parses a `tail` line.
    pub fn parse(line: &str) -> Result<Self> {
        let mut it = line.splitn(3, ' ');
        let topic = it.next().context("topic")?.to_owned();
        let pos = it.next().context("position")?;
        let payload = it.next().unwrap_or_default().to_owned();
        let mut p = pos.rsplitn(3, ':');
        let seq = p.next().context("seq")?.parse()?;
        let epoch = p.next().context("epoch")?.parse()?;
        let origin = p.next().context("origin")?.to_owned();
        Ok(Self {
            topic,
            origin,
            epoch,
            seq,
            payload,
        })
    }
}
