//! Every bad input gets its error code and the connection stays usable;
//! oversize frames get `too_large` (or close 1009 past the hard limit);
//! a bad Origin is refused when an allowlist is set.

use fanfare_tests::demo::Demo;
use fanfare_tests::websocket::Ws;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn expect_error(ws: &mut Ws, code: &str) -> anyhow::Result<()> {
    let v = ws.recv().await?;
    assert_eq!(
        (v["op"].as_str(), v["code"].as_str()),
        (Some("error"), Some(code)),
        "{v}"
    );
    Ok(())
}

#[tokio::test]
async fn every_bad_input_gets_its_error_code() -> anyhow::Result<()> {
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "1"]).await?;
    let mut ws = Ws::connect(&demo.ws_url()).await?;
    let cases = [
        ("{not json", "bad_json"),
        ("[1,2,3]", "bad_json"),
        (r#"{"op":"explode"}"#, "unknown_op"),
        (r#"{"topics":["a"]}"#, "unknown_op"),
        (r#"{"op":"subscribe","topics":["a..b"]}"#, "bad_topic"),
        (r#"{"op":"subscribe","topics":["a.b*"]}"#, "bad_topic"),
        (r#"{"op":"subscribe"}"#, "bad_topic"),
        (r#"{"op":"subscribe","topics":["_fanfare.#"]}"#, "forbidden"),
        (
            r#"{"op":"subscribe","topics":["a"],"since":"nonsense"}"#,
            "bad_since",
        ),
        (
            r#"{"op":"publish","topic":"bad topic","data":1}"#,
            "bad_topic",
        ),
        (
            r#"{"op":"publish","topic":"_fanfare.hb.x","data":1}"#,
            "forbidden",
        ),
    ];
    for (frame, code) in cases {
        ws.send_text(frame.to_owned()).await?;
        expect_error(&mut ws, code).await?;
    }
    ws.stream.send_binary().await?;
    expect_error(&mut ws, "bad_json").await?;
    // Rate limit: 1/s with a burst of 2.
    for i in 0..3 {
        ws.publish("ok.topic", json!(i)).await?;
    }
    expect_error(&mut ws, "rate_limited").await?;
    // Over the 64 KiB frame limit but under the hard limit: an error, still open.
    ws.publish("ok.topic", json!("y".repeat(70 * 1024))).await?;
    expect_error(&mut ws, "too_large").await?;
    ws.send(&json!({"op":"ping","ref":42})).await?;
    assert_eq!(ws.recv().await?, json!({"op":"pong","ref":42}));
    // Over the hard limit (4 × 64 KiB): closed with 1009.
    ws.publish("ok.topic", json!("z".repeat(300 * 1024)))
        .await?;
    let close = ws.close_code(std::time::Duration::from_secs(10)).await?;
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));
    Ok(())
}

trait SendBinary {
    async fn send_binary(&mut self) -> anyhow::Result<()>;
}

impl<S> SendBinary for S
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    async fn send_binary(&mut self) -> anyhow::Result<()> {
        use futures::SinkExt;
        self.send(Message::binary(vec![0u8, 1, 2])).await?;
        Ok(())
    }
}

#[tokio::test]
async fn a_bad_origin_is_refused_when_an_allowlist_is_set() -> anyhow::Result<()> {
    let demo = Demo::start(&["--workers", "1", "--allowed-origin", "http://good.example"]).await?;
    let mut bad = demo.ws_url().into_client_request()?;
    bad.headers_mut()
        .insert("origin", "http://evil.example".parse()?);
    let err = tokio_tungstenite::connect_async(bad).await.err();
    let refused = match err {
        Some(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    };
    assert_eq!(refused, 403);
    let mut good = demo.ws_url().into_client_request()?;
    good.headers_mut()
        .insert("origin", "http://good.example".parse()?);
    let ws = Ws::connect_request(good).await?;
    assert!(!ws.worker.is_empty());
    Ok(())
}
