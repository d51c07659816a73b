//! Failover through fanfare-client with two independent, real broadcasters:
//! a publisher moves to the other broadcaster when the one in use is
//! SIGKILLed, re-sending what was not acknowledged; a subscriber through
//! both gets every confirmed message once, in per-publisher order; it keeps
//! receiving from one while the other is killed or stopped, with no loss and
//! no duplicates, and a stopped broadcaster's range is repaired from its
//! replay endpoint when it resumes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fanfare_client::{Client, ClientOptions};
use fanfare_tests::client::{
    collect_until, collect_until_all, confirmed_stream, indexed_payload, options, options_for,
    paced_stream, sync_subscriptions, wait_confirmed,
};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::RECV_TIMEOUT;
use futures::StreamExt;

/// Fast failure detection for tests.
fn quick(o: ClientOptions) -> ClientOptions {
    o.heartbeat_timeout(Duration::from_millis(600))
        .ack_timeout(Duration::from_millis(500))
}

async fn broadcaster(id: &str) -> Result<BroadcasterProcess> {
    BroadcasterProcess::spawn(&["--id", id, "--heartbeat-ms", "100"]).await
}

fn check_all_delivered(got: &fanfare_tests::client::Collected, n: u64) -> Result<()> {
    got.check_once_in_order()?;
    let delivered: HashSet<u64> = got.indices().into_iter().collect();
    let missing: Vec<u64> = (0..n).filter(|i| !delivered.contains(i)).collect();
    ensure!(
        missing.is_empty(),
        "{} confirmed messages never delivered (first {:?}); gaps {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        got.gaps
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_fails_over_when_the_broadcaster_in_use_is_killed() -> Result<()> {
    const N: u64 = 10_000;
    let mut a = broadcaster("fo-a").await?;
    let b = broadcaster("fo-b").await?;
    let subscriber = Client::connect(quick(options_for(&[&a, &b]))).await?;
    let publisher = Client::connect(quick(options_for(&[&a, &b]))).await?;
    let via_b = Client::connect(options(&b)).await?;
    let mut sub = subscriber.subscribe("fo.#").await?;
    // The subscription is in force at both broadcasters.
    sync_subscriptions(&publisher, &mut [&mut sub], "fo").await?;
    sync_subscriptions(&via_b, &mut [&mut sub], "fo").await?;

    let reader = tokio::spawn(async move { collect_until(&mut sub, N, RECV_TIMEOUT * 8).await });
    let confirmed = Arc::new(AtomicU64::new(0));
    let stream = tokio::spawn(confirmed_stream(
        publisher.clone(),
        "fo.x",
        0..N,
        64,
        confirmed.clone(),
    ));
    wait_confirmed(&confirmed, N / 3, RECV_TIMEOUT * 2).await?;
    a.sigkill()?;
    let killed_at = std::time::Instant::now();
    let at_kill = confirmed.load(Ordering::Relaxed);
    let confirmations = tokio::time::timeout(RECV_TIMEOUT * 6, stream)
        .await
        .context("every message confirmed")???;
    ensure!(
        at_kill < N,
        "killed mid-stream ({at_kill} of {N} confirmed)"
    );
    let by: HashSet<&str> = confirmations.iter().map(|(_, c)| &*c.origin).collect();
    ensure!(by.len() == 2, "confirmed by both: {by:?}");
    let last = publisher
        .publish_confirmed("fo.x", indexed_payload(N, 32))
        .await?;
    ensure!(&*last.origin == "fo-b", "published through b now: {last:?}");
    let got = reader.await??;
    check_all_delivered(&got, N)?;
    eprintln!(
        "SIGKILL after {at_kill} of {N} confirmed; all confirmed {:?} after the kill; \
         {} delivered once, {} gaps reported",
        killed_at.elapsed(),
        got.messages.len(),
        got.gaps.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_through_two_keeps_receiving_while_one_is_killed() -> Result<()> {
    const N: u64 = 3000;
    let mut a = broadcaster("two-a").await?;
    let b = broadcaster("two-b").await?;
    let subscriber = Client::connect(quick(options_for(&[&a, &b]))).await?;
    let pub_a = Client::connect(quick(options(&a))).await?;
    let pub_b = Client::connect(quick(options(&b))).await?;
    let mut sub = subscriber.subscribe("two.#").await?;
    sync_subscriptions(&pub_a, &mut [&mut sub], "two").await?;
    sync_subscriptions(&pub_b, &mut [&mut sub], "two").await?;

    let reader = tokio::spawn(async move { collect_until(&mut sub, N, RECV_TIMEOUT * 6).await });
    let confirmed = Arc::new(AtomicU64::new(0));
    let stream = tokio::spawn(confirmed_stream(
        pub_b.clone(),
        "two.b",
        0..N,
        16,
        confirmed.clone(),
    ));
    pub_a
        .publish_confirmed("two.a", indexed_payload(N + 1, 8))
        .await?;
    wait_confirmed(&confirmed, N / 3, RECV_TIMEOUT * 2).await?;
    a.sigkill()?;
    tokio::time::timeout(RECV_TIMEOUT * 4, stream)
        .await
        .context("b's stream confirmed")???;
    pub_b
        .publish_confirmed("two.b", indexed_payload(N, 8))
        .await?;
    let got = reader.await??;
    check_all_delivered(&got, N)?;
    ensure!(
        got.indices().contains(&(N + 1)),
        "a's message before the kill arrived"
    );
    ensure!(subscriber.is_connected(), "still connected through b");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broadcaster_is_repaired_from_its_replay_without_duplicates() -> Result<()> {
    const N: u64 = 2000;
    const A0: u64 = 100_000; // indices of the stream through a only
    const M: u64 = 400;
    const A_RATE: f64 = 200.0; // messages per second through a
    let a = broadcaster("stop-a").await?;
    let b = broadcaster("stop-b").await?;
    let subscriber = Client::connect(quick(options_for(&[&a, &b]))).await?;
    let mut events = subscriber.events();
    // One publisher through both (a first): while a is stopped it moves to
    // b and re-sends what a did not acknowledge; when a resumes it stamps
    // what it had already read, and those copies are dropped. Another
    // publisher goes through a only: its messages wait for a.
    let publisher = Client::connect(quick(options_for(&[&a, &b]))).await?;
    let pub_a = Client::connect(quick(options(&a))).await?;
    let via_b = Client::connect(options(&b)).await?;
    let mut sub = subscriber.subscribe("stop.#").await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "stop").await?;
    sync_subscriptions(&via_b, &mut [&mut sub], "stop").await?;
    let ends = [N, A0 + M];
    let reader =
        tokio::spawn(async move { collect_until_all(&mut sub, &ends, RECV_TIMEOUT * 6).await });

    let confirmed = Arc::new(AtomicU64::new(0));
    let stream = tokio::spawn(confirmed_stream(
        publisher.clone(),
        "stop.x",
        0..N,
        32,
        confirmed.clone(),
    ));
    let confirmed_a = Arc::new(AtomicU64::new(0));
    wait_confirmed(&confirmed, N / 4, RECV_TIMEOUT * 2).await?;
    // Paced so that a is stopped mid-stream however fast the machine: M
    // messages take M / A_RATE = 2 s, a is stopped after the first quarter.
    let stream_a = tokio::spawn(paced_stream(
        pub_a.clone(),
        "stop.a",
        A0..A0 + M,
        16,
        Some(A_RATE),
        32,
        confirmed_a.clone(),
    ));
    wait_confirmed(&confirmed_a, M / 4, RECV_TIMEOUT * 2).await?;
    a.sigstop()?;
    let stopped_at = confirmed_a.load(Ordering::Relaxed);
    wait_confirmed(&confirmed, N / 2, RECV_TIMEOUT * 2).await?; // through b now
    tokio::time::sleep(Duration::from_secs(2)).await; // a stays stopped a while
    a.sigcont()?;
    tokio::time::timeout(RECV_TIMEOUT * 4, stream)
        .await
        .context("every message confirmed")???;
    tokio::time::timeout(RECV_TIMEOUT * 4, stream_a)
        .await
        .context("every message through a confirmed")???;
    ensure!(stopped_at < M, "a stopped mid-stream");
    publisher
        .publish_confirmed("stop.x", indexed_payload(N, 8))
        .await?;
    pub_a
        .publish_confirmed("stop.a", indexed_payload(A0 + M, 8))
        .await?;
    let got = reader.await??;
    check_all_delivered(&got, N)?;
    let delivered: HashSet<u64> = got.indices().into_iter().collect();
    let missing_a = (A0..A0 + M).filter(|i| !delivered.contains(i)).count();
    ensure!(
        missing_a == 0,
        "{missing_a} of a's messages never delivered"
    );
    // Resuming from before it all fetches both origins' history: the
    // originals (a) and the re-sent copies (b) are there; one of each goes.
    let mut since = fanfare_client::Position::new();
    for m in &got.messages {
        let s = &m.stamp;
        if since.get(&s.origin).is_none() {
            since.advance(&s.origin, s.epoch, s.seq.saturating_sub(1));
        }
    }
    let late = Client::connect(quick(options_for(&[&b, &a]))).await?;
    let mut resumed = late.subscribe_from("stop.#", since).await?;
    let again = collect_until_all(&mut resumed, &ends, RECV_TIMEOUT * 3).await?;
    again.check_once_in_order()?;
    let again_set: HashSet<u64> = again.indices().into_iter().collect();
    ensure!(
        again_set == delivered,
        "the resume delivers the same set once"
    );
    let replayed = got.messages.iter().filter(|m| m.replayed).count();
    let mut repaired = 0;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
        if matches!(ev, fanfare_client::ClientEvent::GapRepaired { ref origin, .. } if &**origin == "stop-a")
        {
            repaired += 1;
        }
    }
    eprintln!(
        "SIGSTOP 2 s: {} delivered once ({replayed} from replay, {repaired} repairs of stop-a), \
         {} gaps reported",
        got.messages.len(),
        got.gaps.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_resumes_through_a_client_whose_first_broadcaster_is_another() -> Result<()> {
    // What a hub worker attached to b first does when a browser resumes
    // with a position that names a's origin too: `subscribe_from` and
    // `Client::replay` ask the broadcaster that holds each origin.
    const N: u64 = 50;
    const K: u64 = 20;
    let a = broadcaster("res-a").await?;
    let b = broadcaster("res-b").await?;
    let first = Client::connect(quick(options_for(&[&a, &b]))).await?;
    let pub_a = Client::connect(options(&a)).await?;
    let pub_b = Client::connect(options(&b)).await?;
    let mut sub = first.subscribe("res.#").await?;
    sync_subscriptions(&pub_a, &mut [&mut sub], "res").await?;
    sync_subscriptions(&pub_b, &mut [&mut sub], "res").await?;
    for i in 0..N {
        pub_a
            .publish_confirmed("res.a", indexed_payload(i, 8))
            .await?;
        pub_b
            .publish_confirmed("res.b", indexed_payload(1000 + i, 8))
            .await?;
    }
    let got = collect_until_all(&mut sub, &[N - 1, 1000 + N - 1], RECV_TIMEOUT).await?;
    got.check_once_in_order()?;
    // The position after the first K of each origin.
    let mut since = fanfare_client::Position::new();
    for m in &got.messages {
        let i = fanfare_tests::client::index_of(&m.payload).unwrap_or(u64::MAX);
        if i < K || (1000..1000 + K).contains(&i) {
            since.advance(&m.stamp.origin, m.stamp.epoch, m.stamp.seq);
        }
    }
    ensure!(since.iter().count() == 2, "both origins in {since:?}");

    let other = Client::connect(quick(options_for(&[&b, &a]))).await?;
    let mut resumed = other.subscribe_from("res.#", since.clone()).await?;
    let expected: HashSet<u64> = (K..N).chain(1000 + K..1000 + N).collect();
    let got = collect_until_all(&mut resumed, &[N - 1, 1000 + N - 1], RECV_TIMEOUT).await?;
    got.check_once_in_order()?;
    let indices: HashSet<u64> = got.indices().into_iter().collect();
    ensure!(indices == expected, "missed exactly: got {indices:?}");
    ensure!(got.gaps.is_empty(), "nothing lost: {:?}", got.gaps);

    let (epoch_a, seq_a) = since.get("res-a").context("a in position")?;
    let batch = other
        .replay(fanfare_client::ReplayQuery::since(
            "res-a",
            epoch_a,
            seq_a + 1,
        ))
        .await?;
    ensure!(
        batch.status == fanfare_client::ReplayStatus::Ok,
        "a's origin answered by a: {:?}",
        batch.status
    );
    ensure!(
        batch.messages.len() as u64 >= N - K,
        "{} messages",
        batch.messages.len()
    );
    let none = other
        .replay(fanfare_client::ReplayQuery::since("nobody", 0, 1))
        .await?;
    ensure!(
        none.status == fanfare_client::ReplayStatus::UnknownOrigin,
        "an origin no broadcaster holds: {:?}",
        none.status
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_first_broadcaster_is_down_publishes_through_the_next() -> Result<()> {
    let mut a = broadcaster("down-a").await?;
    let b = broadcaster("down-b").await?;
    a.sigkill()?;
    let started = std::time::Instant::now();
    let client = Client::connect(quick(options_for(&[&a, &b]))).await?;
    let mut sub = client.subscribe("down.#").await?;
    let c = tokio::time::timeout(RECV_TIMEOUT, client.publish_confirmed("down.x", "hi"))
        .await
        .context("confirmed within the receive timeout")??;
    ensure!(&*c.origin == "down-b", "{c:?}");
    let got = tokio::time::timeout(RECV_TIMEOUT, async {
        loop {
            match futures::StreamExt::next(&mut sub).await {
                Some(fanfare_client::Delivery::Message(m)) if m.payload == "hi" => break Ok(m),
                Some(fanfare_client::Delivery::Closed(r)) => break Err(anyhow::anyhow!("{r:?}")),
                Some(_) => {}
                None => break Err(anyhow::anyhow!("ended")),
            }
        }
    })
    .await
    .context("delivered through b")??;
    ensure!(&*got.stamp.origin == "down-b", "{got:?}");
    eprintln!(
        "first broadcaster down: confirmed through the second after {:?}",
        started.elapsed()
    );
    Ok(())
}
