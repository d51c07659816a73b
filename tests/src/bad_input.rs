//! Malformed ingress messages, each with the rejection reason the
//! broadcaster counts it under (`fanfare_ingress_rejected_total{reason}`).

use bytes::Bytes;

/// One malformed message and the reason label it must be counted under.
#[derive(Debug, Clone)]
pub struct BadMessage {
    /// Expected `reason` label.
    pub reason: &'static str,
    /// What is wrong, for failure messages.
    pub what: &'static str,
    /// The frames sent.
    pub frames: Vec<Bytes>,
}

fn bad(reason: &'static str, what: &'static str, frames: &[&[u8]]) -> BadMessage {
    BadMessage {
        reason,
        what,
        frames: frames.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
    }
}

/// Every kind of malformed message a foreign peer may send, for a
/// broadcaster whose `--max-payload` is `max_payload` (which must be at
/// least 64 bytes).
pub fn bad_messages(max_payload: usize) -> Vec<BadMessage> {
    let long_topic = vec![b't'; 257];
    let big_payload = vec![b'p'; max_payload + 1];
    let many: Vec<&[u8]> = std::iter::once(&b"bad.many"[..])
        .chain(std::iter::repeat_n(&b"x"[..], 20))
        .collect();
    vec![
        bad("frame_count", "one frame", &[b"bad.one-frame"]),
        bad(
            "frame_count",
            "four frames",
            &[b"bad.four", b"a", b"b", b"c"],
        ),
        bad("frame_count", "21 frames", &many),
        bad("bad_topic", "empty topic", &[b"", b"x"]),
        bad("bad_topic", "non-UTF-8 topic", &[b"bad.\xff\xfe", b"x"]),
        bad("bad_topic", "257-byte topic", &[&long_topic, b"x"]),
        bad("bad_topic", "empty word", &[b"bad..word", b"x"]),
        bad("bad_topic", "wildcard", &[b"bad.*", b"x"]),
        bad("bad_topic", "whitespace", &[b"bad topic", b"x"]),
        bad(
            "reserved_topic",
            "forged heartbeat",
            &[b"_fanfare.hb.forged", b"x"],
        ),
        bad("reserved_topic", "reserved prefix", &[b"_fanfare.x", b"x"]),
        bad(
            "oversize_payload",
            "payload over max",
            &[b"bad.big", &big_payload],
        ),
        bad(
            "bad_meta",
            "meta of unknown version",
            &[b"bad.meta", b"\x09garbage", b"x"],
        ),
        bad(
            "bad_meta",
            "truncated meta",
            &[b"bad.meta", b"\x01\x05ab", b"x"],
        ),
    ]
}

/// Every reason label used by [`bad_messages`], with how many messages carry it.
pub fn expected_counts(msgs: &[BadMessage]) -> Vec<(&'static str, usize)> {
    let mut out: Vec<(&'static str, usize)> = Vec::new();
    for m in msgs {
        match out.iter_mut().find(|(r, _)| *r == m.reason) {
            Some((_, n)) => *n += 1,
            None => out.push((m.reason, 1)),
        }
    }
    out
}
