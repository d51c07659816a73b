//! Websocket helpers shared by the fanout and memory benches.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{Stream, StreamExt};
use tokio_tungstenite::tungstenite::{Error, Message};

/// The next text frame within `timeout` (pings are answered by tungstenite
/// and skipped here; a close frame is an error).
pub async fn next_text<S>(ws: &mut S, timeout: Duration) -> Result<String>
where
    S: Stream<Item = Result<Message, Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(timeout, ws.next())
            .await
            .context("no frame within the timeout")?
            .context("connection ended")??;
        match m {
            Message::Text(t) => return Ok(t.as_str().to_owned()),
            Message::Close(c) => bail!("closed: {c:?}"),
            _ => continue,
        }
    }
}
