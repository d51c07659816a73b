//! The browser protocol: JSON text frames between `fanfare.js` and the hub.
//!
//! This is the only module of the hub that derives `Serialize`/`Deserialize`;
//! `PROTOCOL.md` ("Browser protocol") documents the same frames for people
//! writing their own browser client.
//!
//! Browser → hub: `subscribe`, `unsubscribe`, `publish`, `ping`.
//! Hub → browser: `welcome`, `subscribed`, `unsubscribed`, `event`, `gap`,
//! `error`, `pong`.

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Error codes sent in `{"op":"error","code":…}`. The names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not a JSON object (or is a binary frame).
    BadJson,
    /// `op` is missing or not one the hub knows.
    UnknownOp,
    /// A topic or pattern is malformed, reserved or missing.
    BadTopic,
    /// The authorizer does not allow this subscribe or publish.
    Forbidden,
    /// The frame is larger than the hub's frame limit.
    TooLarge,
    /// Too many publishes: the connection's token bucket is empty.
    RateLimited,
    /// `since` is not a position (`origin:epoch:seq[,…]`).
    BadSince,
    /// The fabric did not take the publish (broadcaster unreachable, outbox full).
    Unavailable,
}

impl ErrorCode {
    /// Every code, for metrics.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownOp,
        ErrorCode::BadTopic,
        ErrorCode::Forbidden,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::BadSince,
        ErrorCode::Unavailable,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadTopic => "bad_topic",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadSince => "bad_since",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// Position in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A frame from the browser, read leniently so that a missing field gets a
/// precise error code instead of `bad_json`.
#[derive(Debug, Deserialize)]
pub struct Inbound {
    /// Operation name.
    #[serde(default)]
    pub op: Option<String>,
    /// Patterns (`subscribe`, `unsubscribe`).
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Position to resume after (`subscribe`).
    #[serde(default)]
    pub since: Option<String>,
    /// Topic (`publish`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Payload (`publish`): any JSON, kept as written.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// Token (`auth`).
    #[serde(default)]
    pub token: Option<String>,
    /// Optional request reference, echoed in the answer or error.
    #[serde(default, rename = "ref")]
    pub reference: Option<Box<RawValue>>,
}

/// What a browser asked for.
#[derive(Debug)]
pub enum Request {
    /// Subscribe to patterns, optionally resuming after a position.
    Subscribe {
        /// Patterns as written.
        topics: Vec<String>,
        /// Position text.
        since: Option<String>,
    },
    /// Drop patterns.
    Unsubscribe {
        /// Patterns as written.
        topics: Vec<String>,
    },
    /// Publish JSON on a topic.
    Publish {
        /// Topic as written.
        topic: String,
        /// Payload bytes (the JSON text as the browser wrote it).
        data: Box<RawValue>,
    },
    /// Application-level ping.
    Ping,
    /// Authenticate with a token (when the hub accepts it in the first frame).
    Auth {
        /// The token.
        token: String,
    },
}

/// A refused frame: the code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Error code.
    pub code: ErrorCode,
    /// Explanation for a human.
    pub message: String,
}

impl Refusal {
    /// A refusal with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Parses one text frame; the `ref` (if any) is returned in both cases.
pub fn parse(text: &str) -> (Option<Box<RawValue>>, Result<Request, Refusal>) {
    let inbound: Inbound = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, Err(Refusal::new(ErrorCode::BadJson, e.to_string()))),
    };
    let Inbound {
        op,
        topics,
        since,
        topic,
        data,
        token,
        reference,
    } = inbound;
    let request = match op.as_deref() {
        Some("subscribe") => match topics {
            Some(t) if !t.is_empty() => Ok(Request::Subscribe { topics: t, since }),
            _ => Err(Refusal::new(
                ErrorCode::BadTopic,
                "subscribe needs a non-empty \"topics\" array",
            )),
        },
        Some("unsubscribe") => match topics {
            Some(t) if !t.is_empty() => Ok(Request::Unsubscribe { topics: t }),
            _ => Err(Refusal::new(
                ErrorCode::BadTopic,
                "unsubscribe needs a non-empty \"topics\" array",
            )),
        },
        Some("publish") => match (topic, data) {
            (Some(topic), Some(data)) => Ok(Request::Publish { topic, data }),
            (None, _) => Err(Refusal::new(ErrorCode::BadTopic, "publish needs \"topic\"")),
            (Some(_), None) => Err(Refusal::new(ErrorCode::BadJson, "publish needs \"data\"")),
        },
        Some("ping") => Ok(Request::Ping),
        Some("auth") => match token {
            Some(token) => Ok(Request::Auth { token }),
            None => Err(Refusal::new(ErrorCode::BadJson, "auth needs \"token\"")),
        },
        Some(other) => Err(Refusal::new(
            ErrorCode::UnknownOp,
            format!("unknown op {:?}", truncate(other, 32)),
        )),
        None => Err(Refusal::new(ErrorCode::UnknownOp, "missing \"op\"")),
    };
    (reference, request)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

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

/// What a `gap` frame says: `[first, last]` of `origin`'s `epoch` is lost
/// (`last` 0 = unknown end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapNotice {
    /// Why it is lost (`unrecoverable`, `epoch_changed`, `too_far_behind`, …).
    pub reason: String,
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
        reason: &notice.reason,
        origin: &notice.origin,
        epoch: notice.epoch,
        first: notice.first,
        last: notice.last,
    })
}

/// The fields of one event frame.
pub struct EventFields<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Payload as published.
    pub payload: &'a [u8],
    /// Origin broadcaster id.
    pub origin: &'a str,
    /// Origin epoch.
    pub epoch: u64,
    /// Origin seq.
    pub seq: u64,
    /// Stamp time, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Publisher id, if the publisher sent one.
    pub publisher: Option<&'a str>,
}

#[derive(Serialize)]
struct EventFrame<'a> {
    op: &'static str,
    topic: &'a str,
    data: Data<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    binary: bool,
    pos: String,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Base64(String),
}

/// `{"op":"event",…}`: serialized once per message and shared by every
/// connection that receives it.
///
/// A payload that is JSON is embedded as is (`data`); any other payload is
/// sent base64-encoded (standard alphabet, padded) as a string with
/// `"binary":true`.
pub fn event(f: &EventFields<'_>) -> Utf8Bytes {
    let json = std::str::from_utf8(f.payload)
        .ok()
        .and_then(|s| serde_json::from_str::<&RawValue>(s).ok());
    let (data, binary) = match json {
        Some(raw) => (Data::Json(raw), false),
        None => (
            Data::Base64(base64::engine::general_purpose::STANDARD.encode(f.payload)),
            true,
        ),
    };
    text(&EventFrame {
        op: "event",
        topic: f.topic,
        data,
        binary,
        pos: format!("{}:{}:{}", f.origin, f.epoch, f.seq),
        ts: f.timestamp_us,
        from: f.publisher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> Option<ErrorCode> {
        parse(text).1.err().map(|r| r.code)
    }

    #[test]
    fn parses_every_op_and_refuses_the_rest() {
        assert!(matches!(
            parse(r#"{"op":"subscribe","topics":["chat.#"],"since":"b:1:2"}"#).1,
            Ok(Request::Subscribe { .. })
        ));
        assert!(matches!(
            parse(r#"{"op":"publish","topic":"a","data":{"x":[1,2]}}"#).1,
            Ok(Request::Publish { .. })
        ));
        assert!(matches!(
            parse(r#"{"op":"ping","ref":7}"#).1,
            Ok(Request::Ping)
        ));
        assert_eq!(code("nope"), Some(ErrorCode::BadJson));
        assert_eq!(code("[1]"), Some(ErrorCode::BadJson));
        assert_eq!(code(r#"{"op":"dance"}"#), Some(ErrorCode::UnknownOp));
        assert_eq!(code(r#"{"topics":[]}"#), Some(ErrorCode::UnknownOp));
        assert_eq!(code(r#"{"op":"subscribe"}"#), Some(ErrorCode::BadTopic));
        assert_eq!(
            code(r#"{"op":"publish","data":1}"#),
            Some(ErrorCode::BadTopic)
        );
    }

    #[test]
    fn events_embed_json_and_base64_the_rest() {
        let mut f = EventFields {
            topic: "chat.lobby",
            payload: br#"{"text":"hi"}"#,
            origin: "b1",
            epoch: 5,
            seq: 9,
            timestamp_us: 77,
            publisher: Some("w1"),
        };
        let v: serde_json::Value = serde_json::from_str(&event(&f)).unwrap();
        assert_eq!(v["data"]["text"], "hi");
        assert_eq!(v["pos"], "b1:5:9");
        assert_eq!(v["from"], "w1");
        assert!(v.get("binary").is_none());
        f.payload = &[0xff, 0x00, 0x01];
        f.publisher = None;
        let v: serde_json::Value = serde_json::from_str(&event(&f)).unwrap();
        assert_eq!(v["binary"], true);
        assert_eq!(v["data"], "/wAB");
        assert_eq!(v["op"], "event");
    }

    #[test]
    fn outbound_frames_carry_their_op() {
        let v: serde_json::Value = serde_json::from_str(&welcome("w1", "c1", 10)).unwrap();
        assert_eq!(
            (v["op"].as_str(), v["worker"].as_str()),
            (Some("welcome"), Some("w1"))
        );
        let r = Refusal::new(ErrorCode::RateLimited, "slow down");
        let v: serde_json::Value = serde_json::from_str(&error(&r, None)).unwrap();
        assert_eq!(v["code"], "rate_limited");
        assert_eq!(pong(None).as_str(), r#"{"op":"pong"}"#);
    }
}
