//! Federation in every shape: ring of 3 (both ways), chain of 4, star of 5,
//! full mesh of 4, and a mesh with a duplicate link. Real broadcasters
//! linked with `--peer`, a pyzmq subscriber on every one, pyzmq publishers
//! into several: every subscriber sees every message exactly once, in
//! publish order; no link carries more messages than were published.

use std::time::Duration;

use anyhow::Result;
use fanfare_tests::fabric::{topic_of, Fabric};

/// Messages per publisher.
const N: usize = 500;

/// Runs one topology: `(to, from)` links, publishers into `publishers`.
async fn exactly_once(n: usize, links: &[(usize, usize)], publishers: &[usize]) -> Result<Fabric> {
    let Some(py) = fanfare_tests::python::python() else {
        anyhow::bail!("no python");
    };
    let fabric = Fabric::start(n, links, &[]).await?;
    fabric.wait_links_up(Duration::from_secs(20)).await?;
    let topics: Vec<String> = publishers.iter().map(|&p| topic_of(p)).collect();
    let subs = fabric.subscribers(&py, N, &topics).await?;
    // Interest-only forwarding: wait until every link subscribes to `fed.`.
    fabric.wait_interest(2.0, Duration::from_secs(20)).await?;
    fabric.publish(&py, publishers, N).await?;
    let published = (N * publishers.len()) as f64;
    for s in subs {
        let got = s.finish(Duration::from_secs(120)).await?;
        assert_eq!(got as f64, published, "a subscriber got extra messages");
    }
    for k in 0..fabric.links.len() {
        let carried = fabric.link_metric(k, "fanfare_link_messages_total").await?;
        assert!(
            carried <= published,
            "link {k} carried {carried} messages for {published} published (a storm)"
        );
        let self_drops = fabric
            .link_metric(k, "fanfare_link_self_drops_total")
            .await?;
        let dups = fabric
            .link_metric(k, "fanfare_link_duplicates_total")
            .await?;
        eprintln!(
            "link {k} ({} <- {}): {carried} in, {dups} duplicates cut, {self_drops} own",
            fabric.links[k].to, fabric.links[k].from
        );
    }
    Ok(fabric)
}

fn has_python() -> bool {
    fanfare_tests::python::python().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_three_both_ways() -> Result<()> {
    if !has_python() {
        return Ok(());
    }
    let links = [(0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)];
    exactly_once(3, &links, &[0, 1, 2]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_four() -> Result<()> {
    if !has_python() {
        return Ok(());
    }
    // 0 <-> 1 <-> 2 <-> 3
    let links = [(1, 0), (0, 1), (2, 1), (1, 2), (3, 2), (2, 3)];
    exactly_once(4, &links, &[0, 3]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_of_five() -> Result<()> {
    if !has_python() {
        return Ok(());
    }
    // Hub 0, spokes 1..=4, both ways.
    let links: Vec<(usize, usize)> = (1..5).flat_map(|s| [(0, s), (s, 0)]).collect();
    exactly_once(5, &links, &[1, 4]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_of_four() -> Result<()> {
    if !has_python() {
        return Ok(());
    }
    let links: Vec<(usize, usize)> = (0..4)
        .flat_map(|a| (0..4).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    exactly_once(4, &links, &[0, 2]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_with_a_duplicate_link() -> Result<()> {
    if !has_python() {
        return Ok(());
    }
    // A triangle both ways, and 0 linked to 1 twice.
    let links = [(0, 1), (0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0)];
    let f = exactly_once(3, &links, &[1, 2]).await?;
    let dup = f
        .link_metric(0, "fanfare_link_duplicate_detected_total")
        .await?
        + f.link_metric(1, "fanfare_link_duplicate_detected_total")
            .await?;
    assert!(dup >= 1.0, "duplicate link not detected");
    // `broadcaster topo` at b0: its three links, the peers behind them, and
    // the origins it hears with the link they came through.
    let admin = f.nodes[0].endpoints().admin_url()?.to_owned();
    let out =
        fanfare_tests::cli::run_tool(&["topo", "--admin", &admin], None, Duration::from_secs(10))
            .await?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    eprintln!("{}", out.stdout);
    assert!(out.stdout.contains("broadcaster b0"), "{}", out.stdout);
    assert!(out.stdout.contains("links (3):"), "{}", out.stdout);
    assert!(
        out.stdout.contains("peer b1") && out.stdout.contains("peer b2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("DUPLICATE"), "{}", out.stdout);
    assert!(out.stdout.contains("origins heard (2):"), "{}", out.stdout);
    for o in ["b1", "b2"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(o) && l.contains("via"));
        assert!(
            line.is_some_and(|l| l.contains("seq 500")),
            "{o}: {}",
            out.stdout
        );
    }
    Ok(())
}
