//! Prints what matches a pattern, with stamps, gaps and connection events.
//!
//! ```text
//! cargo run -p fanfare-client --example subscriber -- [PATTERN] [POSITION]
//! ```
//! `POSITION` (`origin:epoch:seq,…`) replays what came after it first.
//! Endpoints come from `FANFARE_PULL`, `FANFARE_PUB`, `FANFARE_REPLAY`
//! (defaults `tcp://127.0.0.1:5557/5558/5559`).

use anyhow::Context;
use fanfare_client::{
    Client, ClientOptions, Delivery, Position, DEFAULT_PUB, DEFAULT_PULL, DEFAULT_REPLAY,
};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let pattern = args.next().unwrap_or_else(|| "#".to_owned());
    let since: Option<Position> = args
        .next()
        .map(|p| p.parse())
        .transpose()
        .context("POSITION must look like origin:epoch:seq")?;
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let opts = ClientOptions::new(
        env("FANFARE_PULL", DEFAULT_PULL),
        env("FANFARE_PUB", DEFAULT_PUB),
        env("FANFARE_REPLAY", DEFAULT_REPLAY),
    );
    let client = Client::connect(opts).await?;
    let mut events = client.events();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            eprintln!("event: {ev:?}");
        }
    });
    let mut sub = match since {
        Some(p) => client.subscribe_from(&pattern, p).await?,
        None => client.subscribe(&pattern).await?,
    };
    let mut position = Position::new();
    while let Some(d) = sub.next().await {
        match d {
            Delivery::Message(m) => {
                let s = &m.stamp;
                position.advance(&s.origin, s.epoch, s.seq);
                let flag = if m.replayed { " (replayed)" } else { "" };
                println!(
                    "{} {}:{}:{}{} {}",
                    m.topic,
                    s.origin,
                    s.epoch,
                    s.seq,
                    flag,
                    String::from_utf8_lossy(&m.payload)
                );
            }
            Delivery::Gap(g) => println!(
                "GAP {}:{} {}..={} ({:?})",
                g.origin, g.epoch, g.first, g.last, g.reason
            ),
            Delivery::Watermark(w) => {
                println!("complete through {}:{}:{}", w.origin, w.epoch, w.through)
            }
            Delivery::Closed(r) => println!("closed: {r:?}; position {position}"),
        }
    }
    Ok(())
}
