//! End to end against a real broadcaster process: publish, subscribe,
//! patterns, history, positions, slow consumers, outbox.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use fanfare_client::{
    Client, ClientOptions, CloseReason, Delivery, GapReason, Position, PublishError, ReplayQuery,
};
use fanfare_tests::client::{connect, next_delivery, next_message, options, wait_event};
use fanfare_tests::process::BroadcasterProcess;

/// Every receive (and a client's connect) in these tests waits at most this long.
const RECV: Duration = Duration::from_secs(15);

#[tokio::test]
async fn publishes_and_delivers_in_order_with_stamps() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let publisher =
        Client::connect(options(&b).connect_timeout(RECV).publisher_id("pub-1")).await?;
    let subscriber = connect(&b, RECV).await?;
    let mut chat = subscriber.subscribe("chat.#").await?;
    let mut one = subscriber.subscribe("chat.*.x").await?;
    for i in 0..200u32 {
        publisher.publish("chat.lobby", i.to_string()).await?;
        publisher.publish("news.today", "not for chat").await?;
    }
    publisher.publish("chat.room.x", "deep").await?;
    publisher
        .publish_json("chat", &serde_json::json!({"bare": true}))
        .await?;
    let mut last_seq = 0;
    for i in 0..200u32 {
        let m = next_message(&mut chat, RECV).await?;
        assert_eq!(&*m.topic, "chat.lobby");
        assert_eq!(m.payload, i.to_string().as_bytes());
        assert_eq!(m.stamp.publisher.as_deref(), Some("pub-1"));
        assert_eq!(&*m.stamp.origin, "b1");
        assert!(m.stamp.seq > last_seq);
        last_seq = m.stamp.seq;
    }
    assert_eq!(&*next_message(&mut chat, RECV).await?.topic, "chat.room.x");
    assert_eq!(&*next_message(&mut chat, RECV).await?.topic, "chat");
    assert_eq!(&*next_message(&mut one, RECV).await?.topic, "chat.room.x");
    Ok(())
}

#[tokio::test]
async fn invalid_topics_and_patterns_are_refused() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let c = connect(&b, RECV).await?;
    assert!(matches!(
        c.publish("a..b", "x").await,
        Err(PublishError::InvalidTopic(_))
    ));
    assert!(matches!(
        c.publish("_fanfare.hb.x", "x").await,
        Err(PublishError::InvalidTopic(_))
    ));
    assert!(c.subscribe("a.b*").await.is_err());
    Ok(())
}

#[tokio::test]
async fn subscribe_from_replays_then_goes_live_without_duplicates() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let c = connect(&b, RECV).await?;
    let mut live = c.subscribe("feed.#").await?;
    for i in 1..=20u32 {
        c.publish("feed.a", i.to_string()).await?;
    }
    let mut position = Position::new();
    let mut seqs = Vec::new();
    for _ in 0..20 {
        let m = next_message(&mut live, RECV).await?;
        seqs.push(m.stamp.seq);
        if m.payload == "10" {
            position.advance(&m.stamp.origin, m.stamp.epoch, m.stamp.seq);
        }
    }
    let mut resumed = c.subscribe_from("feed.#", position).await?;
    for i in 21..=25u32 {
        c.publish("feed.a", i.to_string()).await?;
    }
    // History first, then live: the catch-up fetches up to the newest the
    // broadcaster holds when it asks, which may include some of 21..=25.
    let mut live = false;
    for i in 11..=25u32 {
        let m = next_message(&mut resumed, RECV).await?;
        assert_eq!(
            m.payload,
            i.to_string().as_bytes(),
            "in order, no duplicates"
        );
        assert!(m.replayed || i > 20, "{i} is history");
        assert!(!(live && m.replayed), "nothing replayed after live ({i})");
        live |= !m.replayed;
    }
    Ok(())
}

#[tokio::test]
async fn history_that_expired_is_delivered_as_a_gap() -> Result<()> {
    let b = BroadcasterProcess::spawn_without_admin(&[
        "--id",
        "b1",
        "--heartbeat-ms",
        "100",
        "--history-count",
        "10",
    ])
    .await?;
    let c = connect(&b, RECV).await?;
    let mut live = c.subscribe("old.#").await?;
    for i in 1..=30u32 {
        c.publish("old.x", i.to_string()).await?;
    }
    // The live subscription may have joined after the first messages (and
    // history holds only 10): it sees messages and maybe a gap, up to seq 30.
    let (mut last, mut epoch) = (0, 0);
    while last < 30 {
        match next_delivery(&mut live, RECV).await? {
            Delivery::Message(m) => (last, epoch) = (m.stamp.seq, m.stamp.epoch),
            Delivery::Gap(g) => (last, epoch) = (g.last, g.epoch),
            Delivery::Watermark(w) => panic!("a watermark nobody asked for: {w:?}"),
            Delivery::Closed(r) => panic!("closed: {r:?}"),
        }
    }
    let first = fanfare_client::Stamp {
        origin: "b1".into(),
        epoch,
        seq: 1,
        lane: 0,
        lane_seq: 0,
        timestamp_us: 0,
        hops: 0,
        publisher: None,
        publisher_seq: None,
    };
    let mut since = Position::new();
    since.advance(&first.origin, first.epoch, first.seq - 1);
    let mut sub = c.subscribe_from("old.#", since).await?;
    let Delivery::Gap(gap) = next_delivery(&mut sub, RECV).await? else {
        panic!("expected a gap first");
    };
    assert_eq!(gap.reason, GapReason::Expired);
    assert_eq!(gap.first, first.seq);
    assert_eq!(gap.last, first.seq + 19);
    for i in 21..=30u32 {
        let m = next_message(&mut sub, RECV).await?;
        assert_eq!(m.payload, i.to_string().as_bytes());
    }
    Ok(())
}

#[tokio::test]
async fn raw_replay_query_returns_history() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let c = connect(&b, RECV).await?;
    let mut s = c.subscribe("q.#").await?;
    for i in 1..=5u32 {
        c.publish("q.a", i.to_string()).await?;
    }
    let first = next_message(&mut s, RECV).await?.stamp;
    let batch = c
        .replay(ReplayQuery::since(
            first.origin.to_string(),
            first.epoch,
            first.seq,
        ))
        .await?;
    assert_eq!(batch.status, fanfare_client::ReplayStatus::Ok);
    let payloads: Vec<_> = batch.messages.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(payloads, ["1", "2", "3", "4", "5"]);
    assert!(batch.messages.iter().all(|m| m.replayed));
    assert!(!batch.is_cut(u64::MAX));
    Ok(())
}

#[tokio::test]
async fn slow_consumer_is_closed_with_a_position_to_resume_from() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let c = Client::connect(options(&b).connect_timeout(RECV).subscription_capacity(8)).await?;
    let mut slow = c.subscribe("s.#").await?;
    let mut events = c.events();
    for i in 1..=50u32 {
        c.publish("s.x", i.to_string()).await?;
    }
    wait_event(&mut events, RECV, |e| {
        matches!(e, fanfare_client::ClientEvent::SlowConsumer { .. })
    })
    .await?;
    let mut got = Vec::new();
    let position = loop {
        match next_delivery(&mut slow, RECV).await? {
            Delivery::Message(m) => got.push(m.payload.clone()),
            Delivery::Closed(CloseReason::SlowConsumer { position }) => break position,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(got.len(), 8, "the queued items come before the close");
    let mut resumed = c.subscribe_from("s.#", position).await?;
    let mut seen: HashSet<u32> = got
        .iter()
        .map(|p| std::str::from_utf8(p).unwrap().parse().unwrap())
        .collect();
    // Drain without falling behind: nothing lost, in order.
    let mut last = 8;
    while last < 50 {
        let m = next_message(&mut resumed, RECV).await?;
        let i: u32 = std::str::from_utf8(&m.payload)?.parse()?;
        assert!(i > last || seen.contains(&i));
        seen.insert(i);
        last = last.max(i);
    }
    assert_eq!(seen.len(), 50);
    Ok(())
}

#[tokio::test]
async fn outbox_holds_messages_until_the_broadcaster_comes() -> Result<()> {
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let ep = |p: u16| format!("tcp://127.0.0.1:{p}");
    let opts = ClientOptions::new(ep(port), ep(port), ep(port))
        .outbox_capacity(5)
        .connect_timeout(Duration::ZERO);
    let c = Client::connect(opts).await?;
    for i in 0..5 {
        c.publish("o.x", format!("{i}")).await?;
    }
    assert!(matches!(
        c.publish("o.x", "6").await,
        Err(PublishError::OutboxFull { capacity: 5 })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_publishers_several_subscribers_exactly_once_in_order() -> Result<()> {
    const PER: u32 = 2000;
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let c = connect(&b, RECV).await?;
        let mut sub = c.subscribe("multi.#").await?;
        readers.push(tokio::spawn(async move {
            let mut last = [0u32; 3];
            for _ in 0..3 * PER {
                let m = next_message(&mut sub, RECV).await?;
                let p: usize = m.topic.trim_start_matches("multi.p").parse()?;
                let i: u32 = std::str::from_utf8(&m.payload)?.parse()?;
                anyhow::ensure!(i == last[p] + 1, "publisher {p}: got {i} after {}", last[p]);
                last[p] = i;
            }
            drop(c);
            anyhow::Ok(last)
        }));
    }
    for p in 0..3u32 {
        // Each publisher drops its client when done: the outbox still drains.
        let c = Client::connect(
            options(&b)
                .connect_timeout(RECV)
                .publisher_id(format!("p{p}")),
        )
        .await?;
        tokio::spawn(async move {
            for i in 1..=PER {
                c.publish(&format!("multi.p{p}"), i.to_string()).await?;
            }
            anyhow::Ok(())
        });
    }
    for r in readers {
        assert_eq!(r.await??, [PER; 3], "every message exactly once, in order");
    }
    Ok(())
}

#[tokio::test]
async fn dropping_one_of_two_subscriptions_on_a_prefix_keeps_the_other() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let c = connect(&b, RECV).await?;
    let first = c.subscribe("shared.#").await?;
    let mut second = c.subscribe("shared.#").await?;
    c.publish("shared.x", "1").await?;
    assert_eq!(next_message(&mut second, RECV).await?.payload, "1");
    drop(first);
    for i in 2..=50u32 {
        c.publish("shared.x", i.to_string()).await?;
    }
    for i in 2..=50u32 {
        assert_eq!(
            next_message(&mut second, RECV).await?.payload,
            i.to_string().as_bytes()
        );
    }
    // A fresh subscription on a new prefix starts from now: nothing older.
    let mut late = c.subscribe("shared.x").await?;
    c.publish("shared.x", "51").await?;
    assert_eq!(next_message(&mut late, RECV).await?.payload, "51");
    Ok(())
}

#[tokio::test]
async fn close_flushes_the_outbox_and_oversize_payloads_are_refused() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let reader = connect(&b, RECV).await?;
    let mut sub = reader.subscribe("bye.#").await?;
    let writer = Client::connect(options(&b).connect_timeout(RECV).max_payload(10)).await?;
    assert!(matches!(
        writer.publish("bye.x", vec![0u8; 11]).await,
        Err(PublishError::PayloadTooLarge {
            size: 11,
            limit: 10
        })
    ));
    for i in 1..=500u32 {
        writer.publish("bye.x", i.to_string()).await?;
    }
    writer.close().await;
    for i in 1..=500u32 {
        assert_eq!(
            next_message(&mut sub, RECV).await?.payload,
            i.to_string().as_bytes()
        );
    }
    reader.close().await;
    assert!(matches!(
        next_delivery(&mut sub, RECV).await?,
        Delivery::Closed(CloseReason::ClientClosed)
    ));
    Ok(())
}

#[tokio::test]
async fn an_unreachable_replay_endpoint_fails_fast_and_says_so() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let opts = ClientOptions::new(
        &b.endpoints().pull,
        &b.endpoints().publish,
        format!("tcp://127.0.0.1:{dead}"),
    )
    .replay_timeout(Duration::from_millis(200))
    .replay_attempts(2)
    .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
    .connect_timeout(RECV);
    let c = Client::connect(opts).await?;
    let started = std::time::Instant::now();
    let err = c.replay(ReplayQuery::since("b1", 0, 1)).await.err();
    assert!(matches!(
        err,
        Some(fanfare_client::ReplayError::Unavailable { attempts: 2 })
    ));
    let mut since = Position::new();
    since.advance("b1", 1, 0);
    let mut sub = c.subscribe_from("z.#", since).await?;
    let Delivery::Gap(gap) = next_delivery(&mut sub, RECV).await? else {
        panic!("expected a gap")
    };
    assert_eq!((gap.reason, gap.first), (GapReason::ReplayFailed, 1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by timeouts"
    );
    // Live traffic still flows.
    c.publish("z.x", "live").await?;
    assert_eq!(next_message(&mut sub, RECV).await?.payload, "live");
    Ok(())
}
