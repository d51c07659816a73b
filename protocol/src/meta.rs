//! Publisher metadata: the optional middle frame of a three-frame ingress
//! message `[topic, meta, payload]`.
//!
//! ```text
//! u8  version (= 1)
//! u8  publisher id length P, then P bytes (UTF-8)
//! u8  trace id length T, then T bytes
//! u64 publish time, µs since the Unix epoch (big-endian)
//! ```
//! The broadcaster checks it and copies it verbatim after the origin id of
//! the stamp (flag bit 1).

/// Metadata format version.
pub const META_VERSION: u8 = 1;
/// Longest metadata frame: version, two length-prefixed ids, timestamp.
pub const MAX_META_LEN: usize = 1 + 1 + 255 + 1 + 255 + 8;

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
}

impl<'a> MetaRef<'a> {
    /// Reads and checks a metadata frame.
    pub fn decode(buf: &'a [u8]) -> Result<Self, MetaError> {
        let bad = MetaError::Malformed;
        if buf.first() != Some(&META_VERSION) {
            return Err(bad);
        }
        let plen = *buf.get(1).ok_or(bad)? as usize;
        let publisher = buf.get(2..2 + plen).ok_or(bad)?;
        let publisher = std::str::from_utf8(publisher).map_err(|_| bad)?;
        let tpos = 2 + plen;
        let tlen = *buf.get(tpos).ok_or(bad)? as usize;
        let trace_id = buf.get(tpos + 1..tpos + 1 + tlen).ok_or(bad)?;
        let ts = buf.get(tpos + 1 + tlen..).ok_or(bad)?;
        let ts: [u8; 8] = ts.try_into().map_err(|_| bad)?;
        Ok(Self {
            publisher,
            trace_id,
            published_us: u64::from_be_bytes(ts),
        })
    }
}

/// Encodes a metadata frame. Ids longer than 255 bytes are cut (publisher
/// ids at a UTF-8 character boundary).
pub fn encode(publisher: &str, trace_id: &[u8], published_us: u64) -> Vec<u8> {
    let mut cut = publisher.len().min(255);
    while !publisher.is_char_boundary(cut) {
        cut -= 1;
    }
    let p = &publisher.as_bytes()[..cut];
    let t = &trace_id[..trace_id.len().min(255)];
    let mut v = Vec::with_capacity(2 + p.len() + 1 + t.len() + 8);
    v.push(META_VERSION);
    v.push(p.len() as u8);
    v.extend_from_slice(p);
    v.push(t.len() as u8);
    v.extend_from_slice(t);
    v.extend_from_slice(&published_us.to_be_bytes());
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
    }
}
