//! The hub's websocket reader: tungstenite parses what the browser sends
//! (masking, fragments, UTF-8, the size limits) from the connection's read
//! half, and its messages are handed on as axum [`Message`]s.
//!
//! Tungstenite would answer a ping or a close itself, through the stream it
//! reads from; here that stream's write side discards (the read half cannot
//! write), and the connection's writer answers instead: a ping with a pong
//! through the connection's queue, a close with the hub's close frame.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// A read half whose write side discards what tungstenite writes to it.
pub struct ReadOnly<R>(pub R);

impl<R: AsyncRead + Unpin> AsyncRead for ReadOnly<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for ReadOnly<R> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The browser's messages, read from `R`.
pub struct Reader<R> {
    ws: WebSocketStream<ReadOnly<R>>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads `read` with `config`, starting with `already_read` (what the
    /// HTTP server read past the handshake).
    pub async fn new(read: R, already_read: Bytes, config: WebSocketConfig) -> Self {
        let ws = WebSocketStream::from_partially_read(
            ReadOnly(read),
            already_read.to_vec(),
            tungstenite::protocol::Role::Server,
            Some(config),
        )
        .await;
        Self { ws }
    }
}

impl<R: AsyncRead + Unpin> Stream for Reader<R> {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let m = match std::task::ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(m)) => m,
            };
            if let Some(m) = to_axum(m) {
                return Poll::Ready(Some(m));
            }
        }
    }
}

/// The axum message of a tungstenite one (`None` for a raw frame, which a
/// reader never yields).
fn to_axum(m: tungstenite::Message) -> Option<Result<Message, tungstenite::Error>> {
    use tungstenite::Message as Ts;
    Some(Ok(match m {
        Ts::Text(t) => match Utf8Bytes::try_from(Bytes::from(t)) {
            Ok(t) => Message::Text(t),
            Err(e) => return Some(Err(tungstenite::Error::Utf8(e.to_string()))),
        },
        Ts::Binary(b) => Message::Binary(b),
        Ts::Ping(b) => Message::Ping(b),
        Ts::Pong(b) => Message::Pong(b),
        Ts::Close(c) => Message::Close(c.map(|c| CloseFrame {
            code: c.code.into(),
            reason: Utf8Bytes::from(c.reason.as_str()),
        })),
        Ts::Frame(_) => return None,
    }))
}
