//! Publisher metadata: the optional middle frame of a three-frame ingress
//! message `[topic, meta, payload]`.
//!
//! ```text
//! u8  version (1 or 2)
//! u8  publisher id length P, then P bytes (UTF-8)
//! u8  trace id length T, then T bytes
//! u64 publish time, µs since the Unix epoch (big-endian)
//! u64 publisher session (version 2 only): names one publisher instance, never 0
//! u64 publisher seq (version 2 only): per session, first 1, +1 per message
//! ```
//! The broadcaster checks it and copies it verbatim after the origin id of
//! the stamp (flag bit 1). With version 2 it also drops a re-sent message
//! (publisher seq at or below the highest it stamped for that session) and
//! acknowledges what it stamped (see [`crate::ack`]). The session, not the
//! publisher id, keys the dedup: two processes that share an id, or one
//! process restarted with its id, never shadow each other's seqs.

/// Metadata format version without a publisher seq.
pub const META_VERSION: u8 = 1;
/// Metadata format version with a publisher session and seq (confirmed publish).
pub const META_VERSION_SEQ: u8 = 2;
/// Longest metadata frame: version, two length-prefixed ids, timestamp,
/// publisher session and seq.
pub const MAX_META_LEN: usize = 1 + 1 + 255 + 1 + 255 + 8 + 16;

/// Where a version 2 message stands in its publisher's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublisherSeq {
    /// One publisher instance (random, never 0).
    pub session: u64,
    /// Its message count: first 1, +1 per message (never 0).
    pub seq: u64,
}

/// Why a metadata frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Wrong version, wrong lengths or non-UTF-8 publisher id.
    #[error("malformed publisher metadata frame")]
    Malformed,
}

/// Decoded metadata, borrowing the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaRef<'a> {
    /// Who published (e.g. `worker-3`).
    pub publisher: &'a str,
    /// Opaque trace id (may be empty).
    pub trace_id: &'a [u8],
    /// When the publisher sent it, µs since the Unix epoch.
    pub published_us: u64,
    /// The publisher's session and sequence number (version 2), `None` in
    /// version 1.
    pub publisher_seq: Option<PublisherSeq>,
}

impl<'a> MetaRef<'a> {
    /// Reads and checks a metadata frame.
    pub fn decode(buf: &'a [u8]) -> Result<Self, MetaError> {
        let bad = MetaError::Malformed;
        let version = *buf.first().ok_or(bad)?;
        if version != META_VERSION && version != META_VERSION_SEQ {
            return Err(bad);
        }
        let plen = *buf.get(1).ok_or(bad)? as usize;
        let publisher = buf.get(2..2 + plen).ok_or(bad)?;
        let publisher = std::str::from_utf8(publisher).map_err(|_| bad)?;
        let tpos = 2 + plen;
        let tlen = *buf.get(tpos).ok_or(bad)? as usize;
        let trace_id = buf.get(tpos + 1..tpos + 1 + tlen).ok_or(bad)?;
        let rest = buf.get(tpos + 1 + tlen..).ok_or(bad)?;
        let (ts, publisher_seq) = match (version, rest.len()) {
            (META_VERSION, 8) => (rest, None),
            (META_VERSION_SEQ, 24) => {
                let session: [u8; 8] = rest[8..16].try_into().map_err(|_| bad)?;
                let seq: [u8; 8] = rest[16..].try_into().map_err(|_| bad)?;
                let p = PublisherSeq {
                    session: u64::from_be_bytes(session),
                    seq: u64::from_be_bytes(seq),
                };
                if p.session == 0 || p.seq == 0 {
                    return Err(bad);
                }
                (&rest[..8], Some(p))
            }
            _ => return Err(bad),
        };
        let ts: [u8; 8] = ts.try_into().map_err(|_| bad)?;
        Ok(Self {
            publisher,
            trace_id,
            published_us: u64::from_be_bytes(ts),
            publisher_seq,
        })
    }
}

/// Encodes a metadata frame. Ids longer than 255 bytes are cut (publisher
/// ids at a UTF-8 character boundary).
pub fn encode(publisher: &str, trace_id: &[u8], published_us: u64) -> Vec<u8> {
    encode_inner(publisher, trace_id, published_us, None)
}

/// Encodes a version 2 metadata frame, carrying `publisher_seq` (a session
/// or seq of 0 is sent as 1). Ids are cut as in [`encode`].
pub fn encode_seq(
    publisher: &str,
    trace_id: &[u8],
    published_us: u64,
    publisher_seq: PublisherSeq,
) -> Vec<u8> {
    let p = PublisherSeq {
        session: publisher_seq.session.max(1),
        seq: publisher_seq.seq.max(1),
    };
    encode_inner(publisher, trace_id, published_us, Some(p))
}

fn encode_inner(
    publisher: &str,
    trace_id: &[u8],
    published_us: u64,
    seq: Option<PublisherSeq>,
) -> Vec<u8> {
    let mut cut = publisher.len().min(255);
    while !publisher.is_char_boundary(cut) {
        cut -= 1;
    }
    let p = &publisher.as_bytes()[..cut];
    let t = &trace_id[..trace_id.len().min(255)];
    let mut v = Vec::with_capacity(2 + p.len() + 1 + t.len() + 24);
    v.push(if seq.is_some() {
        META_VERSION_SEQ
    } else {
        META_VERSION
    });
    v.push(p.len() as u8);
    v.extend_from_slice(p);
    v.push(t.len() as u8);
    v.extend_from_slice(t);
    v.extend_from_slice(&published_us.to_be_bytes());
    if let Some(s) = seq {
        v.extend_from_slice(&s.session.to_be_bytes());
        v.extend_from_slice(&s.seq.to_be_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let b = encode("worker-1", b"abc", 5);
        let m = MetaRef::decode(&b).unwrap();
        assert_eq!(
            (m.publisher, m.trace_id, m.published_us),
            ("worker-1", &b"abc"[..], 5)
        );
        assert!(MetaRef::decode(&b[..b.len() - 1]).is_err());
        assert!(MetaRef::decode(b"").is_err());
        assert!(MetaRef::decode(b"\x02").is_err());
        assert!(MetaRef::decode(&[1, 200, 0]).is_err());
        assert_eq!(m.publisher_seq, None);
    }

    #[test]
    fn version_2_carries_the_publisher_seq() {
        let ps = |session, seq| PublisherSeq { session, seq };
        let b = encode_seq("worker-1", b"t", 5, ps(9, 42));
        assert_eq!(b[0], META_VERSION_SEQ);
        let m = MetaRef::decode(&b).unwrap();
        assert_eq!(
            (m.publisher, m.published_us, m.publisher_seq),
            ("worker-1", 5, Some(ps(9, 42)))
        );
        // A v2 frame without its seq, a v1 frame with one, and zeros are refused.
        assert!(MetaRef::decode(&b[..b.len() - 8]).is_err());
        let mut v1_long = encode("w", b"", 5);
        v1_long.extend_from_slice(&[7; 16]);
        assert!(MetaRef::decode(&v1_long).is_err());
        for at in [16, 8] {
            let mut zero = encode_seq("w", b"", 5, ps(1, 1));
            let n = zero.len();
            zero[n - at..n - at + 8].copy_from_slice(&0u64.to_be_bytes());
            assert!(MetaRef::decode(&zero).is_err());
        }
        let long = encode_seq(&"p".repeat(300), &[7; 300], 1, ps(u64::MAX, u64::MAX));
        assert_eq!(long.len(), MAX_META_LEN);
        assert!(MetaRef::decode(&long).is_ok());
    }
}
