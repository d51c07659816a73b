//! Federation failure cases with real broadcasters: a self-link and a
//! hop-limit overflow are detected and counted; a link cut (TCP proxy) and
//! restored catches up from the peer's replay with no loss or duplicate; a
//! middle broadcaster SIGKILLed and restarted (new epoch) rejoins.

use std::time::{Duration, Instant};

use anyhow::Result;
use fanfare_tests::fabric::{topic_of, Fabric};
use fanfare_tests::wait::eventually;

const N: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_link_is_detected_and_stopped() -> Result<()> {
    if fanfare_tests::python::python().is_none() {
        return Ok(());
    }
    let f = Fabric::start(1, &[(0, 0)], &[]).await?;
    eventually(Duration::from_secs(15), "self-link detected", || async {
        let n = f
            .link_metric(0, "fanfare_link_self_detected_total")
            .await
            .ok()?;
        let state = f.link_metric(0, "fanfare_link_state").await.ok()?;
        (n >= 1.0 && state == 2.0).then_some(())
    })
    .await?;
    assert!(
        f.nodes[0].log().contains("self-link"),
        "self-link not logged"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_limit_overflow_is_counted() -> Result<()> {
    let Some(py) = fanfare_tests::python::python() else {
        return Ok(());
    };
    // 1 <- 0, 2 <- 1, with --hop-limit 1: what 0 publishes reaches 1 (hops
    // 0) and is dropped at 2 (hops 1).
    let f = Fabric::start(3, &[(1, 0), (2, 1)], &["--hop-limit", "1"]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    let subs = vec![
        fanfare_tests::fabric::PySub::start(
            &py,
            &f.nodes[1].endpoints().publish,
            N,
            &[topic_of(0)],
        )
        .await?,
    ];
    // A subscriber at 2 too, so that its link asks for the messages (it
    // gets none: they are all past the hop limit).
    let _at_2 = fanfare_tests::fabric::PySub::start(
        &py,
        &f.nodes[2].endpoints().publish,
        N,
        &[topic_of(0)],
    )
    .await?;
    f.wait_interest(2.0, Duration::from_secs(20)).await?;
    f.publish(&py, &[0], N).await?;
    for s in subs {
        assert_eq!(s.finish(Duration::from_secs(60)).await?, N as u64);
    }
    eventually(
        Duration::from_secs(10),
        "hop-limit drops counted",
        || async {
            let n = f
                .link_metric(1, "fanfare_link_hop_limit_drops_total")
                .await
                .ok()?;
            (n >= N as f64).then_some(n)
        },
    )
    .await?;
    assert_eq!(
        f.link_metric(1, "fanfare_link_republished_total").await?,
        0.0
    );
    assert!(
        f.nodes[2].log().contains("hop limit"),
        "hop-limit drop not logged"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_catches_up_from_replay() -> Result<()> {
    let Some(py) = fanfare_tests::python::python() else {
        return Ok(());
    };
    let f = Fabric::start(2, &[(1, 0)], &[]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    let topics = [topic_of(0)];
    let sub =
        fanfare_tests::fabric::PySub::start(&py, &f.nodes[1].endpoints().publish, 2 * N, &topics)
            .await?;
    f.wait_interest(2.0, Duration::from_secs(20)).await?;
    f.publish(&py, &[0], N).await?;
    eventually(Duration::from_secs(20), "first half across", || async {
        let n = f
            .link_metric(0, "fanfare_link_republished_total")
            .await
            .ok()?;
        (n >= N as f64).then_some(())
    })
    .await?;
    f.links[0].proxy.cut();
    f.publish_from(&py, &[0], N, N).await?;
    tokio::time::sleep(Duration::from_secs(10)).await; // the cut lasts 10 s (the figure)
    let restored = Instant::now();
    f.links[0].proxy.restore();
    assert_eq!(sub.finish(Duration::from_secs(60)).await?, 2 * N as u64);
    let caught_up = restored.elapsed();
    let repaired = f.link_metric(0, "fanfare_link_repaired_total").await?;
    let lost = f.link_metric(0, "fanfare_link_unrecoverable_total").await?;
    let reconnects = f.link_metric(0, "fanfare_link_reconnects_total").await?;
    eprintln!("cut 10 s: caught up {caught_up:?} after restore; {repaired} repaired, {lost} unrecoverable, {reconnects} reconnects");
    assert!(repaired >= N as f64, "second half not repaired: {repaired}");
    assert_eq!(lost, 0.0);
    assert!(reconnects >= 1.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_middle_broadcaster_rejoins() -> Result<()> {
    let Some(py) = fanfare_tests::python::python() else {
        return Ok(());
    };
    // 0 <-> 1 <-> 2; publishers into both ends, before, during and after
    // the middle one is down.
    let mut f = Fabric::start(3, &[(1, 0), (0, 1), (2, 1), (1, 2)], &[]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    let topics = [topic_of(0), topic_of(2)];
    let ends = [
        fanfare_tests::fabric::PySub::start(&py, &f.nodes[0].endpoints().publish, 3 * N, &topics)
            .await?,
        fanfare_tests::fabric::PySub::start(&py, &f.nodes[2].endpoints().publish, 3 * N, &topics)
            .await?,
    ];
    f.wait_interest(2.0, Duration::from_secs(20)).await?;
    f.publish(&py, &[0, 2], N).await?;
    // Wait until the first part crossed the middle both ways.
    eventually(Duration::from_secs(20), "first part across", || async {
        let a = f
            .link_metric(2, "fanfare_link_republished_total")
            .await
            .ok()?;
        let b = f
            .link_metric(1, "fanfare_link_republished_total")
            .await
            .ok()?;
        (a >= N as f64 && b >= N as f64).then_some(())
    })
    .await?;
    let old_epoch = f.node_metric(1, "fanfare_epoch").await?;
    f.nodes[1].sigkill()?;
    let killed = Instant::now();
    // Published while the middle is down: the restarted middle never held
    // these; the ends repair them from the origin's own replay endpoint
    // (learned from its heartbeats).
    f.publish_from(&py, &[0, 2], N, N).await?;
    f.nodes[1].restart().await?;
    assert_ne!(f.node_metric(1, "fanfare_epoch").await?, old_epoch);
    f.wait_links_up(Duration::from_secs(30)).await?;
    // Both ends' links into the middle are back.
    eventually(
        Duration::from_secs(30),
        "ends relinked to the new middle",
        || async {
            let n = f.node_metric(1, "fanfare_subscribers").await.ok()?;
            (n >= 2.0).then_some(())
        },
    )
    .await?;
    f.wait_interest(2.0, Duration::from_secs(30)).await?;
    let rejoined = killed.elapsed();
    f.publish_from(&py, &[0, 2], 2 * N, N).await?;
    for s in ends {
        assert_eq!(s.finish(Duration::from_secs(90)).await?, 6 * N as u64);
    }
    for k in 0..f.links.len() {
        let mut line = format!("link {k}:");
        for m in [
            "messages",
            "republished",
            "duplicates",
            "held",
            "repaired",
            "unrecoverable",
            "filtered",
            "repair_requests",
        ] {
            let v = f.link_metric(k, &format!("fanfare_link_{m}_total")).await?;
            line += &format!(" {m}={v}");
        }
        eprintln!("{line}");
    }
    let mut lost = 0.0;
    for k in 0..f.links.len() {
        lost += f.link_metric(k, "fanfare_link_unrecoverable_total").await?;
    }
    assert_eq!(lost, 0.0);
    eprintln!("middle broadcaster SIGKILLed, restarted and relinked in {rejoined:?}; what was published meanwhile was repaired from the origins");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_is_detected_by_missing_heartbeats() -> Result<()> {
    let Some(py) = fanfare_tests::python::python() else {
        return Ok(());
    };
    let f = Fabric::start(2, &[(1, 0)], &["--peer-stall-ms", "1000"]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    let sub = fanfare_tests::fabric::PySub::start(
        &py,
        &f.nodes[1].endpoints().publish,
        2 * N,
        &[topic_of(0)],
    )
    .await?;
    f.wait_interest(2.0, Duration::from_secs(20)).await?;
    f.publish(&py, &[0], N).await?;
    let reconnects = f.link_metric(0, "fanfare_link_reconnects_total").await?;
    f.nodes[0].sigstop()?;
    let stopped = Instant::now();
    let detected = eventually(Duration::from_secs(10), "stall detected", || async {
        let state = f.link_metric(0, "fanfare_link_state").await.ok()?;
        let r = f
            .link_metric(0, "fanfare_link_reconnects_total")
            .await
            .ok()?;
        (state == 0.0 && r > reconnects).then(|| stopped.elapsed())
    })
    .await?;
    f.nodes[0].sigcont()?;
    assert!(f.nodes[1].log().contains("stalled"), "stall not logged");
    f.publish_from(&py, &[0], N, N).await?;
    assert_eq!(sub.finish(Duration::from_secs(60)).await?, 2 * N as u64);
    eprintln!(
        "peer SIGSTOPped: link noticed the missing heartbeats after {detected:?} (stall bound 1 s)"
    );
    Ok(())
}
