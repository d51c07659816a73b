//! Column (d): a subscriber through fanfare-client, which repairs the gaps
//! the broadcaster's PUB leaves (replay endpoint) before it delivers. It
//! speaks the same stdout protocol as `c/zmq_sink.c`.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use fanfare_client::{Client, ClientOptions, CloseReason, Delivery};
use futures::StreamExt;
use tokio::time::{timeout_at, Instant};

/// The pattern every bench message (`bench.probe`, `bench.t`, `bench.end`) matches.
const PATTERN: &str = "bench.#";

/// Subscription queue bound: a consumer that reads as fast as it can, with room
/// for bursts. Past it the client closes the subscription (`SlowConsumer`) and
/// this sink resumes from the position it was given, as an application would.
const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// What this subscriber saw.
struct Tally {
    seen: Vec<bool>,
    received: u64,
    unique: u64,
    replayed: u64,
    unrecoverable: u64,
    resumes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Tally {
    fn data(&mut self, payload: &[u8], replayed: bool, now: Instant) {
        let Some(index) = payload
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
        else {
            return;
        };
        self.received += 1;
        self.replayed += u64::from(replayed);
        self.first.get_or_insert(now);
        self.last = Some(now);
        if let Some(seen) = usize::try_from(index)
            .ok()
            .and_then(|i| self.seen.get_mut(i))
        {
            if !*seen {
                *seen = true;
                self.unique += 1;
            }
        }
    }
}

/// `client-sink PULL PUB REPLAY COUNT QUIET_MS DEADLINE_MS`: subscribes
/// `bench.#`, prints `subscribed` at the first probe and a `result …` line at
/// the end marker (or quiet timeout, or deadline).
pub fn run(args: &[String]) -> Result<()> {
    let [pull, publish, replay, count, quiet_ms, deadline_ms] = args else {
        bail!("usage: client-sink PULL PUB REPLAY COUNT QUIET_MS DEADLINE_MS");
    };
    let count: usize = count.parse().context("COUNT")?;
    let quiet = Duration::from_millis(quiet_ms.parse().context("QUIET_MS")?);
    let deadline =
        Instant::now() + Duration::from_millis(deadline_ms.parse().context("DEADLINE_MS")?);
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let (pull, publish, replay) = (pull.clone(), publish.clone(), replay.clone());
    // The sink runs as a task on the runtime's workers, as an application's
    // code does (an axum handler, a hub). Run by `block_on` on the main
    // thread instead, every wake-up of the reader crossed threads: 22 % of
    // the process's CPU went to thread switches (perf, paced at 400 k/s).
    let sink = async move {
        let options =
            ClientOptions::new(pull, publish, replay).subscription_capacity(SUBSCRIPTION_CAPACITY);
        let client = timeout_at(deadline, Client::connect(options))
            .await
            .context("connect timed out")??;
        let mut subscription = timeout_at(deadline, client.subscribe(PATTERN))
            .await
            .context("subscribe timed out")??;
        let mut tally = Tally {
            seen: vec![false; count],
            received: 0,
            unique: 0,
            replayed: 0,
            unrecoverable: 0,
            resumes: 0,
            first: None,
            last: None,
        };
        let (mut subscribed, mut last_any) = (false, Instant::now());
        let end = loop {
            let wait = if tally.first.is_some() {
                deadline.min(last_any + quiet)
            } else {
                deadline
            };
            let delivery = match timeout_at(wait, subscription.next()).await {
                Err(_) if Instant::now() >= deadline => break "deadline",
                Err(_) => break "quiet",
                Ok(None) => break "closed",
                Ok(Some(delivery)) => delivery,
            };
            last_any = Instant::now();
            match delivery {
                Delivery::Message(message) => match &*message.topic {
                    "bench.t" => tally.data(&message.payload, message.replayed, last_any),
                    "bench.probe" if !subscribed => {
                        println!("subscribed");
                        subscribed = true;
                    }
                    "bench.end" => break "marker",
                    _ => {}
                },
                Delivery::Gap(gap) => {
                    tally.unrecoverable += gap.last.saturating_sub(gap.first).saturating_add(1);
                }
                Delivery::Closed(CloseReason::SlowConsumer { position }) => {
                    tally.resumes += 1;
                    subscription = timeout_at(deadline, client.subscribe_from(PATTERN, position))
                        .await
                        .context("resubscribe timed out")??;
                }
                Delivery::Watermark(_) => break "unasked watermark",
                Delivery::Closed(_) => break "closed",
            }
        };
        let elapsed = match (tally.first, tally.last) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        println!(
            "result received={} unique={} dups={} elapsed_us={} end={end} stamp_missing={} stamped=1 replayed={} resumes={}",
            tally.received,
            tally.unique,
            tally.received - tally.unique,
            elapsed.as_micros(),
            tally.unrecoverable,
            tally.replayed,
            tally.resumes
        );
        drop(subscription);
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        Ok(())
    };
    runtime.block_on(async { tokio::spawn(sink).await.context("the sink task panicked")? })
}
