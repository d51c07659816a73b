//! Raw history queries ([`Client::replay`](crate::Client::replay)): what the
//! hub uses to serve a browser's position from the broadcaster's history.

use bytes::Bytes;
use fanfare_protocol::pattern::Pattern;
pub use fanfare_protocol::replay::Status as ReplayStatus;
use fanfare_protocol::replay::{ReplayRequest, MAX_PATTERNS};

use crate::error::ReplayError;
use crate::message::{decode, Incoming, Message, Origins};
use crate::replay_task::RawReply;

/// A range of one origin's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayQuery {
    /// Origin id; empty means the broadcaster's own.
    pub origin: String,
    /// Epoch; 0 means the origin's current one.
    pub epoch: u64,
    /// First seq wanted.
    pub from: u64,
    /// Last seq wanted, inclusive (`u64::MAX`: up to the newest).
    pub to: u64,
    /// Only messages of this lane.
    pub lane: Option<u16>,
    /// Only topics matching one of these (at most 64, `MAX_PATTERNS`; none = all).
    pub patterns: Vec<Pattern>,
}

impl ReplayQuery {
    /// Everything of `origin`'s `epoch` from seq `from` on.
    pub fn since(origin: impl Into<String>, epoch: u64, from: u64) -> Self {
        Self {
            origin: origin.into(),
            epoch,
            from,
            to: u64::MAX,
            lane: None,
            patterns: Vec::new(),
        }
    }

    pub(crate) fn to_request(&self) -> Result<ReplayRequest, ReplayError> {
        if self.patterns.len() > MAX_PATTERNS {
            return Err(ReplayError::InvalidQuery("more than 64 patterns"));
        }
        Ok(ReplayRequest {
            req_id: Bytes::new(),
            origin: self.origin.clone(),
            epoch: self.epoch,
            from: self.from,
            to: self.to,
            lane: self.lane,
            patterns: self.patterns.clone(),
        })
    }
}

/// One reply of the replay endpoint.
///
/// With [`ReplayStatus::Ok`], `messages` holds every held message of
/// `[max(from, oldest), next - 1]` that passes the filters, in seq order;
/// seqs in `[from, oldest - 1]` are lost; if `next <= min(to, newest)` the
/// reply was cut: ask again from `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayBatch {
    /// Outcome.
    pub status: ReplayStatus,
    /// The origin's epoch as the broadcaster holds it.
    pub epoch: u64,
    /// Oldest seq held.
    pub oldest: u64,
    /// Newest seq held.
    pub newest: u64,
    /// First seq not covered by this reply.
    pub next: u64,
    /// The messages (flagged `replayed`).
    pub messages: Vec<Message>,
}

impl ReplayBatch {
    /// True when the reply stopped short of `to` and more can be fetched
    /// from `next`.
    pub fn is_cut(&self, to: u64) -> bool {
        self.status == ReplayStatus::Ok && self.next <= to.min(self.newest)
    }
}

/// Decodes the messages of a reply; malformed entries are skipped (logged).
pub(crate) fn decode_reply(raw: RawReply, origins: &mut Origins) -> ReplayBatch {
    let h = raw.header;
    let mut messages = Vec::with_capacity(raw.frames.len() / 3);
    let mut it = raw.frames.into_iter();
    while let (Some(t), Some(s), Some(p)) = (it.next(), it.next(), it.next()) {
        match decode(&t, &s, p, origins, true) {
            Ok(Incoming::Message(m)) => messages.push(m),
            Ok(Incoming::Heartbeat { .. } | Incoming::Ack | Incoming::Session { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "skipping malformed replayed message"),
        }
    }
    ReplayBatch {
        status: h.status,
        epoch: h.epoch,
        oldest: h.oldest,
        newest: h.newest,
        next: h.next,
        messages,
    }
}
