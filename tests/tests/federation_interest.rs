//! Interest-only forwarding in a ring of 3 (links both ways): a topic
//! nobody subscribes to is never sent over any link; a subscribed one is;
//! when its last subscriber leaves, every link stops carrying it within a
//! few hundred milliseconds (the retraction is a newer announcement; the
//! bound stated in PROTOCOL.md is one lease, 2 s) — interest does not keep
//! itself alive around the ring.

use std::time::{Duration, Instant};

use anyhow::Result;
use fanfare_tests::fabric::{Fabric, PySub};
use fanfare_tests::wait::eventually;

const N: usize = 300;

async fn carried(f: &Fabric) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    for k in 0..f.links.len() {
        v.push(f.link_metric(k, "fanfare_link_messages_total").await?);
    }
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_wanted_topics_cross_links_and_interest_retracts_in_a_ring() -> Result<()> {
    let Some(py) = fanfare_tests::python::python() else {
        return Ok(());
    };
    let links = [(0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)];
    let f = Fabric::start(3, &links, &[]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    // Nobody subscribes: links ask only for heartbeats.
    f.wait_interest(1.0, Duration::from_secs(10)).await?;
    f.publish_on(&py, 1, "quiet.b1", N).await?;
    // A subscriber of `loud.` at b0.
    let sub = PySub::start_prefix(
        &py,
        &f.nodes[0].endpoints().publish,
        "loud.",
        N,
        &["loud.b1".to_owned()],
    )
    .await?;
    f.wait_interest(2.0, Duration::from_secs(20)).await?;
    f.publish_on(&py, 1, "quiet.b1", N).await?;
    f.publish_on(&py, 1, "loud.b1", N).await?;
    let checker = tokio::spawn(sub.finish(Duration::from_secs(60)));
    assert_eq!(checker.await??, N as u64);
    let before = carried(&f).await?;
    eprintln!("per link, messages carried with one loud. subscriber: {before:?}");
    // Only loud.b1 crossed: at most N per link (quiet.b1 never did), and the
    // direct link b0 <- b1 carried all of it.
    assert!(before.iter().all(|&c| c <= N as f64), "{before:?}");
    assert_eq!(before[0], N as f64, "link b0 <- b1 carried {}", before[0]);
    for k in 0..f.links.len() {
        let filtered = f.link_metric(k, "fanfare_link_filtered_total").await?;
        let lost = f.link_metric(k, "fanfare_link_unrecoverable_total").await?;
        assert_eq!(lost, 0.0, "link {k}: filtering counted as loss");
        eprintln!("link {k}: {filtered} seqs filtered upstream");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_retracts_when_the_last_subscriber_leaves() -> Result<()> {
    let Some(py) = fanfare_tests::python::python() else {
        return Ok(());
    };
    let links = [(0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)];
    let f = Fabric::start(3, &links, &[]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    let sub = PySub::start_prefix(
        &py,
        &f.nodes[0].endpoints().publish,
        "loud.",
        N,
        &["loud.b1".to_owned()],
    )
    .await?;
    f.wait_interest(2.0, Duration::from_secs(20)).await?;
    sub.stop().await?;
    let left = Instant::now();
    // Every link drops back to the heartbeat prefix alone.
    let fr = &f;
    for k in 0..f.links.len() {
        eventually(
            Duration::from_secs(4),
            &format!("link {k} retracts"),
            || async move {
                let n = fr.link_metric(k, "fanfare_link_interest").await.ok()?;
                (n == 1.0).then_some(())
            },
        )
        .await?;
    }
    let retracted = left.elapsed();
    eprintln!("interest retracted on every link {retracted:?} after the last subscriber left");
    assert!(retracted < Duration::from_secs(2), "{retracted:?}");
    let before = carried(&f).await?;
    f.publish_on(&py, 1, "loud.b1", N).await?;
    // Give a message time to cross if it were going to (heartbeats keep
    // flowing meanwhile, so the links are live).
    let hb = f.link_metric(0, "fanfare_link_heartbeats_total").await?;
    eventually(
        Duration::from_secs(5),
        "two more heartbeats over b0 <- b1",
        || async {
            let n = f
                .link_metric(0, "fanfare_link_heartbeats_total")
                .await
                .ok()?;
            (n >= hb + 2.0).then_some(())
        },
    )
    .await?;
    let after = carried(&f).await?;
    assert_eq!(
        before, after,
        "messages crossed links after interest retracted"
    );
    Ok(())
}
