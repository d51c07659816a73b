//! `broadcaster pub TOPIC [DATA]`: publish one message, or one per stdin line.
//!
//! Speaks ZMTP through the broadcaster's own `zmtp` module rather than
//! zmq.rs's PUSH socket, whose `send` returns before the bytes are written: a
//! short-lived tool would exit with its message still queued. Here the tool
//! writes, half-closes, and waits for the broadcaster to close in turn, which
//! it does only after reading everything.

use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

use crate::zmtp::{encode_multipart, handshake, FrameReader, SocketKind};

/// Arguments of `pub`.
#[derive(Debug, Args)]
pub(super) struct PubArgs {
    /// Topic, e.g. `chat.lobby`.
    topic: String,
    /// Payload; without it each line of stdin is one message.
    data: Option<String>,
    /// Broadcaster ingress endpoint.
    #[arg(long, env = "FANFARE_PULL", default_value = super::DEFAULT_PULL)]
    pull: String,
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `pub`.
pub(super) async fn run(a: PubArgs) -> anyhow::Result<()> {
    fanfare_protocol::topic::validate(a.topic.as_bytes())
        .map_err(|e| anyhow::anyhow!("topic {:?}: {e}", a.topic))?;
    let addr = crate::endpoint::tcp_host_port(&a.pull)?;
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| anyhow::anyhow!("no broadcaster at {} after 5 s", a.pull))??;
    let (r, w) = stream.into_split();
    let mut reader = FrameReader::new(r, 64 * 1024);
    let mut writer = BufWriter::new(w);
    tokio::time::timeout(
        TIMEOUT,
        handshake(&mut reader, &mut writer, SocketKind::Push, 64 * 1024),
    )
    .await
    .map_err(|_| anyhow::anyhow!("handshake with {} timed out", a.pull))??;
    let mut sent = 0u64;
    let mut buf = Vec::new();
    let mut send = |payload: &[u8], buf: &mut Vec<u8>| {
        encode_multipart(buf, &[a.topic.as_bytes(), payload]);
        sent += 1;
    };
    if let Some(data) = &a.data {
        send(data.as_bytes(), &mut buf);
        writer.write_all(&buf).await?;
    } else {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            buf.clear();
            send(line.as_bytes(), &mut buf);
            writer.write_all(&buf).await?;
        }
    }
    writer.shutdown().await?;
    // The broadcaster closes after reading our last byte.
    let closed = tokio::time::timeout(TIMEOUT, async {
        while reader.next_frame().await?.is_some() {}
        anyhow::Ok(())
    })
    .await;
    anyhow::ensure!(
        matches!(closed, Ok(Ok(()))),
        "broadcaster did not confirm the end of the stream"
    );
    eprintln!("published {sent} message(s) on {}", a.topic);
    Ok(())
}
