//! What the dashboards draw: every worker publishes its numbers on
//! `metrics.worker.<id>` each second, the supervisor publishes the embedded
//! broadcaster's on `metrics.broadcaster.<id>`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use fanfare_client::hub::{CloseCause, Hub};
use fanfare_client::{Client, ClientOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::sysinfo::{rss_bytes, CpuSampler};

const PERIOD: Duration = Duration::from_secs(1);

/// Publishes this worker's numbers every second until `shutdown`.
pub async fn worker_stats(client: Client, hub: Hub, shutdown: CancellationToken) {
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
        });
        (last_in, last_out) = (ev_in, out);
        if let Err(e) = client.publish_json(&topic, &v).await {
            tracing::debug!(error = %e, "stats publish failed");
        }
    }
}

/// Publishes the embedded broadcaster's numbers every second until `shutdown`.
pub async fn broadcaster_stats(
    metrics: Option<fanfare_broadcaster::MetricsView>,
    (pull, publish, replay): (String, String, String),
    shutdown: CancellationToken,
) {
    let Some(b) = metrics else { return };
    let opts = ClientOptions::new(pull, publish, replay).publisher_id("supervisor");
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
            "epoch": b.epoch(),
            "in_rate": i - last_in,
            "out_rate": o - last_out,
            "ingress": i,
            "egress": o,
            "dropped": s.egress_dropped,
            "subscribers": s.subscribers,
            "last_seq": s.last_seq,
            "history": s.history_messages,
            "history_oldest": s.history_oldest,
            "replays": s.replay_requests,
        });
        (last_in, last_out) = (i, o);
        let _ = client.publish_json(&topic, &v).await;
    }
    client.close().await;
}
