//! Entry point shared by the cargo-fuzz target `hub_inbound` (`fuzz/`) and
//! the stable test that replays its corpus (`client/tests/fuzz_corpus.rs`),
//! so a crash found once stays fixed in CI. Not part of the API.

use serde::Deserialize;
use serde_json::value::RawValue;

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use fanfare_protocol::topic;

use super::{error, event, parse, subscribed, unsubscribed, EventFields, Request};

/// One fuzz entry point.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus folder (`fuzz/corpus/<name>`).
pub const TARGETS: &[(&str, Target)] = &[("hub_inbound", inbound)];

/// What the checks read back from a frame the hub would send.
#[derive(Deserialize)]
struct Answer {
    op: String,
    #[serde(default, rename = "ref")]
    reference: Option<Box<RawValue>>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// One browser text frame (non-UTF-8 input is skipped: websocket text
/// frames are UTF-8 by the time the hub sees them). Checks that parsing does
/// not panic and that every answer the hub builds from the result is valid
/// JSON with the right `op`, echoing the browser's `ref` exactly; that a
/// published `data` is delivered as the same JSON (not base64); and that
/// the patterns, positions and topics inside parse without panicking, a
/// parsed `since` printing back to the same position.
pub fn inbound(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (reference, request) = parse(text);
    let reference = reference.as_deref();
    match request {
        Err(refusal) => {
            let a = answer(&error(&refusal, reference), "error", reference);
            assert_eq!(a.code.as_deref(), Some(refusal.code.as_str()));
        }
        Ok(Request::Subscribe { topics, since }) => {
            assert!(!topics.is_empty(), "subscribe without topics");
            for t in &topics {
                let _ = Pattern::parse(t);
            }
            if let Some(Ok(p)) = since.as_deref().map(str::parse::<Position>) {
                assert_eq!(p.to_string().parse::<Position>(), Ok(p), "since round trip");
            }
            let a = answer(
                &subscribed(&topics, true, 0, reference),
                "subscribed",
                reference,
            );
            assert_eq!(a.topics.as_ref(), Some(&topics), "topics echoed");
        }
        Ok(Request::Unsubscribe { topics }) => {
            assert!(!topics.is_empty(), "unsubscribe without topics");
            let a = answer(&unsubscribed(&topics, reference), "unsubscribed", reference);
            assert_eq!(a.topics.as_ref(), Some(&topics), "topics echoed");
        }
        Ok(Request::Publish { topic, data }) => {
            let _ = topic::validate(topic.as_bytes());
            let fields = EventFields {
                topic: &topic,
                payload: data.get().as_bytes(),
                origin: "b1",
                epoch: 1,
                seq: 1,
                timestamp_us: 0,
                publisher: None,
                verified: false,
            };
            let a = answer(&event(&fields), "event", None);
            let got = a.data.as_deref().map(RawValue::get);
            assert_eq!(got, Some(data.get()), "published JSON delivered as is");
        }
        Ok(Request::Ping) => {
            answer(&super::pong(reference), "pong", reference);
        }
        Ok(Request::Auth { token }) => {
            answer(
                &super::authorized(&token, reference),
                "authorized",
                reference,
            );
        }
    }
}

/// Parses an outbound frame, checking its `op` and its `ref`.
fn answer(frame: &str, op: &str, reference: Option<&RawValue>) -> Answer {
    let a: Answer = match serde_json::from_str(frame) {
        Ok(a) => a,
        Err(e) => panic!("the hub would send invalid JSON ({e}): {frame}"),
    };
    assert_eq!(a.op, op, "op of {frame}");
    assert_eq!(
        a.reference.as_deref().map(RawValue::get),
        reference.map(RawValue::get),
        "ref echoed in {frame}"
    );
    a
}

/// Seed inputs for the corpus (the committed seeds were written from these).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    [
        r#"{"op":"subscribe","topics":["chat.#","a.*.c"],"since":"b1:5:10,b2:1:1","ref":7}"#,
        r#"{"op":"unsubscribe","topics":["chat.#"],"ref":"x"}"#,
        r#"{"op":"publish","topic":"chat.lobby","data":{"text":"hi","n":[1,2.5e3,null]},"ref":{"a":1}}"#,
        r#"{"op":"ping","ref":[1,"two"]}"#,
        r#"{"op":"auth","token":"s3cr\u00e9t"}"#,
        r#"{"op":"subscribe","topics":[]}"#,
        r#"{"op":"dance"}"#,
        r#"[1,2]"#,
    ]
    .iter()
    .enumerate()
    .map(|(i, s)| ("hub_inbound", format!("seed-{i}"), s.as_bytes().to_vec()))
    .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_pass_the_target() {
        for (_, _, data) in super::seeds() {
            super::inbound(&data);
        }
    }
}
