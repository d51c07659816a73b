//! A client that stops reading is closed with 4008 ("slow consumer") while
//! the others, on the same worker and on another, keep their pace.

use std::time::{Duration, Instant};

use fanfare_tests::demo::{metric, Demo};
use serde_json::json;

#[tokio::test]
async fn a_slow_client_is_closed_with_4008_and_the_others_keep_pace() -> anyhow::Result<()> {
    let demo = Demo::start(&[
        "--workers",
        "2",
        "--publish-rate",
        "100000",
        "--ws-queue",
        "128",
    ])
    .await?;
    let mut slow = demo.connect_where(|_| true).await?;
    let slow_worker = slow.worker.clone();
    let mut same = demo.connect_where(|w| w == slow_worker).await?;
    let mut other = demo.connect_where(|w| w != slow_worker).await?;
    slow.subscribe(&["load.#"], None).await?;
    same.subscribe(&["load.#"], None).await?;
    other.subscribe(&["load.#"], None).await?;

    // 8 KiB events in batches of 50, the fast clients reading each batch,
    // until the worker reports the slow client closed; then the slow client
    // reads what was written before the close, and the close frame: 4008.
    let pad = "x".repeat(8 * 1024);
    let mut p = demo.connect_where(|_| true).await?;
    let started = Instant::now();
    let slow_label =
        format!("fanfare_hub_closed_total{{worker=\"{slow_worker}\",cause=\"slow_consumer\"}}");
    let mut next = 0u64;
    let mut closed_at = None;
    while next < 6000 {
        for i in next..next + 50 {
            p.publish("load.x", json!({ "i": i, "pad": pad })).await?;
        }
        for c in [&mut same, &mut other] {
            for i in next..next + 50 {
                let ev = c.recv().await?;
                assert_eq!(ev["data"]["i"], i, "client on {} fell behind", c.worker);
            }
        }
        next += 50;
        if closed_at.is_none() && next.is_multiple_of(500) {
            let text = demo.metrics_of(&slow_worker).await?;
            if metric(&text, &slow_label) == Some(1) {
                closed_at = Some(next);
                let close = slow.close_code(Duration::from_secs(30)).await?;
                assert_eq!(
                    close.map(|c| u16::from(c.code)),
                    Some(4008),
                    "slow client close code"
                );
                // The others go on for a while after it.
                let stop_at = next + 500;
                while next < stop_at {
                    for i in next..next + 50 {
                        p.publish("load.x", json!({ "i": i, "pad": pad })).await?;
                    }
                    for c in [&mut same, &mut other] {
                        for i in next..next + 50 {
                            let ev = c.recv().await?;
                            assert_eq!(ev["data"]["i"], i, "client on {} fell behind", c.worker);
                        }
                    }
                    next += 50;
                }
                break;
            }
        }
    }
    assert!(closed_at.is_some(), "the slow client was never closed");
    let other_text = demo.metrics_of(&other.worker).await?;
    let other_label = format!(
        "fanfare_hub_closed_total{{worker=\"{}\",cause=\"slow_consumer\"}}",
        other.worker
    );
    assert_eq!(
        metric(&other_text, &other_label),
        Some(0),
        "nobody else was closed"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
    Ok(())
}
