//! Publishes numbered messages to a broadcaster.
//!
//! ```text
//! cargo run -p fanfare-client --example publisher -- [TOPIC] [COUNT] [INTERVAL_MS]
//! ```
//! Endpoints come from `FANFARE_PULL`, `FANFARE_PUB`, `FANFARE_REPLAY`
//! (defaults `tcp://127.0.0.1:5557/5558/5559`).

use std::time::Duration;

use anyhow::Context;
use fanfare_client::{Client, ClientOptions, DEFAULT_PUB, DEFAULT_PULL, DEFAULT_REPLAY};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "demo.counter".to_owned());
    let count: u64 = args.next().map_or(Ok(10), |a| a.parse()).context("COUNT")?;
    let interval: u64 = args
        .next()
        .map_or(Ok(100), |a| a.parse())
        .context("INTERVAL_MS")?;
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let opts = ClientOptions::new(
        env("FANFARE_PULL", DEFAULT_PULL),
        env("FANFARE_PUB", DEFAULT_PUB),
        env("FANFARE_REPLAY", DEFAULT_REPLAY),
    )
    .publisher_id(format!("example-publisher-{}", std::process::id()));
    let client = Client::connect(opts).await?;
    for i in 1..=count {
        client
            .publish_json(&topic, &serde_json::json!({ "n": i }))
            .await?;
        println!("published {topic} n={i}");
        tokio::time::sleep(Duration::from_millis(interval)).await;
    }
    client.close().await;
    Ok(())
}
