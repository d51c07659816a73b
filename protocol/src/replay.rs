//! The replay (history) endpoint: requests and replies.
//!
//! The broadcaster serves a ROUTER socket; clients use DEALER (or REQ: an
//! empty delimiter frame first is echoed). Each request gets exactly one
//! multipart reply on the same connection.
//!
//! Request frames:
//! ```text
//! [req_id (0..=64 bytes, echoed), "range", origin (empty = the broadcaster's own),
//!  epoch u64 (0 = current), from u64, to u64 (inclusive; u64::MAX = newest),
//!  lane (empty, or u16: only messages of that lane), pattern*  (0..=64 patterns)]
//! ```
//! Reply frames:
//! ```text
//! [req_id, status, epoch u64, oldest u64, newest u64, next u64,
//!  (topic, stamp, payload)*]
//! ```
//! `status` is `ok`, `unknown_epoch`, `unknown_origin`, `bad_request` or
//! `busy`. With `ok`, the reply holds every held message of
//! `[max(from, oldest), next - 1]` that passes the filters, in seq order.
//! Seqs in `[from, oldest - 1]` are unrecoverable. When `next <= min(to,
//! newest)` the reply was cut (by the size limit or by the broadcaster's
//! per-reply scan budget; it may then hold few or no messages): ask again
//! from `next`. A range past the newest (`from > newest`) is up to date:
//! `ok` with no messages and `next = newest + 1`.
//! `epoch`, `oldest` and `newest` describe the origin as the broadcaster holds
//! it now (oldest = newest + 1 when the history is empty).

use bytes::Bytes;

use crate::pattern::Pattern;

/// Request kind for a range.
pub const KIND_RANGE: &[u8] = b"range";
/// Longest request id.
pub const MAX_REQ_ID: usize = 64;
/// Most patterns in one request.
pub const MAX_PATTERNS: usize = 64;
/// Number of fixed frames before the messages in a reply.
pub const REPLY_HEADER_FRAMES: usize = 6;

/// Outcome of a replay request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Served (possibly in part: see `next`).
    Ok,
    /// The origin is known but the requested epoch is not held.
    UnknownEpoch,
    /// The broadcaster holds nothing from this origin.
    UnknownOrigin,
    /// The request could not be parsed.
    BadRequest,
    /// The broadcaster refused the request for load reasons; retry later.
    Busy,
}

impl Status {
    /// Wire name.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Status::Ok => b"ok",
            Status::UnknownEpoch => b"unknown_epoch",
            Status::UnknownOrigin => b"unknown_origin",
            Status::BadRequest => b"bad_request",
            Status::Busy => b"busy",
        }
    }

    /// Parses a wire name.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(match b {
            b"ok" => Status::Ok,
            b"unknown_epoch" => Status::UnknownEpoch,
            b"unknown_origin" => Status::UnknownOrigin,
            b"bad_request" => Status::BadRequest,
            b"busy" => Status::Busy,
            _ => return None,
        })
    }
}

/// Why a request or reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Too few frames, a number frame not 8 bytes long, an unknown kind, …
    #[error("malformed replay message: {0}")]
    Malformed(&'static str),
    /// A pattern frame did not parse.
    #[error("bad pattern in replay request: {0}")]
    Pattern(#[from] crate::pattern::PatternError),
}

/// A request for a range of one origin's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    /// Echoed in the reply.
    pub req_id: Bytes,
    /// Origin id; empty means the broadcaster's own.
    pub origin: String,
    /// Epoch; 0 means the origin's current one.
    pub epoch: u64,
    /// First seq wanted.
    pub from: u64,
    /// Last seq wanted (inclusive).
    pub to: u64,
    /// Only messages of this lane.
    pub lane: Option<u16>,
    /// Only messages whose topic matches one of these (none = all).
    pub patterns: Vec<Pattern>,
}

impl ReplayRequest {
    /// The request's frames.
    pub fn to_frames(&self) -> Vec<Bytes> {
        let mut f = vec![
            self.req_id.clone(),
            Bytes::from_static(KIND_RANGE),
            Bytes::copy_from_slice(self.origin.as_bytes()),
            u64_frame(self.epoch),
            u64_frame(self.from),
            u64_frame(self.to),
            self.lane
                .map_or_else(Bytes::new, |l| Bytes::copy_from_slice(&l.to_be_bytes())),
        ];
        f.extend(
            self.patterns
                .iter()
                .map(|p| Bytes::copy_from_slice(p.as_str().as_bytes())),
        );
        f
    }

    /// Reads a request from its frames (without any routing envelope).
    pub fn from_frames(frames: &[Bytes]) -> Result<Self, ReplayError> {
        use ReplayError::Malformed;
        if frames.len() < 7 {
            return Err(Malformed("a range request has at least 7 frames"));
        }
        if frames[0].len() > MAX_REQ_ID {
            return Err(Malformed("request id longer than 64 bytes"));
        }
        if &frames[1][..] != KIND_RANGE {
            return Err(Malformed("unknown request kind"));
        }
        let origin = std::str::from_utf8(&frames[2])
            .map_err(|_| Malformed("origin is not UTF-8"))?
            .to_owned();
        let lane = match frames[6].len() {
            0 => None,
            2 => Some(u16::from_be_bytes([frames[6][0], frames[6][1]])),
            _ => return Err(Malformed("lane frame must be empty or 2 bytes")),
        };
        let pattern_frames = &frames[7..];
        if pattern_frames.len() > MAX_PATTERNS {
            return Err(Malformed("more than 64 patterns"));
        }
        let patterns = pattern_frames
            .iter()
            .map(|p| {
                let s = std::str::from_utf8(p).map_err(|_| Malformed("pattern is not UTF-8"))?;
                Ok(Pattern::parse(s)?)
            })
            .collect::<Result<Vec<_>, ReplayError>>()?;
        Ok(Self {
            req_id: frames[0].clone(),
            origin,
            epoch: read_u64(&frames[3])?,
            from: read_u64(&frames[4])?,
            to: read_u64(&frames[5])?,
            lane,
            patterns,
        })
    }

    /// Does a message with this topic and lane pass the request's filters?
    pub fn wants(&self, topic: &str, lane: u16) -> bool {
        self.lane.is_none_or(|l| l == lane)
            && (self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(topic)))
    }
}

/// The fixed part of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    /// Outcome.
    pub status: Status,
    /// The origin's current epoch as held (0 if unknown).
    pub epoch: u64,
    /// Oldest seq held.
    pub oldest: u64,
    /// Newest seq held.
    pub newest: u64,
    /// First seq not covered by this reply.
    pub next: u64,
}

impl ReplyHeader {
    /// The header frames that follow the request id.
    pub fn to_frames(&self) -> [Bytes; 5] {
        [
            Bytes::from_static(self.status.as_bytes()),
            u64_frame(self.epoch),
            u64_frame(self.oldest),
            u64_frame(self.newest),
            u64_frame(self.next),
        ]
    }

    /// Reads a reply's header from `frames[1..6]` (frame 0 is the request id).
    pub fn from_frames(frames: &[Bytes]) -> Result<Self, ReplayError> {
        use ReplayError::Malformed;
        if frames.len() < REPLY_HEADER_FRAMES {
            return Err(Malformed("a reply has at least 6 frames"));
        }
        if !(frames.len() - REPLY_HEADER_FRAMES).is_multiple_of(3) {
            return Err(Malformed("reply messages come in threes"));
        }
        Ok(Self {
            status: Status::from_bytes(&frames[1]).ok_or(Malformed("unknown status"))?,
            epoch: read_u64(&frames[2])?,
            oldest: read_u64(&frames[3])?,
            newest: read_u64(&frames[4])?,
            next: read_u64(&frames[5])?,
        })
    }
}

/// An 8-byte big-endian frame.
pub fn u64_frame(v: u64) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

/// Reads an 8-byte big-endian frame.
pub fn read_u64(b: &[u8]) -> Result<u64, ReplayError> {
    let a: [u8; 8] = b
        .try_into()
        .map_err(|_| ReplayError::Malformed("a number frame must be 8 bytes"))?;
    Ok(u64::from_be_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = ReplayRequest {
            req_id: Bytes::from_static(b"7"),
            origin: "b1".into(),
            epoch: 5,
            from: 10,
            to: u64::MAX,
            lane: Some(3),
            patterns: vec![Pattern::parse("chat.#").unwrap()],
        };
        assert_eq!(ReplayRequest::from_frames(&r.to_frames()), Ok(r.clone()));
        assert!(r.wants("chat.x", 3));
        assert!(!r.wants("chat.x", 4));
        assert!(!r.wants("news.x", 3));
        let mut short = r.to_frames();
        short.truncate(5);
        assert!(ReplayRequest::from_frames(&short).is_err());
        let mut bad = r.to_frames();
        bad[4] = Bytes::from_static(b"123");
        assert!(ReplayRequest::from_frames(&bad).is_err());
    }

    #[test]
    fn reply_header_round_trip() {
        let h = ReplyHeader {
            status: Status::Ok,
            epoch: 1,
            oldest: 2,
            newest: 3,
            next: 4,
        };
        let mut f = vec![Bytes::from_static(b"id")];
        f.extend(h.to_frames());
        assert_eq!(ReplyHeader::from_frames(&f), Ok(h));
    }
}
