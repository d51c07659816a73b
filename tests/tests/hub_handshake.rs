//! The hub's own websocket upgrade and writer, against the real demo: what
//! is not a handshake gets a status and a reason (and is counted); a frame
//! sent in the same packet as the handshake is read; a ping is answered
//! with its payload; many frames written in one batch decode as sent.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use fanfare_tests::demo::{metric, Demo};
use fanfare_tests::websocket::RECV_TIMEOUT;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends `head` (request line and headers) and `then` in one write, and
/// reads until the end of the response headers (and what came with them).
async fn raw_request(port: u16, head: &str, then: &[u8]) -> Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("{head}Host: 127.0.0.1\r\n\r\n").into_bytes();
    req.extend_from_slice(then);
    s.write_all(&req).await?; // one write: the frame rides with the request
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(RECV_TIMEOUT, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        anyhow::Ok(())
    })
    .await
    .context("no response in time")??;
    Ok((s, got))
}

fn handshake_head(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}"
    )
}

/// A masked client text frame (of fewer than 126 bytes).
fn client_text(text: &str) -> Result<Vec<u8>> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let len = u8::try_from(text.len())
        .ok()
        .filter(|n| *n < 126)
        .context("a short frame")?;
    let mut f = vec![0x81, 0x80 | len];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    Ok(f)
}

/// Reads unmasked server text frames from `s` (after the bytes in
/// `already`, which keeps what follows the frame returned) until one whose
/// JSON `op` is `op`.
async fn read_until_op(s: &mut TcpStream, already: &mut Vec<u8>, op: &str) -> Result<Value> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(RECV_TIMEOUT, async {
        loop {
            // Parse whole frames from the front (server frames: no mask).
            while already.len() >= 2 {
                let (len, at) = match already[1] & 0x7f {
                    126 if already.len() >= 4 => {
                        (usize::from(u16::from_be_bytes([already[2], already[3]])), 4)
                    }
                    126 => break,
                    127 => bail!("unexpected huge frame"),
                    n => (usize::from(n), 2),
                };
                if already.len() < at + len {
                    break;
                }
                let payload = already[at..at + len].to_vec();
                already.drain(..at + len);
                let v: Value = serde_json::from_slice(&payload)?;
                if v["op"] == op {
                    return Ok(v);
                }
            }
            let n = s.read(&mut buf).await?;
            if n == 0 {
                bail!("closed before {op}");
            }
            already.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .context("no frame in time")?
}

#[tokio::test]
async fn what_is_not_a_handshake_is_told_why_and_counted() -> Result<()> {
    let demo = Demo::start(&["--workers", "1"]).await?;
    let cases = [
        (
            "GET /ws HTTP/1.1\r\n".to_owned(),
            "426",
            "Connection header",
        ),
        (
            handshake_head("").replace("Version: 13", "Version: 8"),
            "400",
            "Sec-WebSocket-Version must be 13",
        ),
        (
            handshake_head("").replace(KEY, "not-a-key"),
            "400",
            "Sec-WebSocket-Key",
        ),
        (
            handshake_head("").replace("Upgrade: websocket", "Upgrade: h2c"),
            "426",
            "Upgrade header must be websocket",
        ),
    ];
    for (head, status, reason) in &cases {
        let (mut s, got) = raw_request(demo.port, head, b"").await?;
        let head_got = String::from_utf8_lossy(&got).into_owned();
        let mut rest = String::new();
        if !head_got.contains(reason) {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut rest)).await;
        }
        let all = format!("{head_got}{rest}");
        let status_line = all.lines().next().unwrap_or_default();
        assert!(status_line.contains(status), "{head:?}: {all:?}");
        assert!(all.contains(reason), "{head:?}: {all:?}");
    }
    let text = demo.get("/metrics").await?;
    let refused = metric(&text, "fanfare_hub_refused_handshake_total{");
    assert_eq!(refused, Some(cases.len() as u64), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_frame_in_the_handshakes_packet_is_read() -> Result<()> {
    let demo = Demo::start(&["--workers", "1"]).await?;
    let ping = client_text(r#"{"op":"ping","ref":"early"}"#)?;
    let (mut s, got) = raw_request(demo.port, &handshake_head(""), &ping).await?;
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let head = String::from_utf8_lossy(&got[..end]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    let mut after = got[end + 4..].to_vec();
    let welcome = read_until_op(&mut s, &mut after, "welcome").await?;
    assert_eq!(welcome["op"], "welcome");
    let pong = read_until_op(&mut s, &mut after, "pong").await?;
    assert_eq!(pong["ref"], "early");
    Ok(())
}

#[tokio::test]
async fn a_ping_is_answered_with_its_payload_and_batches_decode_in_order() -> Result<()> {
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "100000"]).await?;
    let mut a = demo.connect_where(|_| true).await?;
    let mut b = demo.connect_where(|_| true).await?;
    b.subscribe(&["burst.#"], None).await?;
    a.stream
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await?;
    let pong = tokio::time::timeout(RECV_TIMEOUT, async {
        while let Some(m) = a.stream.next().await {
            if let Message::Pong(p) = m? {
                return anyhow::Ok(p);
            }
        }
        bail!("closed before the pong")
    })
    .await
    .context("no pong in time")??;
    assert_eq!(&pong[..], b"are you there");
    // A burst that queues deep at b: written many frames per write, each
    // must decode whole and in order (sizes across the 126-byte boundary
    // and the 16-bit length form).
    let n = 600u64;
    for i in 0..n {
        let pad = "p".repeat(usize::try_from(i % 300)?);
        a.publish("burst.x", json!({ "i": i, "pad": pad })).await?;
    }
    for i in 0..n {
        let ev = b.recv().await?;
        assert_eq!(ev["op"], "event", "{ev}");
        assert_eq!(ev["data"]["i"], i, "{ev}");
    }
    Ok(())
}
