//! A publish on one worker reaches every websocket client on every worker
//! process of the real demo, in order, each event with its position.

use fanfare_tests::demo::Demo;
use fanfare_tests::websocket::seq_of;
use serde_json::json;

#[tokio::test]
async fn a_publish_reaches_every_client_on_every_worker_in_order() -> anyhow::Result<()> {
    let demo = Demo::start(&["--workers", "3", "--publish-rate", "10000"]).await?;
    let mut clients = demo.one_per_worker(3).await?;
    // A second client on the first worker too.
    let first = clients[0].worker.clone();
    clients.push(demo.connect_where(|w| w == first).await?);
    for c in &mut clients {
        let v = c.subscribe(&["fan.#"], None).await?;
        assert_eq!(v["recovered"], true);
    }
    const N: u64 = 200;
    let publisher_worker = clients[1].worker.clone();
    for i in 0..N {
        clients[1].publish("fan.out", json!({ "i": i })).await?;
    }
    for c in &mut clients {
        let mut last_seq = 0;
        for i in 0..N {
            let ev = c.recv().await?;
            assert_eq!(ev["op"], "event", "{ev}");
            assert_eq!(ev["topic"], "fan.out");
            assert_eq!(ev["data"]["i"], i, "client on {} got {ev}", c.worker);
            assert_eq!(ev["from"], publisher_worker.as_str());
            let seq = seq_of(&ev);
            assert!(seq > last_seq, "positions grow: {seq} after {last_seq}");
            last_seq = seq;
        }
    }
    Ok(())
}
