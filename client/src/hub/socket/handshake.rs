//! The server side of the websocket opening handshake (RFC 6455 §4.2) over
//! HTTP/1.1: what the request must carry, and the 101 answer.
//!
//! The hub upgrades the connection itself (instead of through axum's
//! `WebSocketUpgrade`) so that it keeps the upgraded TCP stream: its writer
//! writes the shared, already encoded frames to it in one vectored write
//! per batch (`frames.rs`).

use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use axum::response::{IntoResponse, Response};

/// Why a request to `/ws` is not a websocket opening handshake; answered
/// with a status and a line of text saying what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not `GET`.
    Method,
    /// Not HTTP/1.1 (HTTP/1.0, or HTTP/2, whose websockets the hub does not
    /// offer).
    Version,
    /// `Connection` lacks the `upgrade` token.
    Connection,
    /// `Upgrade` is not `websocket`.
    Upgrade,
    /// `Sec-WebSocket-Version` is not 13.
    WebSocketVersion,
    /// No usable `Sec-WebSocket-Key`.
    Key,
    /// The server under the router cannot hand over the connection.
    NotUpgradable,
}

impl Refused {
    fn status_and_text(self) -> (StatusCode, &'static str) {
        match self {
            Refused::Method => (
                StatusCode::METHOD_NOT_ALLOWED,
                "a websocket handshake is a GET",
            ),
            Refused::Version => (
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "websockets need HTTP/1.1",
            ),
            Refused::Connection => (
                StatusCode::UPGRADE_REQUIRED,
                "Connection header must contain upgrade",
            ),
            Refused::Upgrade => (
                StatusCode::UPGRADE_REQUIRED,
                "Upgrade header must be websocket",
            ),
            Refused::WebSocketVersion => {
                (StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13")
            }
            Refused::Key => (
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key is missing or malformed",
            ),
            Refused::NotUpgradable => (
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, text) = self.status_and_text();
        let mut r = (status, text).into_response();
        if status == StatusCode::UPGRADE_REQUIRED {
            r.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        r
    }
}

/// An accepted opening handshake: the `Sec-WebSocket-Accept` to answer.
#[derive(Debug)]
pub struct Accepted {
    accept: String,
}

/// Checks that `req` opens a websocket (the checks axum's extractor makes,
/// plus a well-formed key: 16 bytes in base64).
pub fn check<B>(req: &Request<B>) -> Result<Accepted, Refused> {
    if req.method() != Method::GET {
        return Err(Refused::Method);
    }
    if req.version() != Version::HTTP_11 {
        return Err(Refused::Version);
    }
    let h = req.headers();
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Refused::Connection);
    }
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(Refused::Upgrade);
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refused::WebSocketVersion);
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().trim_ascii())
        .filter(|k| key_is_well_formed(k))
        .ok_or(Refused::Key)?;
    if req
        .extensions()
        .get::<hyper::upgrade::OnUpgrade>()
        .is_none()
    {
        return Err(Refused::NotUpgradable);
    }
    Ok(Accepted {
        accept: tungstenite::handshake::derive_accept_key(key),
    })
}

impl Accepted {
    /// The `101 Switching Protocols` answer.
    pub fn response(self) -> Response {
        let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive), in
/// any of its values.
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// A key is 16 random bytes in base64: 24 characters ending in `==`.
fn key_is_well_formed(key: &[u8]) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser's handshake (the RFC's sample key), with the `OnUpgrade`
    /// a hyper server puts in every request it serves.
    fn request() -> Request<()> {
        let mut r = Request::get("/ws")
            .version(Version::HTTP_11)
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap();
        let on = hyper::upgrade::on(Request::new(()));
        r.extensions_mut().insert(on);
        r
    }

    #[test]
    fn the_rfc_sample_key_gets_the_rfc_answer() {
        let accepted = check(&request()).unwrap();
        // RFC 6455 §1.3.
        assert_eq!(accepted.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let r = accepted.response();
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            r.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn each_missing_part_is_named() {
        let refused = |edit: fn(&mut Request<()>)| {
            let mut r = request();
            edit(&mut r);
            check(&r).unwrap_err()
        };
        assert_eq!(refused(|r| *r.method_mut() = Method::POST), Refused::Method);
        assert_eq!(
            refused(|r| *r.version_mut() = Version::HTTP_10),
            Refused::Version
        );
        assert_eq!(
            refused(|r| {
                r.headers_mut().remove(header::CONNECTION);
            }),
            Refused::Connection
        );
        assert_eq!(
            refused(|r| {
                r.headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("h2c"));
            }),
            Refused::Upgrade
        );
        assert_eq!(
            refused(|r| {
                r.headers_mut()
                    .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
            }),
            Refused::WebSocketVersion
        );
        assert_eq!(
            refused(|r| {
                r.headers_mut()
                    .insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("short"));
            }),
            Refused::Key
        );
        assert_eq!(
            refused(|r| {
                r.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
            }),
            Refused::NotUpgradable
        );
    }
}
