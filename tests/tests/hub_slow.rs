//! A client that stops reading is closed with 4008 ("slow consumer") while
//! the others, on the same worker and on another, keep their pace.

mod hub_support;

use std::time::{Duration, Instant};

use hub_support::Demo;
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

    // 3000 × 8 KiB in batches of 50, the fast clients reading each batch:
    // far more than the slow client's queue and socket buffers hold.
    const N: u64 = 3000;
    const BATCH: u64 = 50;
    let pad = "x".repeat(8 * 1024);
    let mut p = demo.connect_where(|_| true).await?;
    let started = Instant::now();
    for b in 0..N / BATCH {
        for i in b * BATCH..(b + 1) * BATCH {
            p.publish("load.x", json!({ "i": i, "pad": pad })).await?;
        }
        for c in [&mut same, &mut other] {
            for i in b * BATCH..(b + 1) * BATCH {
                let ev = c.recv().await?;
                assert_eq!(ev["data"]["i"], i, "client on {} fell behind", c.worker);
            }
        }
    }
    let fast_time = started.elapsed();
    // The slow client now reads: what was written before the close, then 4008.
    let close = slow.close_code(Duration::from_secs(30)).await?;
    let code = close.map(|c| u16::from(c.code));
    assert_eq!(code, Some(4008), "slow client close code");
    assert!(
        fast_time < Duration::from_secs(60),
        "fast clients took {fast_time:?}"
    );
    Ok(())
}
