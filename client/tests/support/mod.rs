//! Test harness: a real `broadcaster` process on port 0, waited for by its
//! `ready …` line, killed on drop.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fanfare_client::{
    Client, ClientEvent, ClientOptions, Delivery, EventStream, Message, Subscription,
};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Upper bound for any single receive in these tests.
pub const RECV: Duration = Duration::from_secs(15);

/// A running broadcaster process.
pub struct Broadcaster {
    child: Child,
    pub pull: String,
    pub publish: String,
    pub replay: String,
    args: Vec<String>,
}

/// The `broadcaster` binary next to the test executable
/// (`target/debug/deps/<test>` → `target/debug/broadcaster`).
pub fn binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .ok_or_else(|| anyhow!("no target dir above {}", exe.display()))?;
    let bin = dir.join("broadcaster");
    if !bin.exists() {
        bail!(
            "{} is missing: build it first with `cargo build -p fanfare-broadcaster`",
            bin.display()
        );
    }
    Ok(bin)
}

impl Broadcaster {
    /// Starts one on port 0 everywhere with extra flags.
    pub async fn start(extra: &[&str]) -> Result<Self> {
        let mut args: Vec<String> = ["--pull", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(
            [
                "--replay",
                "tcp://127.0.0.1:0",
                "--admin",
                "off",
                "--id",
                "b1",
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(args).await
    }

    async fn spawn(args: Vec<String>) -> Result<Self> {
        let mut child = Command::new(binary()?)
            .args(&args)
            .env("FANFARE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn broadcaster")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(RECV, lines.next_line())
            .await
            .context("no ready line in time")??
            .ok_or_else(|| anyhow!("broadcaster exited before ready"))?;
        let field = |k: &str| -> Result<String> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {k} in {line:?}"))
        };
        Ok(Self {
            pull: field("pull=")?,
            publish: field("pub=")?,
            replay: field("replay=")?,
            child,
            args,
        })
    }

    /// SIGKILLs it and starts a new one on the same endpoints (a new epoch).
    pub async fn kill_and_restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.restart().await
    }

    /// SIGKILLs it and waits for it to be gone.
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Starts a new one on the same endpoints (after `kill`).
    pub async fn restart(&mut self) -> Result<()> {
        let mut args = self.args.clone();
        for (flag, ep) in [
            ("--pull", &self.pull),
            ("--pub", &self.publish),
            ("--replay", &self.replay),
        ] {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = ep.clone();
            }
        }
        let fresh = Self::spawn(args).await?;
        *self = fresh;
        Ok(())
    }

    /// Client options for this broadcaster (fast timeouts for tests).
    pub fn options(&self) -> ClientOptions {
        ClientOptions::new(&self.pull, &self.publish, &self.replay)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
            .connect_timeout(RECV)
    }

    /// A connected client.
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(self.options()).await?)
    }
}

/// The next delivery, or an error after [`RECV`].
pub async fn next(sub: &mut Subscription) -> Result<Delivery> {
    tokio::time::timeout(RECV, sub.next())
        .await
        .context("timed out waiting for a delivery")?
        .ok_or_else(|| anyhow!("subscription ended"))
}

/// The next delivery, which must be a message.
pub async fn next_message(sub: &mut Subscription) -> Result<Message> {
    match next(sub).await? {
        Delivery::Message(m) => Ok(m),
        other => bail!("expected a message, got {other:?}"),
    }
}

/// Waits for an event matching `f` (skipping others).
pub async fn wait_event(
    events: &mut EventStream,
    f: impl Fn(&ClientEvent) -> bool,
) -> Result<ClientEvent> {
    let deadline = tokio::time::Instant::now() + RECV;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .context("timed out waiting for an event")?
            .ok_or_else(|| anyhow!("events ended"))?;
        if f(&ev) {
            return Ok(ev);
        }
    }
}
