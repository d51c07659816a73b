//! Federated broadcasters for the `federation_*` tests: N real broadcaster
//! processes (`--id b0` … on port 0), wired by `--peer` through one
//! [`LinkProxy`] per link (so cycles can be wired before the peers exist,
//! and any one link can be cut), pyzmq subscribers on every broadcaster and
//! pyzmq publishers into some of them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::link_proxy::LinkProxy;
use crate::process::BroadcasterProcess;
use crate::wait::eventually;

/// Heartbeat interval the fabric's broadcasters use (fast tail repair).
pub const HEARTBEAT_MS: &str = "200";

/// One link: broadcaster `to` runs `--peer` through `proxy` to `from`'s PUB.
pub struct Link {
    /// The broadcaster that receives.
    pub to: usize,
    /// The broadcaster whose PUB it subscribes to.
    pub from: usize,
    /// The proxy in between.
    pub proxy: LinkProxy,
}

/// A running fabric.
pub struct Fabric {
    /// The broadcasters, `b0` … `b{n-1}`.
    pub nodes: Vec<BroadcasterProcess>,
    /// The links, in the order given.
    pub links: Vec<Link>,
}

impl Fabric {
    /// Starts `n` broadcasters; `(to, from)` in `links` means `to --peer from`.
    pub async fn start(n: usize, links: &[(usize, usize)], extra: &[&str]) -> Result<Self> {
        let mut ls = Vec::new();
        for &(to, from) in links {
            ls.push(Link {
                to,
                from,
                proxy: LinkProxy::start().await?,
            });
        }
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = format!("b{i}");
            let mut args: Vec<String> = vec!["--id".into(), id, "--heartbeat-ms".into()];
            args.push(HEARTBEAT_MS.into());
            args.extend(extra.iter().map(|s| s.to_string()));
            for l in ls.iter().filter(|l| l.to == i) {
                args.push("--peer".into());
                args.push(l.proxy.endpoint().into());
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(BroadcasterProcess::spawn(&refs).await?);
        }
        for l in &ls {
            l.proxy.set_upstream(&nodes[l.from].endpoints().publish)?;
        }
        Ok(Self { nodes, links: ls })
    }

    /// Link `k`'s label in its broadcaster's metrics (the `--peer` endpoint).
    pub fn label(&self, k: usize) -> &str {
        self.links[k].proxy.endpoint()
    }

    /// `name` (no labels) of broadcaster `i`, from its `/metrics`.
    pub async fn node_metric(&self, i: usize, name: &str) -> Result<f64> {
        let text = crate::metrics::fetch(self.nodes[i].endpoints().admin_addr()?).await?;
        Ok(crate::metrics::value_or_zero(&text, name, &[]))
    }

    /// `name{link="…"}` of link `k`, from its broadcaster's `/metrics`.
    pub async fn link_metric(&self, k: usize, name: &str) -> Result<f64> {
        let node = &self.nodes[self.links[k].to];
        let text = crate::metrics::fetch(node.endpoints().admin_addr()?).await?;
        Ok(crate::metrics::value_or_zero(
            &text,
            name,
            &[("link", self.label(k))],
        ))
    }

    /// Waits until every link is up and has brought a heartbeat since `since`
    /// (per link: the `fanfare_link_heartbeats_total` to exceed).
    pub async fn wait_links_up(&self, timeout: Duration) -> Result<()> {
        for k in 0..self.links.len() {
            eventually(timeout, &format!("link {k} up"), || async move {
                let up = self.link_metric(k, "fanfare_link_state").await.ok()? == 1.0;
                let hb = self
                    .link_metric(k, "fanfare_link_heartbeats_total")
                    .await
                    .ok()?;
                (up && hb > 0.0).then_some(())
            })
            .await?;
        }
        Ok(())
    }

    /// Waits until every link subscribes to at least `min` prefixes at its
    /// peer (`fanfare_link_interest`: the heartbeat prefix plus the interest
    /// announced behind it): what subscribers want has reached every link.
    pub async fn wait_interest(&self, min: f64, timeout: Duration) -> Result<()> {
        for k in 0..self.links.len() {
            eventually(timeout, &format!("interest on link {k}"), || async move {
                let n = self.link_metric(k, "fanfare_link_interest").await.ok()?;
                (n >= min).then_some(())
            })
            .await?;
        }
        Ok(())
    }

    /// Starts a checking subscriber on every broadcaster for `topics`, `n`
    /// messages each; returns once each is live.
    pub async fn subscribers(&self, py: &Path, n: usize, topics: &[String]) -> Result<Vec<PySub>> {
        let mut subs = Vec::new();
        for node in &self.nodes {
            subs.push(PySub::start(py, &node.endpoints().publish, n, topics).await?);
        }
        Ok(subs)
    }

    /// Publishes `n` lines on `topic` into broadcaster `p` (pyzmq PUSH).
    pub async fn publish_on(&self, py: &Path, p: usize, topic: &str, n: usize) -> Result<()> {
        let pull = self.nodes[p].endpoints().pull.clone();
        crate::python::run_script(
            py,
            "push_lines.py",
            &[&pull, topic, &n.to_string()],
            Duration::from_secs(60),
        )
        .await?;
        Ok(())
    }

    /// Publishes `n` messages `line 0` … on `fed.b{p}` into each `p` in
    /// `publishers`, all at once, with pyzmq PUSH.
    pub async fn publish(&self, py: &Path, publishers: &[usize], n: usize) -> Result<()> {
        self.publish_from(py, publishers, 0, n).await
    }

    /// Like [`Self::publish`], lines `start` … `start + n - 1`.
    pub async fn publish_from(
        &self,
        py: &Path,
        publishers: &[usize],
        start: usize,
        n: usize,
    ) -> Result<()> {
        let runs = publishers.iter().map(|&p| {
            let pull = self.nodes[p].endpoints().pull.clone();
            let topic = topic_of(p);
            let count = n.to_string();
            let start = start.to_string();
            async move {
                crate::python::run_script(
                    py,
                    "push_lines.py",
                    &[&pull, &topic, &count, &start],
                    Duration::from_secs(60),
                )
                .await
            }
        });
        for r in futures::future::join_all(runs).await {
            r?;
        }
        Ok(())
    }
}

/// The topic publisher `p` uses.
pub fn topic_of(p: usize) -> String {
    format!("fed.b{p}")
}

/// A running `fed_sub.py`.
pub struct PySub {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    endpoint: String,
}

impl PySub {
    /// Starts it and waits for its `ready` line (a heartbeat came).
    pub async fn start(py: &Path, pub_ep: &str, n: usize, topics: &[String]) -> Result<Self> {
        Self::start_prefix(py, pub_ep, "fed.", n, topics).await
    }

    /// Like [`Self::start`], subscribing to `prefix` (the topics must start with it).
    pub async fn start_prefix(
        py: &Path,
        pub_ep: &str,
        prefix: &str,
        n: usize,
        topics: &[String],
    ) -> Result<Self> {
        let mut cmd = Command::new(py);
        cmd.arg(crate::python::script("fed_sub.py"))
            .args([pub_ep, prefix, &n.to_string()])
            .args(topics)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting fed_sub.py")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut s = Self {
            child,
            lines: BufReader::new(stdout).lines(),
            endpoint: pub_ep.to_owned(),
        };
        let line = s.line(Duration::from_secs(20)).await?;
        if line != "ready" {
            bail!("fed_sub.py at {pub_ep}: {line:?} instead of ready");
        }
        Ok(s)
    }

    async fn line(&mut self, timeout: Duration) -> Result<String> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(l))) => Ok(l),
            Ok(Ok(None)) => {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                bail!("fed_sub.py at {} ended: {err}", self.endpoint)
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!(
                "fed_sub.py at {}: no line within {timeout:?}",
                self.endpoint
            ),
        }
    }

    /// Stops it (the subscriber leaves).
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Waits for the verdict: `Ok(messages received)` when every topic came
    /// exactly once in order.
    pub async fn finish(mut self, timeout: Duration) -> Result<u64> {
        let line = self.line(timeout).await?;
        let n = line
            .strip_prefix("ok ")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("fed_sub.py at {}: {line:?}", self.endpoint))?;
        Ok(n)
    }
}
