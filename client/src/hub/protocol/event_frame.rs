//! `{"op":"event",…}`: the one frame written per message, so it is built by
//! hand into one buffer sized up front (no `format!`, no growth; strings
//! escaped by serde_json, numbers by `itoa`) instead of through a derived
//! `Serialize`. The output is byte for byte what serializing the struct
//! `{op, topic, data, binary?, pos, ts, from? | from_unverified?}` gives
//! (the test below holds it to that); `PROTOCOL.md` ("Browser protocol",
//! `event`) documents it.

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;
use serde_json::value::RawValue;

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
    /// The hub vouches for `publisher` (one of its trusted publisher ids):
    /// sent as `from`; otherwise as `from_unverified`.
    pub verified: bool,
}

/// Room for the frame's fixed text, three numbers and the quotes around
/// the strings; escapes beyond it grow the buffer once.
const FIXED: usize = 128;

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
    let data_len = match json {
        Some(raw) => raw.get().len(),
        None => base64::encoded_len(f.payload.len(), true).unwrap_or(0),
    };
    let publisher_len = f.publisher.map_or(0, str::len);
    let mut out = Vec::with_capacity(
        FIXED
            .saturating_add(data_len)
            .saturating_add(f.topic.len())
            .saturating_add(f.origin.len())
            .saturating_add(publisher_len),
    );
    out.extend_from_slice(br#"{"op":"event","topic":"#);
    json_str(&mut out, f.topic);
    out.extend_from_slice(br#","data":"#);
    match json {
        Some(raw) => out.extend_from_slice(raw.get().as_bytes()),
        None => {
            // Base64's alphabet needs no escaping.
            out.push(b'"');
            let at = out.len();
            out.resize(at.saturating_add(data_len), 0);
            let b64 = base64::engine::general_purpose::STANDARD;
            let written = b64.encode_slice(f.payload, &mut out[at..]).unwrap_or(0);
            out.truncate(at.saturating_add(written));
            out.extend_from_slice(br#"","binary":true"#);
        }
    }
    // "pos":"<origin>:<epoch>:<seq>": the origin escaped as a JSON string,
    // its closing quote moved after the numbers.
    out.extend_from_slice(br#","pos":"#);
    json_str(&mut out, f.origin);
    out.pop();
    out.push(b':');
    decimal(&mut out, f.epoch);
    out.push(b':');
    decimal(&mut out, f.seq);
    out.extend_from_slice(br#"","ts":"#);
    decimal(&mut out, f.timestamp_us);
    if let Some(p) = f.publisher {
        out.extend_from_slice(if f.verified {
            br#","from":"#.as_slice()
        } else {
            br#","from_unverified":"#.as_slice()
        });
        json_str(&mut out, p);
    }
    out.push(b'}');
    // Every piece is UTF-8 (serde_json's output, the payload checked as
    // UTF-8 JSON, ASCII), so this does not fail; if it did, the browser
    // would get an empty object rather than the worker a panic.
    Utf8Bytes::from(String::from_utf8(out).unwrap_or_else(|_| "{}".to_owned()))
}

/// Appends `s` as a JSON string, quoted and escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends `n` in decimal.
fn decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// The frame as the derived serializer writes it: the reference the
    /// hand-built one must match byte for byte.
    fn reference(f: &EventFields<'_>) -> String {
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
            #[serde(skip_serializing_if = "Option::is_none")]
            from_unverified: Option<&'a str>,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Data<'a> {
            Json(&'a RawValue),
            Base64(String),
        }
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
        serde_json::to_string(&EventFrame {
            op: "event",
            topic: f.topic,
            data,
            binary,
            pos: format!("{}:{}:{}", f.origin, f.epoch, f.seq),
            ts: f.timestamp_us,
            from: f.publisher.filter(|_| f.verified),
            from_unverified: f.publisher.filter(|_| !f.verified),
        })
        .unwrap()
    }

    #[test]
    fn matches_the_derived_serializer_byte_for_byte() {
        let payloads: &[&[u8]] = &[
            br#"{"text":"hi"}"#,
            b"  [1, 2 ,3]\n",
            b"42",
            br#""a \"quoted\" \u00e9 string""#,
            b"null",
            b"",
            b"not json",
            &[0xff, 0x00, 0x01],
            &[0; 1000],
            "{\"\u{e9}\u{1F600}\":true}".as_bytes(),
            b"{\"unterminated\":",
        ];
        let topics = [
            "chat.lobby",
            "a",
            "t\"q\\b\u{1}",
            "\u{e9}t\u{e9}.\u{1F600}",
            "\n\r\t\u{8}\u{c}\u{1f}x\u{0}",
        ];
        let origins = ["b1", "origin.with-dashes_and.dots", "o\"dd\\"];
        let publishers = [None, Some("w1"), Some("p\"\u{7f}\u{2028}")];
        let numbers = [(0, 0, 0), (1, 2, 3), (u64::MAX, u64::MAX - 1, u64::MAX)];
        let mut cases = 0;
        for payload in payloads {
            for topic in topics {
                for origin in origins {
                    for publisher in publishers {
                        for verified in [false, true] {
                            for (epoch, seq, timestamp_us) in numbers {
                                let f = EventFields {
                                    topic,
                                    payload,
                                    origin,
                                    epoch,
                                    seq,
                                    timestamp_us,
                                    publisher,
                                    verified,
                                };
                                let got = event(&f);
                                assert_eq!(got.as_str(), reference(&f), "payload {payload:?}");
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 11 * 5 * 3 * 3 * 2 * 3);
    }

    #[test]
    fn the_buffer_is_sized_once_for_plain_fields() {
        let payload = br#"{"n":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        let f = EventFields {
            topic: "room.1234",
            payload,
            origin: "b1",
            epoch: u64::MAX,
            seq: u64::MAX,
            timestamp_us: u64::MAX,
            publisher: Some("worker-1"),
            verified: true,
        };
        let frame = event(&f);
        let room = FIXED + payload.len() + "room.1234".len() + "b1".len() + "worker-1".len();
        assert!(frame.len() <= room, "{} > {room}", frame.len());
    }
}
