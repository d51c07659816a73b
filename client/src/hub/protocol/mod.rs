//! The browser protocol: JSON text frames between `fanfare.js` and the hub.
//!
//! This is the only module of the hub that derives `Serialize`/`Deserialize`;
//! `PROTOCOL.md` ("Browser protocol") documents the same frames for people
//! writing their own browser client.
//!
//! Browser → hub (`inbound.rs`): `subscribe`, `unsubscribe`, `publish`,
//! `ping`, `auth`. Hub → browser (`outbound.rs`): `welcome`, `subscribed`,
//! `resumed`, `unsubscribed`, `gap`, `error`, `pong`, `authorized`; and
//! `event`, the frame written per message, built by hand in `event_frame.rs`.

mod event_frame;
#[doc(hidden)]
pub mod fuzzing;
mod inbound;
mod outbound;

pub use event_frame::{event, EventFields};
pub use inbound::{parse, ErrorCode, Inbound, Refusal, Request};
pub use outbound::{
    authorized, error, gap, pong, resumed, resuming, subscribed, unsubscribed, welcome, GapCause,
    GapNotice,
};

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
            verified: true,
        };
        let v: serde_json::Value = serde_json::from_str(&event(&f)).unwrap();
        assert_eq!(v["data"]["text"], "hi");
        assert_eq!(v["pos"], "b1:5:9");
        assert_eq!(v["from"], "w1");
        assert!(v.get("binary").is_none());
        f.verified = false;
        let v: serde_json::Value = serde_json::from_str(&event(&f)).unwrap();
        assert_eq!(
            (v.get("from"), v["from_unverified"].as_str()),
            (None, Some("w1"))
        );
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
