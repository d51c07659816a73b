//! Hub → browser: every frame the hub sends, serialized once.

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::Refusal;

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Outbound<'a> {
    Welcome {
        worker: &'a str,
        conn: &'a str,
        max_frame: usize,
    },
    Subscribed {
        topics: &'a [String],
        recovered: bool,
        replayed: u64,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
    },
    /// `subscribed` of a `subscribe` with `since`: the replay part follows,
    /// then `resumed`.
    #[serde(rename = "subscribed")]
    Resuming {
        topics: &'a [String],
        resuming: bool,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
    },
    Resumed {
        topics: &'a [String],
        recovered: bool,
        replayed: u64,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
    },
    Unsubscribed {
        topics: &'a [String],
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
    },
    Authorized {
        identity: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
    },
    Gap {
        topics: &'a [String],
        reason: &'a str,
        origin: &'a str,
        epoch: u64,
        first: u64,
        last: u64,
    },
}

fn text(frame: &impl Serialize) -> Utf8Bytes {
    // Serializing these plain structs cannot fail; fall back to an empty
    // object rather than panic.
    Utf8Bytes::from(serde_json::to_string(frame).unwrap_or_else(|_| "{}".to_owned()))
}

/// `{"op":"welcome",…}`.
pub fn welcome(worker: &str, conn: &str, max_frame: usize) -> Utf8Bytes {
    text(&Outbound::Welcome {
        worker,
        conn,
        max_frame,
    })
}

/// `{"op":"subscribed",…}`.
pub fn subscribed(
    topics: &[String],
    recovered: bool,
    replayed: u64,
    reference: Option<&RawValue>,
) -> Utf8Bytes {
    text(&Outbound::Subscribed {
        topics,
        recovered,
        replayed,
        reference,
    })
}

/// `{"op":"subscribed",…,"resuming":true}`: the answer to a `subscribe`
/// with `since`, sent before the replay part.
pub fn resuming(topics: &[String], reference: Option<&RawValue>) -> Utf8Bytes {
    text(&Outbound::Resuming {
        topics,
        resuming: true,
        reference,
    })
}

/// `{"op":"resumed",…}`: the end of a resume's replay part (live events follow).
pub fn resumed(
    topics: &[String],
    recovered: bool,
    replayed: u64,
    reference: Option<&RawValue>,
) -> Utf8Bytes {
    text(&Outbound::Resumed {
        topics,
        recovered,
        replayed,
        reference,
    })
}

/// `{"op":"unsubscribed",…}`.
pub fn unsubscribed(topics: &[String], reference: Option<&RawValue>) -> Utf8Bytes {
    text(&Outbound::Unsubscribed { topics, reference })
}

/// `{"op":"pong"}`.
pub fn pong(reference: Option<&RawValue>) -> Utf8Bytes {
    text(&Outbound::Pong { reference })
}

/// `{"op":"authorized","identity":…}`.
pub fn authorized(identity: &str, reference: Option<&RawValue>) -> Utf8Bytes {
    text(&Outbound::Authorized {
        identity,
        reference,
    })
}

/// `{"op":"error",…}`.
pub fn error(refusal: &Refusal, reference: Option<&RawValue>) -> Utf8Bytes {
    text(&Outbound::Error {
        code: refusal.code.as_str(),
        message: &refusal.message,
        reference,
    })
}

/// Why events are lost: the `reason` of a `gap` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapCause {
    /// The history no longer holds them, or a hole in the feed was waited
    /// on too long (`unrecoverable`).
    Unrecoverable,
    /// The origin restarted: that epoch is not held any more (`epoch_changed`).
    EpochChanged,
    /// The history holds nothing from that origin (`unknown_origin`).
    UnknownOrigin,
    /// The history could not be asked (`history_unavailable`).
    HistoryUnavailable,
    /// More is missing than a resume or the reorder buffer may take
    /// (`too_far_behind`).
    TooFarBehind,
}

impl GapCause {
    /// The wire name, as `fanfare.js` and `PROTOCOL.md` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            GapCause::Unrecoverable => "unrecoverable",
            GapCause::EpochChanged => "epoch_changed",
            GapCause::UnknownOrigin => "unknown_origin",
            GapCause::HistoryUnavailable => "history_unavailable",
            GapCause::TooFarBehind => "too_far_behind",
        }
    }
}

/// What a `gap` frame says: `[first, last]` of `origin`'s `epoch` is lost
/// (`last` 0 = unknown end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapNotice {
    /// Why it is lost.
    pub reason: GapCause,
    /// Origin broadcaster.
    pub origin: String,
    /// Its epoch.
    pub epoch: u64,
    /// First lost seq.
    pub first: u64,
    /// Last lost seq (0 = unknown).
    pub last: u64,
}

/// `{"op":"gap",…}`.
pub fn gap(topics: &[String], notice: &GapNotice) -> Utf8Bytes {
    text(&Outbound::Gap {
        topics,
        reason: notice.reason.as_str(),
        origin: &notice.origin,
        epoch: notice.epoch,
        first: notice.first,
        last: notice.last,
    })
}
