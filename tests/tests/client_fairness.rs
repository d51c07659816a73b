//! The client's tasks share the application's runtime: a busy subscriber
//! task (a socket that always has data) must let the application's reader
//! run, or the reader looks slow and its subscription is closed.

use std::time::Duration;

use anyhow::{bail, Result};
use fanfare_client::{Client, Delivery};
use fanfare_tests::client::{connect, next_delivery, options};
use fanfare_tests::process::BroadcasterProcess;

/// Every receive (and a client's connect) in these tests waits at most this long.
const RECV: Duration = Duration::from_secs(15);

const N: u32 = 20_000;
const CAPACITY: usize = 1024;

/// One thread for everything: the reader runs only when the client's tasks
/// yield.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_subscriber_task_lets_the_application_read() -> Result<()> {
    let b =
        BroadcasterProcess::spawn_without_admin(&["--id", "b1", "--heartbeat-ms", "100"]).await?;
    let publisher = connect(&b, RECV).await?;
    let c = Client::connect(
        options(&b)
            .connect_timeout(RECV)
            .subscription_capacity(CAPACITY),
    )
    .await?;
    let mut sub = c.subscribe("fair.#").await?;
    // The subscription is in place once its first message arrives.
    publisher.publish("fair.x", "0").await?;
    let _ = next_delivery(&mut sub, RECV).await?;
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
        match next_delivery(&mut sub, RECV).await? {
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
