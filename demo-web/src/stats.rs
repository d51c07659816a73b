//! What the dashboards draw: every worker publishes its numbers on
//! `metrics.worker.<id>` each second, the supervisor publishes the embedded
//! broadcaster's (or, for child and external broadcasters, what their admin
//! `/stats` says, with pid, up/down and links) on `metrics.broadcaster.<id>`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use fanfare_client::hub::{CloseCause, Hub};
use std::collections::HashMap;
use std::sync::Arc;

use fanfare_client::{Client, ClientOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::Target;
use crate::fleet::Node;
use crate::sysinfo::{rss_bytes, CpuSampler};

const PERIOD: Duration = Duration::from_secs(1);

/// Publishes this worker's numbers every second until `shutdown`.
/// `broadcasters`: the pub endpoints it uses, preferred one first.
pub async fn worker_stats(
    client: Client,
    hub: Hub,
    broadcasters: Vec<String>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PERIOD);
    let mut cpu = CpuSampler::new();
    let m = hub.metrics();
    let (mut last_in, mut last_out) = (0u64, 0u64);
    let topic = format!("metrics.worker.{}", hub.worker_id());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (ev_in, out) = (m.events_in.get(), m.deliveries.get());
        let errors: u64 = fanfare_client::hub::protocol::ErrorCode::ALL
            .iter()
            .map(|c| m.errors(*c))
            .sum();
        let v = json!({
            "worker": hub.worker_id(),
            "pid": std::process::id(),
            "cpu": (cpu.sample() * 10.0).round() / 10.0,
            "rss": rss_bytes(),
            "ws": m.connections_open.get(),
            "in_rate": ev_in - last_in,
            "out_rate": out - last_out,
            "events_in": ev_in,
            "deliveries": out,
            "publishes": m.publishes.get(),
            "slow": m.closes(CloseCause::SlowConsumer),
            "gaps": m.gaps_sent.get(),
            "resumes": m.recoveries_exact.get() + m.recoveries_partial.get(),
            "resumes_partial": m.recoveries_partial.get(),
            "errors": errors,
            "lag_ms": m.lag_us.load(Relaxed) as f64 / 1000.0,
            "broadcasters": broadcasters,
            "connected": client.is_connected(),
        });
        (last_in, last_out) = (ev_in, out);
        if let Err(e) = client.publish_json(&topic, &v).await {
            tracing::debug!(error = %e, "stats publish failed");
        }
    }
}

/// Publishes the embedded broadcaster's numbers every second until `shutdown`.
pub async fn broadcaster_stats(
    b: fanfare_broadcaster::MetricsView,
    target: Target,
    shutdown: CancellationToken,
) {
    let pub_endpoint = target.publish.clone();
    let opts =
        ClientOptions::new(target.pull, target.publish, target.replay).publisher_id("supervisor");
    let client = match Client::connect(opts).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no broadcaster stats");
            return;
        }
    };
    let mut tick = tokio::time::interval(PERIOD);
    let (mut last_in, mut last_out) = (0u64, 0u64);
    let topic = format!("metrics.broadcaster.{}", b.id());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = b.snapshot();
        let (i, o) = (s.ingress_messages, s.egress_messages);
        let v = json!({
            "id": b.id(),
            "pid": std::process::id(),
            "up": true,
            "embedded": true,
            "epoch": b.epoch(),
            "in_rate": i.saturating_sub(last_in),
            "out_rate": o.saturating_sub(last_out),
            "ingress": i,
            "egress": o,
            "dropped": s.egress_dropped,
            "subscribers": s.subscribers,
            "last_seq": s.last_seq,
            "history": s.history_messages,
            "history_oldest": s.history_oldest,
            "replays": s.replay_requests,
            "pub": pub_endpoint,
            "links": [],
        });
        (last_in, last_out) = (i, o);
        let _ = client.publish_json(&topic, &v).await;
    }
    client.close().await;
}

/// A broadcaster the Fabric view shows, read from its admin `/stats`.
pub struct Watched {
    /// Admin `host:port`.
    admin: String,
    /// Its PUB endpoint (how workers name it).
    publish: String,
    /// Pid / up / restarts, for the demo's own children.
    node: Option<Arc<Node>>,
    /// Last totals, for rates: ingress, egress, and per link `messages_in`.
    last: (u64, u64),
    last_links: HashMap<String, u64>,
}

impl Watched {
    /// One of `--broadcasters N`.
    pub fn child(node: Arc<Node>) -> Self {
        let (admin, publish) = (node.endpoints.admin.clone(), node.endpoints.publish.clone());
        Self::new(admin, publish, Some(node))
    }

    /// A running broadcaster given with `--broadcaster …,admin=…`.
    pub fn external(admin: String, publish: String) -> Self {
        Self::new(admin, publish, None)
    }

    fn new(admin: String, publish: String, node: Option<Arc<Node>>) -> Self {
        Self {
            admin,
            publish,
            node,
            last: (0, 0),
            last_links: HashMap::new(),
        }
    }

    /// This second's numbers (`None` when its id is not known yet).
    async fn sample(&mut self) -> Option<(String, serde_json::Value)> {
        let status = self.node.as_ref().map(|n| n.status());
        let fetched = if status.as_ref().is_none_or(|s| s.up) {
            admin_get_json(&self.admin, "/stats").await.ok()
        } else {
            None
        };
        let id = fetched
            .as_ref()
            .and_then(|v| v.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or_else(|| self.node.as_ref().map(|n| n.id.clone()))?;
        let Some(s) = fetched else {
            return Some((
                id.clone(),
                json!({
                    "id": id,
                    "up": false,
                    "pid": status.as_ref().and_then(|s| s.pid),
                    "restarts": status.as_ref().map_or(0, |s| s.restarts),
                    "admin": self.admin,
                    "pub": self.publish,
                    "links": [],
                }),
            ));
        };
        let n = |v: &serde_json::Value, a: &str, b: &str| {
            v.get(a)
                .and_then(|x| x.get(b))
                .and_then(|x| x.as_u64())
                .unwrap_or(0)
        };
        let (i, o) = (n(&s, "ingress", "messages"), n(&s, "egress", "messages"));
        // A restarted broadcaster counts from 0 again: no negative rates.
        let rate = |now: u64, last: u64| now.saturating_sub(last);
        let mut links = Vec::new();
        let mut seen = HashMap::new();
        for l in s
            .get("links")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .take(64)
        {
            let name = l
                .get("name")
                .and_then(|x| x.as_str())
                .unwrap_or("?")
                .to_owned();
            let m_in = l.get("messages_in").and_then(|x| x.as_u64()).unwrap_or(0);
            let last = self.last_links.get(&name).copied().unwrap_or(m_in);
            let g = |k: &str| l.get(k).cloned().unwrap_or(serde_json::Value::Null);
            links.push(json!({
                "name": name,
                "peer": g("peer_origin"),
                "state": g("state"),
                "rate_in": rate(m_in, last),
                "messages_in": m_in,
                "republished": g("republished"),
                "duplicates": g("duplicates"),
                "repaired": g("repaired"),
                "unrecoverable": g("unrecoverable"),
                "reconnects": g("reconnects"),
                "interest": g("interest"),
                "lag_ms": l.get("lag_last_us").and_then(|x| x.as_u64()).unwrap_or(0) as f64 / 1000.0,
            }));
            seen.insert(name, m_in);
        }
        self.last_links = seen;
        let v = json!({
            "id": id,
            "up": true,
            "pid": status.as_ref().and_then(|s| s.pid),
            "restarts": status.as_ref().map_or(0, |s| s.restarts),
            "admin": self.admin,
            "pub": self.publish,
            "epoch": s.get("epoch").cloned().unwrap_or(serde_json::Value::Null),
            "in_rate": rate(i, self.last.0),
            "out_rate": rate(o, self.last.1),
            "ingress": i,
            "egress": o,
            "dropped": n(&s, "egress", "dropped"),
            "subscribers": n(&s, "egress", "subscribers"),
            "last_seq": s.get("last_seq").cloned().unwrap_or(serde_json::Value::Null),
            "history": n(&s, "history", "messages"),
            "history_oldest": s.get("history").and_then(|h| h.get("oldest")).cloned(),
            "replays": n(&s, "replay", "requests"),
            "links": links,
            "origins": s.get("origins").and_then(|o| o.as_array()).map(|o| o.iter().take(64).cloned().collect::<Vec<_>>()),
        });
        self.last = (i, o);
        Some((id, v))
    }
}

/// Publishes every watched broadcaster's numbers (from its `/stats`, with
/// up/down, pid and its links) every second until `shutdown`, through a
/// client of all `targets` (so it fails over too).
pub async fn fleet_stats(
    mut watched: Vec<Watched>,
    targets: Vec<Target>,
    shutdown: CancellationToken,
) {
    if watched.is_empty() {
        return;
    }
    let opts = ClientOptions::with_broadcasters(
        targets.into_iter().map(|t| (t.pull, t.publish, t.replay)),
    )
    .publisher_id("supervisor");
    let client = match Client::connect(opts).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no broadcaster stats");
            return;
        }
    };
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        for w in &mut watched {
            if let Some((id, v)) = w.sample().await {
                // Plain publish: a stats sample lost in a failover is
                // replaced by the next one a second later.
                let _ = client
                    .publish_json(&format!("metrics.broadcaster.{id}"), &v)
                    .await;
            }
        }
    }
    client.close().await;
}

/// Largest admin response read.
const ADMIN_MAX_BYTES: u64 = 1024 * 1024;

/// GETs `path` from a broadcaster's admin server (HTTP/1.0, so no chunked
/// body): at most 1 s and [`ADMIN_MAX_BYTES`].
async fn admin_get_json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        tcp.take(ADMIN_MAX_BYTES).read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(1), get).await??;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers"))?;
    let head = String::from_utf8_lossy(&buf[..split]);
    anyhow::ensure!(
        head.split_whitespace().nth(1) == Some("200"),
        "GET {path}: {}",
        head.lines().next().unwrap_or("")
    );
    Ok(serde_json::from_slice(&buf[split + 4..])?)
}
