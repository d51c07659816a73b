//! Several publishers × several subscribers through fanfare-client and a
//! real broadcaster: every subscriber gets every message exactly once, each
//! publisher's messages in publish order, with the publisher id in the
//! stamp; an exact-topic pattern gets only its topic. Subscriptions are not
//! warmed up: `subscribe` returning is the promise that everything
//! published afterwards is delivered.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fanfare_client::{Client, Delivery, Subscription};
use fanfare_tests::client::{index_of, indexed_payload, is_probe, next_delivery, options};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::RECV_TIMEOUT;

const PUBLISHERS: usize = 3;
const SUBSCRIBERS: usize = 3;
const PER_PUBLISHER: u64 = 2000;

/// Reads `expected` messages and checks exactly-once, per-publisher order.
async fn collect(mut sub: Subscription, expected: u64) -> Result<HashMap<String, Vec<u64>>> {
    let mut per_topic: HashMap<String, Vec<u64>> = HashMap::new();
    let mut last_seq = 0;
    let mut got = 0;
    while got < expected {
        let d = next_delivery(&mut sub, RECV_TIMEOUT)
            .await
            .with_context(|| format!("{} after {got} of {expected}", sub.pattern()))?;
        let Delivery::Message(m) = d else {
            anyhow::bail!("{}: unexpected {d:?}", sub.pattern());
        };
        if is_probe(&m) {
            continue;
        }
        // One origin, one lane ("fan"): delivered in stamp order.
        ensure!(
            m.stamp.seq > last_seq,
            "seq order: {} after {last_seq}",
            m.stamp.seq
        );
        last_seq = m.stamp.seq;
        let k = m.topic.rsplit('.').next().unwrap_or_default().to_owned();
        ensure!(
            m.stamp.publisher.as_deref() == Some(k.as_str()),
            "publisher id in stamp: {m:?}"
        );
        per_topic
            .entry(m.topic.to_string())
            .or_default()
            .push(index_of(&m.payload).context("index")?);
        got += 1;
    }
    Ok(per_topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_message_once_in_publisher_order() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "fan", "--heartbeat-ms", "100"]).await?;
    let mut readers = Vec::new();
    let mut subscriber_clients = Vec::new();
    for s in 0..SUBSCRIBERS {
        // Room for the whole run: this test is about delivery, not about a
        // reader that falls behind (client_slow_consumer covers that).
        let capacity = 2 * PER_PUBLISHER as usize * PUBLISHERS;
        let c = Client::connect(options(&b).subscription_capacity(capacity)).await?;
        let all = c.subscribe("fan.#").await?;
        readers.push(tokio::spawn(collect(
            all,
            PER_PUBLISHER * PUBLISHERS as u64,
        )));
        if s == 0 {
            let one = c.subscribe("fan.p1").await?;
            readers.push(tokio::spawn(collect(one, PER_PUBLISHER)));
        }
        subscriber_clients.push(c);
    }
    let mut writers = Vec::new();
    for k in 0..PUBLISHERS {
        let c = Client::connect(options(&b).publisher_id(format!("p{k}"))).await?;
        writers.push(tokio::spawn(async move {
            for i in 0..PER_PUBLISHER {
                c.publish(&format!("fan.p{k}"), indexed_payload(i, 64))
                    .await?;
            }
            c.close().await;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for w in writers {
        tokio::time::timeout(Duration::from_secs(120), w).await???;
    }
    for (n, r) in readers.into_iter().enumerate() {
        let per_topic = tokio::time::timeout(Duration::from_secs(120), r).await???;
        let want: Vec<u64> = (0..PER_PUBLISHER).collect();
        let topics: Vec<String> = if n == 1 {
            vec!["fan.p1".into()]
        } else {
            (0..PUBLISHERS).map(|k| format!("fan.p{k}")).collect()
        };
        ensure!(
            per_topic.len() == topics.len(),
            "reader {n}: topics {:?}",
            per_topic.keys()
        );
        for t in topics {
            let got = per_topic
                .get(&t)
                .with_context(|| format!("reader {n}: nothing on {t}"))?;
            ensure!(
                *got == want,
                "reader {n}, {t}: exactly once, in order ({} msgs)",
                got.len()
            );
        }
    }
    Ok(())
}
