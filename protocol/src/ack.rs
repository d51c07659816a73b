//! Acknowledgements of confirmed publish: after each forwarder round a
//! broadcaster tells every publisher that sent version 2 metadata
//! ([`crate::meta::META_VERSION_SEQ`]) in that round the highest publisher
//! seq it has stamped for its session.
//!
//! Published on the broadcaster's own PUB socket on the topic
//! `_fanfare.ack.<session>` (the session as 16 lowercase hex digits) with a stamp whose flags carry
//! [`FLAG_ACK`](crate::stamp::FLAG_ACK), the broadcaster's origin id and
//! epoch, its last stamped seq as `seq` and lane / lane seq 0. Acks are local
//! to one broadcaster: they are not stored in history, not replayed and not
//! re-published by federation links. Payload (16 bytes, big-endian):
//!
//! ```text
//! u64 publisher seq: the highest this broadcaster stamped for the session
//! u64 seq: the stamp seq (this origin, this epoch) of that message
//! ```

use bytes::BufMut;

/// Acks are published on `_fanfare.ack.<session, 16 hex digits>`.
pub const ACK_PREFIX: &str = "_fanfare.ack.";
/// Length of an ack payload.
pub const ACK_LEN: usize = 16;

/// A decoded ack payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// Highest publisher seq stamped for the session named in the topic.
    pub publisher_seq: u64,
    /// The stamp seq given to that message by the acknowledging broadcaster.
    pub seq: u64,
}

/// Why an ack payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed ack payload")]
pub struct AckError;

impl Ack {
    /// Writes the payload.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u64(self.publisher_seq);
        out.put_u64(self.seq);
    }

    /// Reads a payload (exactly [`ACK_LEN`] bytes).
    pub fn decode(buf: &[u8]) -> Result<Self, AckError> {
        let b: &[u8; ACK_LEN] = buf.try_into().map_err(|_| AckError)?;
        let mut p = [0u8; 8];
        p.copy_from_slice(&b[..8]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[8..]);
        Ok(Self {
            publisher_seq: u64::from_be_bytes(p),
            seq: u64::from_be_bytes(s),
        })
    }
}

/// The ack topic of a publisher session.
pub fn topic(session: u64) -> String {
    format!("{ACK_PREFIX}{session:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let a = Ack {
            publisher_seq: 7,
            seq: u64::MAX,
        };
        let mut v = Vec::new();
        a.encode(&mut v);
        assert_eq!(v.len(), ACK_LEN);
        assert_eq!(Ack::decode(&v), Ok(a));
        assert!(Ack::decode(&v[..15]).is_err());
        assert!(Ack::decode(&[0; 17]).is_err());
        assert_eq!(topic(0xab), "_fanfare.ack.00000000000000ab");
    }
}
