//! The payload of a session marker (PROTOCOL.md, "Sessions"): two
//! big-endian u64s, what the connection missed since its previous marker
//! and how many subscription commands the broadcaster had applied for it
//! when the marker was queued.

/// Bytes of a marker's payload.
pub const MARKER_LEN: usize = 16;

/// A session marker's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marker {
    /// Messages this connection missed since its previous marker.
    pub missed: u64,
    /// Subscription commands (SUBSCRIBE and CANCEL, [`crate::SESSION_TOPIC`]
    /// included) the broadcaster had applied for this connection when it
    /// queued the marker. A subscriber that counts what it sent knows the
    /// marker follows its latest change when the two agree.
    pub changes: u64,
}

impl Marker {
    /// The payload's bytes.
    pub fn encode(&self) -> [u8; MARKER_LEN] {
        let mut out = [0; MARKER_LEN];
        out[..8].copy_from_slice(&self.missed.to_be_bytes());
        out[8..].copy_from_slice(&self.changes.to_be_bytes());
        out
    }

    /// Decodes a payload; `None` unless it is exactly [`MARKER_LEN`] bytes.
    pub fn decode(payload: &[u8]) -> Option<Marker> {
        let bytes: &[u8; MARKER_LEN] = payload.try_into().ok()?;
        let (missed, changes) = bytes.split_at(8);
        Some(Marker {
            missed: u64::from_be_bytes(missed.try_into().ok()?),
            changes: u64::from_be_bytes(changes.try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_lengths() {
        let m = Marker {
            missed: 7,
            changes: u64::MAX,
        };
        assert_eq!(Marker::decode(&m.encode()), Some(m));
        assert_eq!(Marker::decode(&m.encode()[..8]), None);
        assert_eq!(Marker::decode(&[0; 17]), None);
        assert_eq!(Marker::decode(&[]), None);
    }
}
