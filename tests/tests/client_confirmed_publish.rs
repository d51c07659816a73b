//! Confirmed publish against a real broadcaster: `publish_confirmed`
//! resolves with the stamping broadcaster's ack; a broadcaster SIGKILLed and
//! restarted on the same ports in the middle of a stream loses no confirmed
//! message and duplicates none (the publisher re-sends what was not acked,
//! the subscriber drops copies by publisher seq); a pyzmq PUSH re-sending
//! the same publisher seqs is deduplicated at the broadcaster, counted in
//! `fanfare_ingress_duplicates_total`, and still acked.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fanfare_client::Client;
use fanfare_tests::client::{
    collect_until, confirmed_stream, indexed_payload, next_data, options, sync_subscriptions,
};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::wait::eventually;
use fanfare_tests::{metrics, python, sockets, RECV_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_publish_resolves_with_the_stamping_broadcaster() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "conf-1", "--heartbeat-ms", "100"]).await?;
    let client = Client::connect(options(&b)).await?;
    let mut sub = client.subscribe("conf.#").await?;
    sync_subscriptions(&client, &mut [&mut sub], "conf").await?;
    let c = tokio::time::timeout(RECV_TIMEOUT, client.publish_confirmed("conf.x", "one"))
        .await
        .context("confirmation within the receive timeout")??;
    let m = next_data(&mut sub, RECV_TIMEOUT).await?;
    ensure!(m.payload == "one", "{m:?}");
    ensure!(&*c.origin == "conf-1", "{c:?}");
    ensure!(
        c.epoch == m.stamp.epoch && c.seq == Some(m.stamp.seq),
        "{c:?} vs {m:?}"
    );
    let p = m
        .stamp
        .publisher_seq
        .context("publisher seq on the stamp")?;
    ensure!(p.seq == c.publisher_seq, "{p:?} vs {c:?}");
    // A second one gets the next publisher seq; plain publishes count too.
    client.publish("conf.y", "two").await?;
    let c3 = client.publish_confirmed("conf.z", "three").await?;
    ensure!(c3.publisher_seq == c.publisher_seq + 2, "{c3:?}");
    // One at a time: each waits for its ack (a figure, not a bound).
    let started = std::time::Instant::now();
    for i in 0..200u64 {
        client
            .publish_confirmed("conf.seq", indexed_payload(i, 32))
            .await?;
    }
    eprintln!(
        "publish_confirmed one at a time: {:?} per message",
        started.elapsed() / 200
    );
    let admin = b.endpoints().admin_addr()?.to_owned();
    let text = metrics::fetch(&admin).await?;
    ensure!(
        metrics::value_or_zero(&text, "fanfare_acks_total", &[]) >= 200.0,
        "acks counted"
    );
    ensure!(
        metrics::value_or_zero(&text, "fanfare_ingress_duplicates_total", &[]) == 0.0,
        "nothing re-sent"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_mid_stream_delivers_every_confirmed_message_once() -> Result<()> {
    const N: u64 = 3000;
    let mut b = BroadcasterProcess::spawn(&["--id", "phoenix-c", "--heartbeat-ms", "100"]).await?;
    let opts = options(&b).heartbeat_timeout(Duration::from_millis(600));
    let subscriber = Client::connect(opts.clone()).await?;
    let publisher = Client::connect(opts.ack_timeout(Duration::from_millis(500))).await?;
    let mut sub = subscriber.subscribe("kill.#").await?;
    sync_subscriptions(&publisher, &mut [&mut sub], "kill").await?;

    let reader = tokio::spawn(async move { collect_until(&mut sub, N, RECV_TIMEOUT * 6).await });
    let confirmed = Arc::new(AtomicU64::new(0));
    let stream = tokio::spawn(confirmed_stream(
        publisher.clone(),
        "kill.x",
        0..N,
        32,
        confirmed.clone(),
    ));
    eventually(RECV_TIMEOUT, "a third confirmed", || {
        let c = confirmed.load(Ordering::Relaxed);
        async move { (c >= N / 3).then_some(()) }
    })
    .await?;
    b.restart().await?; // SIGKILL, then the same ports again
    let at_kill = confirmed.load(Ordering::Relaxed);
    let confirmations = tokio::time::timeout(RECV_TIMEOUT * 6, stream)
        .await
        .context("every message confirmed")???;
    ensure!(
        at_kill < N,
        "the kill came mid-stream ({at_kill} of {N} confirmed)"
    );
    let epochs: HashSet<u64> = confirmations.iter().map(|(_, c)| c.epoch).collect();
    ensure!(epochs.len() == 2, "confirmed in both epochs: {epochs:?}");
    // The last message: published after all, confirmed, then awaited.
    publisher
        .publish_confirmed("kill.x", indexed_payload(N, 32))
        .await?;
    let got = reader.await??;
    got.check_once_in_order()?;
    let delivered: HashSet<u64> = got.indices().into_iter().collect();
    let missing: Vec<u64> = (0..N).filter(|i| !delivered.contains(i)).collect();
    ensure!(
        missing.is_empty(),
        "{} confirmed messages never delivered (first {:?}); gaps {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        got.gaps
    );
    eprintln!(
        "kill after {at_kill} confirmed: {} delivered once, {} gaps reported",
        got.messages.len(),
        got.gaps.len()
    );
    Ok(())
}

#[tokio::test]
async fn pyzmq_resent_publisher_seqs_are_dropped_counted_and_acked() -> Result<()> {
    let Some(py) = python::python() else {
        return Ok(());
    };
    const N: u64 = 50;
    let b = BroadcasterProcess::spawn(&["--id", "dedup-1", "--heartbeat-ms", "100"]).await?;
    let e = b.endpoints().clone();
    let mut sub = sockets::sub(&e.publish, &["resend."]).await?;
    let mut push = sockets::push(&e.pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "resend").await?;
    let n = N.to_string();
    let out = python::run_script(
        &py,
        "push_resend.py",
        &[&e.pull, &e.publish, "resend.x", &n, "12345"],
        Duration::from_secs(60),
    )
    .await?;
    ensure!(out.contains("resend ok"), "script said: {out}");
    for i in 1..=N {
        let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
        ensure!(m.payload == format!("msg {i}").as_bytes(), "{i}: {m:?}");
    }
    let done = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
    ensure!(
        done.payload == "done",
        "the copies were not delivered: {done:?}"
    );
    let admin = e.admin_addr()?.to_owned();
    eventually(RECV_TIMEOUT, "duplicates counted", || {
        let admin = admin.clone();
        async move {
            let text = metrics::fetch(&admin).await.ok()?;
            let dups = metrics::value_or_zero(&text, "fanfare_ingress_duplicates_total", &[]);
            (dups == N as f64).then_some(())
        }
    })
    .await?;
    Ok(())
}
