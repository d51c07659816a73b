//! Heartbeats: published by every broadcaster on `_fanfare.hb.<origin>` at a
//! fixed interval, so subscribers notice gaps (and a dead broadcaster) even
//! when no traffic flows.
//!
//! The stamp carries flag bit 0, the origin, its epoch and, as `seq`, the last
//! seq it stamped (0 before the first). The payload:
//!
//! ```text
//! u64 oldest seq still in history (0 when empty)
//! u16 lane count L (at most MAX_HEARTBEAT_LANES)
//! L × { u16 lane, u64 last lane seq, u64 seq of that lane's last message }
//! optional: u8 R, then R bytes: the sender's replay endpoint (UTF-8)
//! ```
//!
//! The optional trailer lets a federation link learn its peer's replay
//! endpoint; readers that do not need it ignore it.

use bytes::BufMut;

/// Most lanes listed in one heartbeat: the most recently active ones, most
/// recent first (a heartbeat payload is at most 10 + 256 × 18 = 4,618 bytes).
pub const MAX_HEARTBEAT_LANES: usize = 256;

/// One lane's progress as told by a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneMark {
    /// Lane id.
    pub lane: u16,
    /// Last lane seq stamped.
    pub lane_seq: u64,
    /// Global seq of the lane's last message.
    pub seq: u64,
}

/// A decoded heartbeat payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// Oldest seq still held in history (0 when empty).
    pub oldest: u64,
    /// Progress of recently active lanes.
    pub lanes: Vec<LaneMark>,
    /// The sender's replay endpoint (`tcp://HOST:PORT`), when it says so.
    pub replay: Option<String>,
}

/// Longest replay endpoint a heartbeat carries.
pub const MAX_REPLAY_ENDPOINT: usize = 255;

/// Why a heartbeat payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed heartbeat payload")]
pub struct HeartbeatError;

impl Heartbeat {
    /// Writes the payload.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u64(self.oldest);
        let n = self.lanes.len().min(MAX_HEARTBEAT_LANES);
        out.put_u16(n as u16);
        for m in &self.lanes[..n] {
            out.put_u16(m.lane);
            out.put_u64(m.lane_seq);
            out.put_u64(m.seq);
        }
        if let Some(r) = self
            .replay
            .as_deref()
            .filter(|r| r.len() <= MAX_REPLAY_ENDPOINT)
        {
            out.put_u8(r.len() as u8);
            out.put_slice(r.as_bytes());
        }
    }

    /// Reads a payload.
    pub fn decode(buf: &[u8]) -> Result<Self, HeartbeatError> {
        let oldest = buf.get(..8).ok_or(HeartbeatError)?;
        let count = buf.get(8..10).ok_or(HeartbeatError)?;
        let count = u16::from_be_bytes([count[0], count[1]]) as usize;
        let (body, trailer) = buf[10..]
            .split_at_checked(count * 18)
            .ok_or(HeartbeatError)?;
        let replay = match trailer {
            [] => None,
            [n, rest @ ..] if rest.len() == usize::from(*n) => Some(
                std::str::from_utf8(rest)
                    .map_err(|_| HeartbeatError)?
                    .to_owned(),
            ),
            _ => return Err(HeartbeatError),
        };
        let u64at = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        };
        let lanes = body
            .chunks_exact(18)
            .map(|c| LaneMark {
                lane: u16::from_be_bytes([c[0], c[1]]),
                lane_seq: u64at(&c[2..10]),
                seq: u64at(&c[10..18]),
            })
            .collect();
        Ok(Self {
            oldest: u64at(oldest),
            lanes,
            replay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let hb = Heartbeat {
            oldest: 3,
            lanes: vec![LaneMark {
                lane: 9,
                lane_seq: 2,
                seq: 11,
            }],
            replay: None,
        };
        let mut b = Vec::new();
        hb.encode(&mut b);
        assert_eq!(Heartbeat::decode(&b), Ok(hb.clone()));
        assert!(Heartbeat::decode(&b[..b.len() - 1]).is_err());
        let with = Heartbeat {
            replay: Some("tcp://127.0.0.1:5559".into()),
            ..hb
        };
        let mut b = Vec::new();
        with.encode(&mut b);
        assert_eq!(Heartbeat::decode(&b), Ok(with));
        assert!(Heartbeat::decode(&b[..b.len() - 1]).is_err());
        b.push(0);
        assert!(Heartbeat::decode(&b).is_err());
    }
}
