//! Closes for cause, against the real demo. Browsers that stop reading are
//! closed within about 2 s of their queue filling (bounded kernel send
//! buffer, short close wait), and one that reads again right after the cut
//! reads its 4008. A browser closed for abuse while still sending reads its
//! 1008, not a reset.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fanfare_tests::demo::{metric, Demo};
use fanfare_tests::websocket::Ws;
use serde_json::json;

#[tokio::test]
async fn a_browser_that_stops_reading_is_cut_quickly_and_can_read_its_4008() -> Result<()> {
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "100000"]).await?;
    let mut p = demo.connect_where(|_| true).await?;
    let worker = p.worker.clone();
    let mut never = demo.connect_where(|_| true).await?;
    let mut later = demo.connect_where(|_| true).await?;
    never.subscribe(&["load.#"], None).await?;
    later.subscribe(&["load.#"], None).await?;
    let slow = format!("fanfare_hub_closed_total{{worker=\"{worker}\",cause=\"slow_consumer\"}}");
    let open = format!("fanfare_hub_connections_open{{worker=\"{worker}\"}}");
    let opened = metric(&demo.metrics_of(&worker).await?, &open).unwrap_or(0);

    // 2 KiB events until the worker reports both cut.
    let pad = "x".repeat(2048);
    let started = Instant::now();
    let mut i = 0u64;
    let cut_at = loop {
        for _ in 0..200 {
            p.publish("load.x", json!({ "i": i, "pad": pad })).await?;
            i += 1;
        }
        let text = demo.metrics_of(&worker).await?;
        if metric(&text, &slow) == Some(2) {
            break Instant::now();
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("not cut after {i} events");
        }
    };
    // The one that reads again gets what was written, then 4008.
    let close = later.close_code(Duration::from_secs(10)).await?;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4008));
    // Both connections are gone from the worker soon after the cut.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let gone_at = loop {
        let now = metric(&demo.metrics_of(&worker).await?, &open).unwrap_or(u64::MAX);
        if now + 2 <= opened {
            break Instant::now();
        }
        if cut_at.elapsed() > Duration::from_secs(10) {
            bail!("{now} connections open, {opened} before the cut");
        }
        tick.tick().await;
    };
    let took = gone_at - cut_at;
    eprintln!("{i} events sent; connections gone {took:?} after the cut");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    drop(never);
    let _ = Ws::connect(&demo.ws_url()).await?; // the worker still serves
    Ok(())
}

#[tokio::test]
async fn a_browser_closed_for_abuse_while_still_sending_reads_its_1008() -> Result<()> {
    let demo = Demo::start(&["--workers", "1"]).await?;
    let mut ws = demo.connect_where(|_| true).await?;
    // Far more bad frames than the error budget (burst 20), sent before
    // reading anything: the hub closes while they are still arriving.
    for _ in 0..400 {
        ws.send_text("{not json".repeat(50)).await?;
    }
    let close = ws.close_code(Duration::from_secs(10)).await?;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
    Ok(())
}
