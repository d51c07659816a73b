//! The bytes of a ZMTP 3 SUB connection, without I/O: our greeting and
//! READY, the peer's greeting and READY checked, subscription messages, and
//! whole messages cut out of a read buffer (zero-copy slices), every frame
//! header checked against a limit before its body is waited for.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

/// Flag bit: more frames follow.
const MORE: u8 = 0x01;
/// Flag bit: 8-byte length.
const LONG: u8 = 0x02;
/// Flag bit: a command frame.
const COMMAND: u8 = 0x04;

/// Length of a ZMTP 3 greeting.
pub(super) const GREETING_LEN: usize = 64;

/// Frames of a broadcast: topic, stamp, payload.
const MAX_KEPT: usize = 3;
/// Most frames one message may have (a broadcast has three): more ends the
/// connection, so a message's frames are never re-walked without bound.
const MAX_FRAMES: usize = 16;

/// Why the connection cannot go on (each ends it; the task reconnects).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// Not a ZMTP 3 NULL peer, or a peer that is not a PUB.
    #[error("handshake: {0}")]
    Handshake(&'static str),
    /// A frame header announced more than the limit.
    #[error("peer announced a {announced}-byte frame; the limit is {limit}")]
    Oversize { announced: u64, limit: usize },
    /// Flag bits ZMTP does not define, or a command inside a message.
    #[error("invalid frame flags {0:#04x}")]
    BadFlags(u8),
    /// A message of more than [`MAX_FRAMES`] frames, or whose frames
    /// together exceed the frame limit.
    #[error("message of over {MAX_FRAMES} frames or over the frame limit")]
    MessageTooLarge,
}

/// Our greeting: signature, version 3.0, NULL mechanism, as-server 0.
pub(super) fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Checks the peer's greeting (ZMTP ≥ 3, NULL mechanism).
pub(super) fn check_greeting(g: &[u8]) -> Result<(), FrameError> {
    if g.len() < GREETING_LEN || g[0] != 0xff || g[9] != 0x7f {
        return Err(FrameError::Handshake("not a ZMTP peer"));
    }
    if g[10] < 3 {
        return Err(FrameError::Handshake("ZMTP version below 3"));
    }
    if &g[12..16] != b"NULL" || g[16..32].iter().any(|&b| b != 0) {
        return Err(FrameError::Handshake("security mechanism is not NULL"));
    }
    Ok(())
}

/// Our READY command frame: `Socket-Type` = `SUB`.
pub(super) fn ready() -> Vec<u8> {
    let name = b"Socket-Type";
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    body.extend_from_slice(&3u32.to_be_bytes());
    body.extend_from_slice(b"SUB");
    let mut out = vec![COMMAND, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

/// Checks the peer's READY command body: a publisher (`PUB` / `XPUB`).
pub(super) fn check_ready(body: &[u8]) -> Result<(), FrameError> {
    let bad = FrameError::Handshake("first command is not a READY from a PUB");
    let Some(rest) = body.strip_prefix(b"\x05READY") else {
        return Err(bad);
    };
    let mut props = rest;
    while let Some((&nlen, tail)) = props.split_first() {
        let nlen = usize::from(nlen);
        let (name, tail) = tail.split_at_checked(nlen).ok_or(bad.clone())?;
        let (vlen, tail) = tail.split_at_checked(4).ok_or(bad.clone())?;
        let vlen = u32::from_be_bytes([vlen[0], vlen[1], vlen[2], vlen[3]]);
        let vlen = usize::try_from(vlen).map_err(|_| bad.clone())?;
        let (value, tail) = tail.split_at_checked(vlen).ok_or(bad.clone())?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            return match value {
                b"PUB" | b"XPUB" => Ok(()),
                _ => Err(bad),
            };
        }
        props = tail;
    }
    Err(bad)
}

/// A subscription change as a ZMTP 3.0 message (`\x01prefix` / `\x00prefix`),
/// which ZMTP 3.1 peers accept too.
pub(super) fn subscription(prefix: &str, subscribe: bool) -> Vec<u8> {
    let len = prefix.len() + 1;
    let mut out = Vec::with_capacity(len + 9);
    if len <= 255 {
        out.extend_from_slice(&[0, len as u8]);
    } else {
        out.push(LONG);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.push(u8::from(subscribe));
    out.extend_from_slice(prefix.as_bytes());
    out
}

/// A frame header at the start of `buf`: (header length, body length,
/// flags), `None` while incomplete.
fn header(buf: &[u8], limit: usize) -> Result<Option<(usize, usize, u8)>, FrameError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    if flags & !(MORE | LONG | COMMAND) != 0 {
        return Err(FrameError::BadFlags(flags));
    }
    let (hlen, announced) = if flags & LONG != 0 {
        let Some(b) = buf.get(1..9) else {
            return Ok(None);
        };
        let mut n = [0u8; 8];
        n.copy_from_slice(b);
        (9, u64::from_be_bytes(n))
    } else {
        let Some(&n) = buf.get(1) else {
            return Ok(None);
        };
        (2, u64::from(n))
    };
    match usize::try_from(announced) {
        Ok(len) if len <= limit => Ok(Some((hlen, len, flags))),
        _ => Err(FrameError::Oversize { announced, limit }),
    }
}

/// A message of three frames (topic, stamp, payload) cut out of the read
/// buffer as one slice: one refcount for the whole message, the topic and
/// stamp read in place, the payload handed on without a copy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Broadcast {
    bytes: Bytes,
    topic: Range<usize>,
    stamp: Range<usize>,
    /// Where the payload starts; it runs to the end (the last frame).
    payload: usize,
}

impl Broadcast {
    pub(crate) fn topic(&self) -> &[u8] {
        &self.bytes[self.topic.clone()]
    }

    pub(crate) fn stamp(&self) -> &[u8] {
        &self.bytes[self.stamp.clone()]
    }

    pub(crate) fn payload(&self) -> &[u8] {
        &self.bytes[self.payload..]
    }

    /// The payload, a slice of the read buffer (no copy, no new refcount).
    pub(crate) fn into_payload(mut self) -> Bytes {
        self.bytes.advance(self.payload);
        self.bytes
    }
}

/// What [`Frames::next`] found at the head of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A message of three frames: topic, stamp, payload.
    Broadcast(Broadcast),
    /// A message of another frame count (not a broadcast: skipped).
    Other(usize),
    /// A command frame's body (READY during the handshake, PING, …).
    Command(Bytes),
}

/// Cuts whole messages out of the read buffer. A message is taken only
/// once all its frames are buffered; frames are slices of the buffer.
#[derive(Debug)]
pub(crate) struct Frames {
    /// Unparsed bytes read from the socket.
    pub(super) buf: BytesMut,
    limit: usize,
    /// Bytes still missing for the next item (a hint for the read size).
    pub(super) missing: usize,
}

impl Frames {
    /// An empty buffer; frames longer than `limit` end the connection.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            limit,
            missing: 1,
        }
    }

    /// Changes the frame size limit (the handshake uses a small one).
    pub(super) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The next whole item in the buffer, or `None` until more is read.
    pub(super) fn next(&mut self) -> Result<Option<Item>, FrameError> {
        // First walk the headers without consuming: is the message whole?
        // The bodies of the first three frames are noted on the way.
        let mut pos = 0;
        let mut count = 0;
        let mut body = 0usize;
        let mut bodies = [0..0, 0..0, 0..0];
        loop {
            let Some((hlen, len, flags)) = header(&self.buf[pos..], self.limit)? else {
                self.missing = 1;
                return Ok(None);
            };
            let end = pos + hlen + len;
            if end > self.buf.len() {
                self.missing = end - self.buf.len();
                return Ok(None);
            }
            if flags & COMMAND != 0 {
                if count > 0 {
                    // A command inside a message: ZMTP forbids it.
                    return Err(FrameError::BadFlags(flags));
                }
                self.buf.advance(hlen);
                return Ok(Some(Item::Command(self.buf.split_to(len).freeze())));
            }
            if let Some(b) = bodies.get_mut(count) {
                *b = pos + hlen..end;
            }
            count += 1;
            body = body.saturating_add(len);
            if count > MAX_FRAMES || body > self.limit {
                return Err(FrameError::MessageTooLarge);
            }
            pos = end;
            if flags & MORE == 0 {
                break;
            }
        }
        if count != MAX_KEPT {
            self.buf.advance(pos);
            return Ok(Some(Item::Other(count)));
        }
        let [topic, stamp, payload] = bodies;
        Ok(Some(Item::Broadcast(Broadcast {
            bytes: self.buf.split_to(pos).freeze(),
            topic,
            stamp,
            payload: payload.start,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(more: bool, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let flag = u8::from(more);
        if body.len() <= 255 {
            out.extend_from_slice(&[flag, body.len() as u8]);
        } else {
            out.push(flag | LONG);
            out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn whole_messages_only_and_zero_copy() {
        let mut f = Frames::new(1024);
        let mut wire = frame(true, b"a.b");
        wire.extend(frame(true, b"stamp"));
        wire.extend(frame(false, &[7; 300]));
        wire.extend(frame(false, b"single"));
        f.buf.extend_from_slice(&wire[..10]);
        assert_eq!(f.next(), Ok(None));
        f.buf.extend_from_slice(&wire[10..]);
        let Ok(Some(Item::Broadcast(b))) = f.next() else {
            panic!("no broadcast")
        };
        assert_eq!(
            (b.topic(), b.stamp(), b.payload().len()),
            (&b"a.b"[..], &b"stamp"[..], 300)
        );
        let payload = b.into_payload();
        assert_eq!(&payload[..], &[7; 300][..]);
        assert_eq!(f.next(), Ok(Some(Item::Other(1))));
        assert_eq!(f.next(), Ok(None));
        assert!(f.buf.is_empty());
    }

    #[test]
    fn limits_and_flags() {
        let mut f = Frames::new(100);
        f.buf.extend_from_slice(&[LONG, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(matches!(
            f.next(),
            Err(FrameError::Oversize { limit: 100, .. })
        ));
        let mut f = Frames::new(100);
        f.buf.extend_from_slice(&[0x80, 0]);
        assert_eq!(f.next(), Err(FrameError::BadFlags(0x80)));
        let mut f = Frames::new(100);
        f.buf.extend_from_slice(&[LONG, 0, 0, 0]);
        assert_eq!(f.next(), Ok(None));
        // Frames within the limit, a message over it (or over 16 frames).
        let mut f = Frames::new(100);
        f.buf.extend(frame(true, &[0; 60]));
        f.buf.extend(frame(true, &[0; 60]));
        assert_eq!(f.next(), Err(FrameError::MessageTooLarge));
        let mut f = Frames::new(100);
        for _ in 0..MAX_FRAMES + 1 {
            f.buf.extend(frame(true, b""));
        }
        assert_eq!(f.next(), Err(FrameError::MessageTooLarge));
    }

    #[test]
    fn commands_between_messages() {
        let mut f = Frames::new(100);
        f.buf
            .extend_from_slice(&[COMMAND, 5, 4, b'P', b'I', b'N', b'G']);
        assert_eq!(
            f.next(),
            Ok(Some(Item::Command(Bytes::from_static(b"\x04PING"))))
        );
        let mut f = Frames::new(100);
        f.buf.extend_from_slice(&[MORE, 1, b'x', COMMAND, 0]);
        assert!(f.next().is_err());
    }

    /// Feeds `wire` in pieces of `cuts` lengths, taking items after each:
    /// what a connection does as reads arrive. Stops at the first error.
    fn feed(f: &mut Frames, wire: &[u8], cuts: &[usize]) -> (Vec<Item>, Option<FrameError>) {
        let (mut items, mut at) = (Vec::new(), 0);
        let mut cuts = cuts.iter().cycle();
        while at < wire.len() {
            let n = (*cuts.next().unwrap_or(&1)).clamp(1, wire.len() - at);
            f.buf.extend_from_slice(&wire[at..at + n]);
            at += n;
            loop {
                match f.next() {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break,
                    Err(e) => return (items, Some(e)),
                }
            }
        }
        (items, None)
    }

    proptest::proptest! {
        /// Any bytes from a broadcaster, in any read split: no panic, an
        /// error or items whose bodies all come from the bytes fed (never
        /// more than was read), and what is buffered is only what is left.
        #[test]
        fn any_bytes_any_split_is_an_error_or_a_bounded_item(
            wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..64, 1..8),
            limit in 0usize..300,
        ) {
            let mut f = Frames::new(limit);
            let (items, err) = feed(&mut f, &wire, &cuts);
            let mut taken = 0usize;
            for item in &items {
                taken += match item {
                    Item::Broadcast(b) => [b.topic(), b.stamp(), b.payload()].iter().map(|p| {
                        proptest::prop_assert!(p.len() <= limit);
                        Ok(p.len())
                    }).sum::<Result<usize, proptest::test_runner::TestCaseError>>()?,
                    Item::Command(body) => body.len(),
                    Item::Other(n) => { proptest::prop_assert!(*n >= 1 && *n <= MAX_FRAMES); 0 }
                };
            }
            proptest::prop_assert!(taken + f.buf.len() <= wire.len());
            if err.is_none() {
                proptest::prop_assert!(f.buf.len() <= wire.len());
            }
        }

        /// Valid messages come out whole and unchanged whatever the split.
        #[test]
        fn valid_messages_round_trip_in_any_split(
            msgs in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 1..5),
                1..6,
            ),
            cuts in proptest::collection::vec(1usize..80, 1..8),
        ) {
            let mut wire = Vec::new();
            for m in &msgs {
                for (i, body) in m.iter().enumerate() {
                    wire.extend(frame(i + 1 < m.len(), body));
                }
            }
            let mut f = Frames::new(1 << 20);
            let (items, err) = feed(&mut f, &wire, &cuts);
            proptest::prop_assert!(err.is_none(), "{err:?}");
            proptest::prop_assert_eq!(items.len(), msgs.len());
            for (item, m) in items.iter().zip(&msgs) {
                match item {
                    Item::Broadcast(b) => {
                        proptest::prop_assert_eq!(m.len(), 3);
                        for (p, body) in [b.topic(), b.stamp(), b.payload()].iter().zip(m) {
                            proptest::prop_assert_eq!(&p[..], &body[..]);
                        }
                    }
                    Item::Other(n) => proptest::prop_assert_eq!(*n, m.len()),
                    Item::Command(_) => proptest::prop_assert!(false, "no command was sent"),
                }
            }
            proptest::prop_assert!(f.buf.is_empty());
        }
    }

    #[test]
    fn handshake_pieces() {
        assert_eq!(check_greeting(&greeting()), Ok(()));
        let mut bad = greeting();
        bad[10] = 2;
        assert!(check_greeting(&bad).is_err());
        let ours = ready();
        assert_eq!(ours[0], COMMAND);
        // Our own READY says SUB: not what a SUB accepts from its peer.
        assert!(check_ready(&ours[2..]).is_err());
        let pub_ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x03PUB";
        assert_eq!(check_ready(pub_ready), Ok(()));
        assert!(check_ready(b"\x05READY\x0bSocket-Type\xff\xff\xff\xffPUB").is_err());
        assert_eq!(subscription("ab", true), b"\x00\x03\x01ab");
        assert_eq!(subscription("", false), b"\x00\x01\x00");
    }
}
