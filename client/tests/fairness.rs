//! The client's tasks share the application's runtime: a busy subscriber
//! task (a socket that always has data) must let the application's reader
//! run, or the reader looks slow and its subscription is closed.

mod support;

use anyhow::{bail, Result};
use fanfare_client::{Client, Delivery};
use support::{next, Broadcaster};

const N: u32 = 20_000;
const CAPACITY: usize = 1024;

/// One thread for everything: the reader runs only when the client's tasks
/// yield.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_subscriber_task_lets_the_application_read() -> Result<()> {
    let b = Broadcaster::start(&["--heartbeat-ms", "100"]).await?;
    let publisher = b.client().await?;
    let c = Client::connect(b.options().subscription_capacity(CAPACITY)).await?;
    let mut sub = c.subscribe("fair.#").await?;
    // The subscription is in place once its first message arrives.
    publisher.publish("fair.x", "0").await?;
    let _ = next(&mut sub).await?;
    let sender = tokio::spawn({
        let p = publisher.clone();
        async move {
            for i in 1..=N {
                p.publish("fair.x", i.to_string()).await?;
            }
            anyhow::Ok(())
        }
    });
    for i in 1..=N {
        match next(&mut sub).await? {
            Delivery::Message(m) => {
                assert_eq!(
                    m.payload,
                    i.to_string().as_bytes(),
                    "in order, exactly once"
                );
            }
            other => bail!("at {i} of {N}: {other:?}"),
        }
    }
    sender.await??;
    Ok(())
}
