//! Payloads from a non-browser publisher (fanfare-client straight into the
//! broadcaster): JSON arrives as JSON, anything else as base64 with
//! `"binary":true`. Also runs the demo against an external broadcaster
//! (`--broadcaster`).

use fanfare_client::{Client, ClientOptions};
use fanfare_tests::demo::Demo;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::websocket::Ws;

#[tokio::test]
async fn non_json_payloads_arrive_base64_with_a_flag() -> anyhow::Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "ext"]).await?;
    let e = b.endpoints().clone();
    let spec = format!("pull={},pub={},replay={}", e.pull, e.publish, e.replay);
    let demo = Demo::start(&["--workers", "2", "--broadcaster", &spec]).await?;
    let mut ws = Ws::connect(&demo.ws_url()).await?;
    ws.subscribe(&["raw.#"], None).await?;

    let opts = ClientOptions::new(&e.pull, &e.publish, &e.replay).publisher_id("backend");
    let client = Client::connect(opts).await?;
    client
        .publish("raw.bytes", vec![0xffu8, 0x00, 0x01])
        .await?;
    client.publish("raw.text", "not json").await?;
    client.publish("raw.json", r#"{"ok":[1,2]}"#).await?;

    let v = ws.recv().await?;
    assert_eq!(
        (v["topic"].as_str(), v["binary"].as_bool()),
        (Some("raw.bytes"), Some(true)),
        "{v}"
    );
    assert_eq!(v["data"], "/wAB");
    // A backend's publisher id is its own claim: the hub does not vouch for it.
    assert_eq!(v["from_unverified"], "backend");
    assert!(v.get("from").is_none(), "{v}");
    assert!(
        v["pos"].as_str().is_some_and(|p| p.starts_with("ext:")),
        "{v}"
    );
    let v = ws.recv().await?;
    assert_eq!(
        (v["binary"].as_bool(), v["data"].as_str()),
        (Some(true), Some("bm90IGpzb24=")),
        "{v}"
    );
    let v = ws.recv().await?;
    assert!(v.get("binary").is_none(), "{v}");
    assert_eq!(v["data"]["ok"][1], 2);

    client.close().await;
    Ok(())
}
