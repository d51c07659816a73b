//! The admin HTTP endpoint and configuration sources: `/healthz`, `/stats`
//! and `/metrics` agree with the stamps on the wire; unknown paths are 404;
//! a `--config` TOML file is honoured.

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_tests::binary::log_dir;
use fanfare_tests::http::{http_get, http_get_ok};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::{metrics, sockets, RECV_TIMEOUT};

#[tokio::test]
async fn healthz_stats_and_metrics_agree_with_the_wire() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "admin-1"]).await?;
    let admin = b.endpoints().admin_addr()?.to_owned();
    ensure!(
        http_get(&admin, "/healthz").await?.status == 200,
        "/healthz is 200"
    );
    ensure!(
        http_get(&admin, "/nope").await?.status == 404,
        "unknown path is 404"
    );

    let mut sub = sockets::sub(&b.endpoints().publish, &["adm."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "adm").await?;
    sockets::publish(&mut push, "adm.x", Bytes::from_static(b"hello")).await?;
    let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;

    let stats: serde_json::Value =
        serde_json::from_str(&http_get_ok(&admin, "/stats").await?).context("/stats is JSON")?;
    ensure!(stats["id"] == "admin-1", "{stats}");
    ensure!(
        stats["epoch"].as_u64() == Some(m.epoch),
        "stats epoch == stamp epoch: {stats}"
    );
    ensure!(
        stats["last_seq"].as_u64() >= Some(m.seq),
        "stats last_seq: {stats}"
    );

    let text = metrics::fetch(&admin).await?;
    ensure!(
        metrics::value(&text, "fanfare_epoch", &[]) == Some(m.epoch as f64),
        "fanfare_epoch"
    );
    ensure!(
        metrics::value(&text, "fanfare_last_seq", &[]).is_some_and(|v| v >= m.seq as f64),
        "fanfare_last_seq"
    );
    ensure!(
        metrics::value_or_zero(&text, "fanfare_ingress_messages_total", &[]) >= 2.0,
        "probe + message counted"
    );
    ensure!(
        metrics::value(&text, "fanfare_subscribers", &[]) == Some(1.0),
        "one subscriber"
    );
    // Egress bytes are the ZMTP bytes queued: each message at least its
    // 40-byte stamp head, its origin id, topic and payload.
    let sent = metrics::value_or_zero(&text, "fanfare_egress_messages_total", &[]);
    let bytes = metrics::value_or_zero(&text, "fanfare_egress_bytes_total", &[]);
    let least = (40 + "admin-1".len() + "adm.x".len() + "hello".len()) as f64;
    ensure!(
        sent >= 2.0 && bytes >= sent * least,
        "{bytes} egress bytes for {sent} messages (at least {least} each)"
    );
    Ok(())
}

#[tokio::test]
async fn config_file_sets_id_and_history() -> Result<()> {
    let path = log_dir().join(format!("config-{}.toml", std::process::id()));
    std::fs::write(&path, "id = \"from-file\"\nhistory-count = 3\n")?;
    let b = BroadcasterProcess::spawn(&["--config", path.to_str().context("utf-8 path")?]).await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["cfg."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "cfg").await?;
    for i in 0..5 {
        sockets::publish(&mut push, "cfg.x", Bytes::from(format!("{i}"))).await?;
    }
    let mut last = None;
    for _ in 0..5 {
        last = Some(sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?);
    }
    let last = last.context("messages")?;
    ensure!(
        last.origin == "from-file",
        "origin from the config file: {}",
        last.origin
    );
    let text = metrics::fetch(b.endpoints().admin_addr()?).await?;
    ensure!(
        metrics::value(&text, "fanfare_history_messages", &[]) == Some(3.0),
        "history-count from the config file bounds the history"
    );
    Ok(())
}
