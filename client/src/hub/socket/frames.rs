//! The hub's websocket writer: a `Sink` of axum [`Message`]s over the
//! connection's write half that encodes only a frame's header (2–10 bytes,
//! server frames are not masked) and writes the frame's shared payload
//! bytes as they are: every frame fed before a flush goes out in one
//! vectored write (`writev`), with no copy of the payloads and no buffer
//! kept per connection.
//!
//! Bounds: at most [`MAX_FRAMES`] frames or `max_bytes` bytes are held
//! before the sink asks to be flushed (`poll_ready` writes them first), so
//! one write call takes at most `2 × MAX_FRAMES` slices. The queue's
//! allocation is dropped after a flush that emptied it if it grew past
//! [`KEEP`] frames, so an idle connection holds no more than that.
//!
//! A writer that cannot write vectored (`is_write_vectored` false: e.g. a
//! TLS stream) gets the same slices copied into one buffer per write call,
//! so frames never go out one small write each.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::ws::Message;
use bytes::Bytes;
use futures::Sink;
use tokio::io::AsyncWrite;

/// Most frames held before a write (a connection writer's batch).
pub const MAX_FRAMES: usize = 64;
/// Frames' worth of queue kept allocated once flushed.
pub const KEEP: usize = 8;
/// Most bytes copied into one write call for a writer that cannot write
/// vectored (a TLS record's worth).
const MAX_COPY: usize = 16 << 10;
/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// One frame waiting for the socket: its header and its payload.
struct Pending {
    head: [u8; 10],
    head_len: u8,
    body: Bytes,
}

impl Pending {
    fn new(opcode: u8, body: Bytes) -> Self {
        let mut head = [0u8; 10];
        head[0] = 0x80 | opcode; // FIN: the hub never fragments
        let len = body.len();
        let head_len = match (u8::try_from(len), u16::try_from(len)) {
            (Ok(n), _) if n < 126 => {
                head[1] = n;
                2
            }
            (_, Ok(n)) => {
                head[1] = 126;
                head[2..4].copy_from_slice(&n.to_be_bytes());
                4
            }
            _ => {
                head[1] = 127;
                head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
                10
            }
        };
        Self {
            head,
            head_len,
            body,
        }
    }

    fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }

    fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }
}

/// A control frame's payload, cut to what a control frame may carry.
fn control(mut payload: Bytes) -> Bytes {
    payload.truncate(MAX_CONTROL_PAYLOAD);
    payload
}

/// Writes websocket frames to `W` (see the module documentation).
pub struct FrameSink<W> {
    io: W,
    queue: VecDeque<Pending>,
    /// Bytes of the queue's front frame already written.
    written: usize,
    /// Bytes queued (whole frames, including what `written` counts).
    queued: usize,
    max_bytes: usize,
}

impl<W: AsyncWrite + Unpin> FrameSink<W> {
    /// A sink that writes once `max_bytes` (at least one frame) or
    /// [`MAX_FRAMES`] frames are held, or when flushed.
    pub fn new(io: W, max_bytes: usize) -> Self {
        Self {
            io,
            queue: VecDeque::new(),
            written: 0,
            queued: 0,
            max_bytes,
        }
    }

    /// One write call of as much of the queue as fits in its slices.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); 2 * MAX_FRAMES];
        let mut n = 0;
        let mut skip = self.written;
        'frames: for p in &self.queue {
            for part in [p.head(), &p.body[..]] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                if n == slices.len() {
                    break 'frames;
                }
                slices[n] = IoSlice::new(&part[skip..]);
                skip = 0;
                n += 1;
            }
        }
        let io = Pin::new(&mut self.io);
        if io.is_write_vectored() {
            return io.poll_write_vectored(cx, &slices[..n]);
        }
        let mut whole = Vec::with_capacity(self.queued.min(MAX_COPY));
        for s in &slices[..n] {
            let room = MAX_COPY - whole.len();
            whole.extend_from_slice(&s[..s.len().min(room)]);
            if whole.len() == MAX_COPY {
                break;
            }
        }
        io.poll_write(cx, &whole)
    }

    /// Drops the frames the last `n` bytes written completed.
    fn advance(&mut self, n: usize) {
        let mut n = self.written.saturating_add(n);
        while let Some(front) = self.queue.front() {
            let len = front.len();
            if n < len {
                break;
            }
            n -= len;
            self.queued = self.queued.saturating_sub(len);
            self.queue.pop_front();
        }
        self.written = n;
    }

    fn push(&mut self, p: Pending) {
        self.queued = self.queued.saturating_add(p.len());
        // Past what is kept between batches, grow once to a whole batch
        // (not by doubling, a reallocation each time).
        if self.queue.len() == self.queue.capacity() && self.queue.len() >= KEEP {
            self.queue
                .reserve_exact(MAX_FRAMES.saturating_sub(self.queue.len()).max(1));
        }
        self.queue.push_back(p);
    }
}

impl<W: AsyncWrite + Unpin> Sink<Message> for FrameSink<W> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.queue.len() < MAX_FRAMES && self.queued < self.max_bytes {
            return Poll::Ready(Ok(()));
        }
        self.poll_flush(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, m: Message) -> io::Result<()> {
        let p = match m {
            Message::Text(t) => Pending::new(OP_TEXT, Bytes::from(t)),
            Message::Binary(b) => Pending::new(OP_BINARY, b),
            Message::Ping(b) => Pending::new(OP_PING, control(b)),
            Message::Pong(b) => Pending::new(OP_PONG, control(b)),
            Message::Close(c) => {
                let mut body = Vec::new();
                if let Some(c) = c {
                    body.extend_from_slice(&c.code.to_be_bytes());
                    // The reason, cut on a character boundary to fit.
                    let mut end = c.reason.len().min(MAX_CONTROL_PAYLOAD - 2);
                    while !c.reason.is_char_boundary(end) {
                        end -= 1;
                    }
                    body.extend_from_slice(&c.reason.as_bytes()[..end]);
                }
                Pending::new(OP_CLOSE, Bytes::from(body))
            }
        };
        self.push(p);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while !this.queue.is_empty() {
            match ready!(this.poll_write_some(cx))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => this.advance(n),
            }
        }
        if this.queue.capacity() > KEEP {
            this.queue = VecDeque::new();
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::{CloseFrame, Utf8Bytes};
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message as Ts;

    use super::*;

    /// A writer that takes at most `step` bytes per call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        vectored: bool,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let mut left = self.step;
            for b in bufs {
                let n = b.len().min(left);
                self.out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(self.step - left))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn messages() -> Vec<Message> {
        vec![
            Message::Text(Utf8Bytes::from("{\"op\":\"event\"}")),
            Message::Text(Utf8Bytes::from("x".repeat(125))),
            Message::Text(Utf8Bytes::from("y".repeat(126))),
            Message::Binary(Bytes::from(vec![7u8; 70_000])),
            Message::Ping(Bytes::new()),
            Message::Pong(Bytes::from(vec![1u8; 300])),
            Message::Close(Some(CloseFrame {
                code: 4008,
                reason: Utf8Bytes::from_static("slow consumer"),
            })),
        ]
    }

    /// Decodes `bytes` with tungstenite as a browser would (client role;
    /// its answers to the ping and the close go nowhere).
    async fn decode(bytes: Vec<u8>) -> Vec<Ts> {
        let read = super::super::reader::ReadOnly(&bytes[..]);
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(read, Role::Client, None).await;
        let mut out = Vec::new();
        while let Some(m) = ws.next().await {
            match m {
                Ok(m) => out.push(m),
                Err(e) => panic!("after {} messages: {e}", out.len()),
            }
        }
        out
    }

    #[tokio::test]
    async fn frames_survive_any_partial_write_vectored_or_not() {
        for (step, vectored) in [
            (1, true),
            (7, true),
            (1000, false),
            (1 << 20, true),
            (1 << 20, false),
        ] {
            let io = Trickle {
                out: Vec::new(),
                step,
                vectored,
                calls: 0,
            };
            let mut sink = FrameSink::new(io, 1 << 20);
            for m in messages() {
                sink.feed(m).await.unwrap();
            }
            sink.flush().await.unwrap();
            assert_eq!(sink.queued, 0);
            assert_eq!(sink.written, 0);
            let got = decode(std::mem::take(&mut sink.io.out)).await;
            assert_eq!(got.len(), 7, "step {step}");
            assert_eq!(got[0], Ts::text("{\"op\":\"event\"}"));
            assert_eq!(got[1].len(), 125);
            assert_eq!(got[2].len(), 126);
            assert_eq!(got[3], Ts::binary(vec![7u8; 70_000]));
            assert_eq!(got[4], Ts::Ping(Bytes::new()));
            assert_eq!(got[5], Ts::Pong(Bytes::from(vec![1u8; 125])), "cut to 125");
            match &got[6] {
                Ts::Close(Some(c)) => {
                    assert_eq!(u16::from(c.code), 4008);
                    assert_eq!(c.reason.as_str(), "slow consumer");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_batch_is_one_write_and_the_queue_is_bounded() {
        let io = Trickle {
            out: Vec::new(),
            step: usize::MAX,
            vectored: true,
            calls: 0,
        };
        let mut sink = FrameSink::new(io, 1 << 20);
        for _ in 0..MAX_FRAMES {
            sink.feed(Message::Text("e".into())).await.unwrap();
        }
        assert_eq!(sink.io.calls, 0, "nothing written before the flush");
        sink.flush().await.unwrap();
        assert_eq!(sink.io.calls, 1, "one vectored write per batch");
        assert!(sink.queue.capacity() <= KEEP, "a flushed queue is let go");
        // Feeding past the bound writes what is held first.
        for _ in 0..=MAX_FRAMES {
            sink.feed(Message::Text("e".into())).await.unwrap();
        }
        assert_eq!(sink.io.calls, 2);
        assert_eq!(sink.queue.len(), 1);
        // And past the byte bound.
        let mut small = FrameSink::new(
            Trickle {
                out: Vec::new(),
                step: usize::MAX,
                vectored: true,
                calls: 0,
            },
            100,
        );
        for _ in 0..3 {
            small
                .feed(Message::Text("z".repeat(60).into()))
                .await
                .unwrap();
        }
        assert_eq!(small.io.calls, 1, "the third frame waits for the first two");
    }

    #[tokio::test]
    async fn a_real_socket_gets_the_frames() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut sink = FrameSink::new(a, 1 << 20);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.unwrap();
            all
        });
        for m in messages() {
            sink.feed(m).await.unwrap();
        }
        sink.close().await.unwrap();
        drop(sink);
        let bytes = reader.await.unwrap();
        assert_eq!(decode(bytes).await.len(), 7);
    }
}
