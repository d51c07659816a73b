//! The hub's own websocket upgrade: the handshake (`handshake.rs`), then the
//! upgraded connection split into a reader that tungstenite parses
//! (`reader.rs`) and a writer that writes shared frames vectored
//! (`frames.rs`).
//!
//! The upgraded connection is the server's TCP stream when the router runs
//! under `axum::serve` or a plain hyper HTTP/1 server: the hub takes it back
//! from hyper and splits it without a lock. Under any other server (TLS, a
//! test harness) it splits hyper's upgraded stream instead (a lock per
//! read or write call; the same frames).

mod frames;
mod handshake;
mod reader;

pub use frames::FrameSink;
pub use handshake::{check, Refused};
pub use reader::Reader;

use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The read half of an upgraded connection.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of an upgraded connection.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Waits for the upgrade and splits the connection; `None` when the client
/// went away before it completed.
pub async fn open(
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
    write_bytes: usize,
) -> Option<(FrameSink<WriteHalf>, Reader<ReadHalf>)> {
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return None;
        }
    };
    let (read, write, already_read) = split(upgraded);
    let reader = Reader::new(read, already_read, config).await;
    Some((FrameSink::new(write, write_bytes), reader))
}

/// The connection's halves and the bytes the server read past the handshake.
fn split(upgraded: Upgraded) -> (ReadHalf, WriteHalf, Bytes) {
    // `axum::serve` (hyper-util's auto connection) wraps the stream in a
    // type of its own, which its `downcast` sees through.
    let upgraded =
        match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded) {
            Ok(parts) => return tcp(parts.io.into_inner(), parts.read_buf),
            Err(u) => u,
        };
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return tcp(parts.io.into_inner(), parts.read_buf),
        Err(u) => u,
    };
    let (read, write) = tokio::io::split(TokioIo::new(upgraded));
    (Box::new(read), Box::new(write), Bytes::new())
}

fn tcp(stream: TcpStream, already_read: Bytes) -> (ReadHalf, WriteHalf, Bytes) {
    let (read, write) = stream.into_split();
    (Box::new(read), Box::new(write), already_read)
}
