//! The stamp: the binary header the origin broadcaster puts on every message.
//!
//! Layout (all integers big-endian), see `PROTOCOL.md`:
//!
//! ```text
//! offset size field
//!   0     1  version (= 1)
//!   1     1  flags (bit 0 heartbeat, bit 1 has publisher metadata, bit 2 ack)
//!   2     1  hops (0 at the origin, +1 per federation re-publish)
//!   3     1  origin length N (1..=64)
//!   4     2  lane (hash of the topic's first word)
//!   6     2  reserved (0)
//!   8     8  epoch (microseconds since the Unix epoch when the origin started)
//!  16     8  seq (per origin and epoch, +1 per message, first is 1)
//!  24     8  lane seq (per origin, epoch and lane, +1 per message, first is 1)
//!  32     8  timestamp (microseconds since the Unix epoch when stamped)
//!  40     N  origin id (UTF-8)
//!  40+N   …  publisher metadata (only with flag bit 1), see [`crate::meta`]
//! ```

use bytes::{BufMut, Bytes};

/// Stamp format version written by this crate.
pub const STAMP_VERSION: u8 = 1;
/// Size of the fixed part of a stamp, before the origin id.
pub const STAMP_FIXED_LEN: usize = 40;
/// Longest origin id.
pub const MAX_ORIGIN_LEN: usize = 64;
/// Flag: this message is a heartbeat.
pub const FLAG_HEARTBEAT: u8 = 0b01;
/// Flag: publisher metadata follows the origin id.
pub const FLAG_META: u8 = 0b10;
/// Flag: this message is an acknowledgement (see [`crate::ack`]).
pub const FLAG_ACK: u8 = 0b100;
/// Flag: this message is a session marker (see [`crate::SESSION_TOPIC`]).
pub const FLAG_SESSION: u8 = 0b1000;

/// Why stamp bytes could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// Shorter than the fixed part or than the origin length says.
    #[error("stamp is truncated")]
    Truncated,
    /// A version this crate does not know.
    #[error("unknown stamp version {0}")]
    Version(u8),
    /// Origin id is empty, too long or not UTF-8.
    #[error("bad origin id in stamp")]
    BadOrigin,
}

/// A decoded stamp. `origin` and `meta` borrow from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampRef<'a> {
    /// Flag bits.
    pub flags: u8,
    /// Federation hops so far.
    pub hops: u8,
    /// Lane of the topic (hash of its first word).
    pub lane: u16,
    /// Origin broadcaster's epoch.
    pub epoch: u64,
    /// Sequence number within origin and epoch.
    pub seq: u64,
    /// Sequence number within origin, epoch and lane.
    pub lane_seq: u64,
    /// When the origin stamped it, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Origin id.
    pub origin: &'a str,
    /// Publisher metadata bytes, if any (see [`crate::meta`]).
    pub meta: Option<&'a [u8]>,
}

impl<'a> StampRef<'a> {
    /// Reads a stamp frame.
    pub fn decode(buf: &'a [u8]) -> Result<Self, StampError> {
        if buf.len() < STAMP_FIXED_LEN {
            return Err(StampError::Truncated);
        }
        if buf[0] != STAMP_VERSION {
            return Err(StampError::Version(buf[0]));
        }
        let origin_len = buf[3] as usize;
        if origin_len == 0 || origin_len > MAX_ORIGIN_LEN {
            return Err(StampError::BadOrigin);
        }
        let end = STAMP_FIXED_LEN + origin_len;
        let origin_bytes = buf.get(STAMP_FIXED_LEN..end).ok_or(StampError::Truncated)?;
        let origin = std::str::from_utf8(origin_bytes).map_err(|_| StampError::BadOrigin)?;
        let flags = buf[1];
        let meta = (flags & FLAG_META != 0).then(|| &buf[end..]);
        Ok(Self {
            flags,
            hops: buf[2],
            lane: u16::from_be_bytes([buf[4], buf[5]]),
            epoch: be_u64(&buf[8..16]),
            seq: be_u64(&buf[16..24]),
            lane_seq: be_u64(&buf[24..32]),
            timestamp_us: be_u64(&buf[32..40]),
            origin,
            meta,
        })
    }

    /// True for heartbeats.
    pub fn is_heartbeat(&self) -> bool {
        self.flags & FLAG_HEARTBEAT != 0
    }

    /// True for acknowledgements ([`crate::ack`]).
    pub fn is_ack(&self) -> bool {
        self.flags & FLAG_ACK != 0
    }

    /// True for session markers ([`crate::SESSION_TOPIC`]).
    pub fn is_session(&self) -> bool {
        self.flags & FLAG_SESSION != 0
    }

    /// Writes this stamp (with `hops` as given) into `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        encode(
            out,
            &StampFields {
                flags: self.flags,
                hops: self.hops,
                lane: self.lane,
                epoch: self.epoch,
                seq: self.seq,
                lane_seq: self.lane_seq,
                timestamp_us: self.timestamp_us,
            },
            self.origin.as_bytes(),
            self.meta,
        );
    }
}

/// The fixed numeric fields of a stamp, for encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StampFields {
    /// Flag bits ([`FLAG_META`] is set by [`encode`] when meta is given).
    pub flags: u8,
    /// Federation hops so far.
    pub hops: u8,
    /// Lane (see [`lane_of`]).
    pub lane: u16,
    /// Origin epoch.
    pub epoch: u64,
    /// Sequence number.
    pub seq: u64,
    /// Lane sequence number.
    pub lane_seq: u64,
    /// Stamp time, µs since the Unix epoch.
    pub timestamp_us: u64,
}

/// Writes a stamp into `out`. `origin` must be 1..=64 bytes of UTF-8 (the
/// broadcaster checks its id once at start-up).
pub fn encode(out: &mut impl BufMut, f: &StampFields, origin: &[u8], meta: Option<&[u8]>) {
    let flags = if meta.is_some() {
        f.flags | FLAG_META
    } else {
        f.flags & !FLAG_META
    };
    out.put_u8(STAMP_VERSION);
    out.put_u8(flags);
    out.put_u8(f.hops);
    out.put_u8(origin.len().min(MAX_ORIGIN_LEN) as u8);
    out.put_u16(f.lane);
    out.put_u16(0);
    out.put_u64(f.epoch);
    out.put_u64(f.seq);
    out.put_u64(f.lane_seq);
    out.put_u64(f.timestamp_us);
    out.put_slice(&origin[..origin.len().min(MAX_ORIGIN_LEN)]);
    if let Some(m) = meta {
        out.put_slice(m);
    }
}

/// Encoded length of a stamp.
pub fn encoded_len(origin: &[u8], meta: Option<&[u8]>) -> usize {
    STAMP_FIXED_LEN + origin.len().min(MAX_ORIGIN_LEN) + meta.map_or(0, <[u8]>::len)
}

/// Encodes a stamp into a fresh `Bytes` (tests, tools, heartbeats).
pub fn to_bytes(f: &StampFields, origin: &[u8], meta: Option<&[u8]>) -> Bytes {
    let mut v = Vec::with_capacity(encoded_len(origin, meta));
    encode(&mut v, f, origin, meta);
    Bytes::from(v)
}

/// The lane of a topic: FNV-1a of its first word folded to 16 bits.
///
/// Every topic of one namespace (`chat.*`) shares a lane, so a subscriber
/// whose SUB prefix covers whole namespaces sees every lane seq and can tell
/// real loss from filtering.
pub fn lane_of(topic: &[u8]) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in crate::topic::first_word(topic) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ((h >> 16) ^ (h & 0xffff)) as u16
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Checks an origin id: 1..=64 characters of `A-Z a-z 0-9 . _ -`.
pub fn validate_origin(id: &str) -> Result<(), StampError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ORIGIN_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StampError::BadOrigin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = StampFields {
            flags: 0,
            hops: 2,
            lane: lane_of(b"chat.x"),
            epoch: 7,
            seq: 42,
            lane_seq: 3,
            timestamp_us: 99,
        };
        let b = to_bytes(&f, b"b1", Some(b"\x01meta"));
        assert_eq!(b.len(), encoded_len(b"b1", Some(b"\x01meta")));
        let s = StampRef::decode(&b).unwrap();
        assert_eq!((s.epoch, s.seq, s.lane_seq, s.hops), (7, 42, 3, 2));
        assert_eq!(s.origin, "b1");
        assert_eq!(s.meta, Some(&b"\x01meta"[..]));
        assert_eq!(s.lane, lane_of(b"chat.y"));
        let mut again = Vec::new();
        s.encode(&mut again);
        assert_eq!(&again[..], &b[..]);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(StampRef::decode(b"short"), Err(StampError::Truncated));
        let mut b = to_bytes(&StampFields::default(), b"origin", None).to_vec();
        b.truncate(42);
        assert_eq!(StampRef::decode(&b), Err(StampError::Truncated));
        b[0] = 9;
        assert_eq!(StampRef::decode(&b), Err(StampError::Version(9)));
    }
}
