//! Browser → hub: parsing one text frame into a [`Request`] or a [`Refusal`].

use serde::Deserialize;
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
