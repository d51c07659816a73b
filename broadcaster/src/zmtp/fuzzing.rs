//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable
//! test that replays their corpus (`broadcaster/tests/fuzz_corpus.rs`), so a
//! crash found once stays fixed in CI. Not part of the API.
//!
//! Both targets drive the real async code on in-memory streams that never
//! wait, polled with a no-op waker: a future that returns `Pending` here
//! would hang a real connection on a peer that has already sent everything,
//! so it fails the target.

use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, ReadBuf};

use super::frame::{FrameReader, ReadError, ZmtpFrame};
use super::handshake::{handshake as run_handshake, HandshakeError, SocketKind};
use super::subscription::Subscription;

/// One fuzz entry point.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus folder (`fuzz/corpus/<name>`).
pub const TARGETS: &[(&str, Target)] = &[("zmtp_frames", frames), ("zmtp_handshake", handshake)];

/// Frame limits the targets pick from (the first input byte chooses).
const LIMITS: [usize; 6] = [0, 1, 16, 255, 256, 1 << 20];

/// `[limit, chunk, wire…]`: reads `wire` as frames with the limit
/// `LIMITS[limit % 6]`, the stream giving at most `chunk % 17 + 1` bytes per
/// read. Checks that
/// * reading in small chunks gives the same frames and the same ending as
///   reading everything at once;
/// * no frame body exceeds the limit;
/// * `next_message` keeps at most `max_keep` frames, never more than it counts;
/// * when `has_buffered_message` says a message is buffered, `next_message`
///   returns it without reading the stream again;
/// * every single-frame message or command parses (or not) as a
///   subscription without panicking.
pub fn frames(data: &[u8]) {
    let [limit, chunk, wire @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(*limit) % LIMITS.len()];
    let chunk = usize::from(*chunk) % 17 + 1;

    let whole = all_frames(Stream::new(wire, wire.len().max(1)), limit);
    let chunked = all_frames(Stream::new(wire, chunk), limit);
    assert_eq!(whole.0, chunked.0, "frames differ by read size");
    assert_eq!(whole.1, chunked.1, "ending differs by read size");
    for f in &whole.0 {
        let body = match f {
            ZmtpFrame::Message { body, .. } => {
                let _ = Subscription::from_message(body);
                body
            }
            ZmtpFrame::Command(body) => {
                let _ = Subscription::from_command(body);
                body
            }
        };
        assert!(
            body.len() <= limit,
            "{}-byte frame past {limit}",
            body.len()
        );
    }

    let max_keep = chunk % 4;
    let stream = Stream::new(wire, chunk);
    let reads = stream.reads.clone();
    let mut reader = FrameReader::new(stream, limit);
    let mut kept = Vec::new();
    // Every message consumes at least one byte, so this ends.
    for _ in 0..=wire.len() {
        let buffered = reader.has_buffered_message();
        let before = reads.get();
        match block_on(reader.next_message(&mut kept, max_keep)) {
            Ok(Some(count)) => {
                assert!(kept.len() <= max_keep.min(count), "kept too many frames");
                if buffered {
                    assert_eq!(reads.get(), before, "buffered message needed a read");
                }
                let _ = reader.take_pong();
            }
            Ok(None) | Err(_) => {
                assert!(!buffered, "buffered message was not returned");
                return;
            }
        }
    }
    panic!("next_message did not reach the end of a finite stream");
}

/// `[kind, chunk, peer bytes…]`: runs the server handshake as
/// `SocketKind` `kind % 4` against `peer bytes` given `chunk % 17 + 1` bytes
/// per read. Checks that our greeting is always sent first; that success
/// means a peer type our socket accepts and a READY written; that a refused
/// type writes an ERROR; and, after success, reads the rest as frames with
/// the socket's limit.
pub fn handshake(data: &[u8]) {
    let [kind, chunk, peer @ ..] = data else {
        return;
    };
    let kind = [
        SocketKind::Pull,
        SocketKind::Pub,
        SocketKind::Router,
        SocketKind::Push,
    ][usize::from(*kind) % 4];
    let chunk = usize::from(*chunk) % 17 + 1;
    let max_frame = 64;
    let mut reader = FrameReader::new(Stream::new(peer, chunk), max_frame);
    let mut written: Vec<u8> = Vec::new();
    let result = block_on(run_handshake(&mut reader, &mut written, kind, max_frame));
    assert!(written.len() >= 64, "greeting not sent");
    assert_eq!(written[0], 0xff, "greeting signature");
    assert_eq!(&written[12..16], b"NULL", "greeting mechanism");
    let after_greeting = &written[64..];
    match result {
        Ok(peer_type) => {
            assert!(
                accepts(kind, &peer_type),
                "accepted {peer_type:?} for {kind:?}"
            );
            assert!(contains(after_greeting, b"\x05READY"), "READY not sent");
            let mut frames = Vec::new();
            for _ in 0..=peer.len() {
                match block_on(reader.next_message(&mut frames, 2)) {
                    Ok(Some(_)) => assert!(frames.iter().all(|f| f.len() <= max_frame)),
                    Ok(None) | Err(_) => return,
                }
            }
            panic!("frames after the handshake did not end");
        }
        Err(HandshakeError::Incompatible { peer, .. }) => {
            assert!(!accepts(kind, peer.as_bytes()) || peer.contains('\u{fffd}'));
            assert!(contains(after_greeting, b"\x05ERROR"), "ERROR not sent");
        }
        Err(HandshakeError::Read(ReadError::Io(e))) => panic!("in-memory stream failed: {e}"),
        Err(_) => {}
    }
}

/// Reads every frame: the frames, then how reading ended (`None`: cleanly).
fn all_frames(stream: Stream<'_>, limit: usize) -> (Vec<ZmtpFrame>, Option<String>) {
    let mut reader = FrameReader::new(stream, limit);
    let mut out = Vec::new();
    loop {
        match block_on(reader.next_frame()) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

/// Which peer socket types may talk to ours (ZMTP 3.0's table, written out
/// again here so the target does not trust the code it checks).
fn accepts(kind: SocketKind, peer: &[u8]) -> bool {
    let ok: &[&[u8]] = match kind {
        SocketKind::Pull => &[b"PUSH"],
        SocketKind::Pub => &[b"SUB", b"XSUB"],
        SocketKind::Router => &[b"DEALER", b"REQ", b"ROUTER"],
        SocketKind::Push => &[b"PULL"],
        SocketKind::Sub => &[b"PUB", b"XPUB"],
        SocketKind::Dealer => &[b"ROUTER"],
    };
    ok.contains(&peer)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

thread_local! {
    /// The readers arm Tokio timers (frame deadline, idle timeout), which
    /// need a runtime's time driver to exist; nothing here ever waits on one.
    static RUNTIME: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok();
}

/// Polls a future that must not wait (its streams are in memory), once,
/// inside a Tokio runtime context so it may arm timers.
fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| {
        let _entered = rt.as_ref().map(tokio::runtime::Runtime::enter);
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("waited on an in-memory stream"),
        }
    })
}

/// An in-memory stream that gives at most `chunk` bytes per read and counts
/// its reads.
struct Stream<'a> {
    rest: &'a [u8],
    chunk: usize,
    reads: Rc<Cell<usize>>,
}

impl<'a> Stream<'a> {
    fn new(data: &'a [u8], chunk: usize) -> Self {
        Self {
            rest: data,
            chunk,
            reads: Rc::new(Cell::new(0)),
        }
    }
}

impl AsyncRead for Stream<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.rest.len()).min(buf.remaining());
        let (now, later) = self.rest.split_at(n);
        buf.put_slice(now);
        self.rest = later;
        self.reads.set(self.reads.get() + 1);
        Poll::Ready(Ok(()))
    }
}

/// Seed inputs for the corpus (the committed seeds were written from these).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let greeting = {
        let mut g = vec![0u8; 64];
        g[0] = 0xff;
        g[9] = 0x7f;
        g[10] = 3;
        g[11] = 1;
        g[12..16].copy_from_slice(b"NULL");
        g
    };
    let mut out = Vec::new();
    let mut message = vec![5, 3];
    message.extend_from_slice(&[0x01, 3, b'a', b'b', b'c', 0x00, 2, 1, b'x']);
    message.extend_from_slice(&[0x04, 7, 4, b'P', b'I', b'N', b'G', 0, 1]);
    message.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 0, 0, 2, 0, b'z']);
    out.push(("zmtp_frames", "seed-mixed".to_owned(), message));
    let mut long = vec![3, 16, 0x06, 0, 0, 0, 0, 0, 0, 1, 0];
    long.extend_from_slice(&[7; 256]);
    out.push(("zmtp_frames", "seed-long-command".to_owned(), long));
    for (kind, name) in [
        (0u8, "PUSH"),
        (1, "SUB"),
        (2, "DEALER"),
        (3, "PULL"),
        (0, "PUB"),
    ] {
        let mut hs = vec![kind, 16];
        hs.extend_from_slice(&greeting);
        hs.extend_from_slice(&super::command::ready(name));
        hs.extend_from_slice(&[0x00, 4, 1, b'a', b'.', b'b']);
        out.push(("zmtp_handshake", format!("seed-{kind}-{name}"), hs));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_pass_their_targets() {
        for (target, _, data) in super::seeds() {
            let run = super::TARGETS
                .iter()
                .find(|(n, _)| *n == target)
                .map(|t| t.1);
            run.map_or_else(|| panic!("no target {target}"), |run| run(&data));
        }
    }

    #[test]
    fn half_a_greeting_then_end_of_stream_ends_the_handshake() {
        // Found by the fuzzer: this used to loop forever in `read_raw`.
        let mut data = vec![0u8, 16];
        data.extend_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f]);
        super::handshake(&data);
    }

    #[test]
    fn a_pub_peer_is_refused_by_the_pull_socket() {
        let seeds = super::seeds();
        let data = seeds
            .iter()
            .find(|s| s.1 == "seed-0-PUB")
            .map(|s| &s.2[..])
            .unwrap_or_default();
        super::handshake(data);
    }
}
