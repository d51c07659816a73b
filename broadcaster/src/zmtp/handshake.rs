//! ZMTP 3.0 greeting and NULL-mechanism READY exchange (server side).

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::command;
use super::frame::{FrameReader, ReadError, ZmtpFrame};

/// Largest READY command we read during the handshake.
const MAX_HANDSHAKE_FRAME: usize = 8 * 1024;

/// The socket type the broadcaster plays on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// Ingress: peers PUSH.
    Pull,
    /// Egress: peers SUB / XSUB.
    Pub,
    /// Replay: peers DEALER / REQ / ROUTER.
    Router,
    /// Client side of ingress (the `pub` tool): peer is PULL.
    Push,
    /// Client side of egress (a federation link): peer is PUB / XPUB.
    Sub,
    /// Client side of replay (federation repair): peer is ROUTER.
    Dealer,
}

impl SocketKind {
    /// ZMTP socket-type name.
    fn zmtp_name(self) -> &'static str {
        match self {
            SocketKind::Pull => "PULL",
            SocketKind::Pub => "PUB",
            SocketKind::Router => "ROUTER",
            SocketKind::Push => "PUSH",
            SocketKind::Sub => "SUB",
            SocketKind::Dealer => "DEALER",
        }
    }

    /// Short label for logs and metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            SocketKind::Pull => "pull",
            SocketKind::Pub => "pub",
            SocketKind::Router => "replay",
            SocketKind::Push => "push",
            SocketKind::Sub => "link",
            SocketKind::Dealer => "repair",
        }
    }

    fn accepts(self, peer: &[u8]) -> bool {
        match self {
            SocketKind::Pull => peer == b"PUSH",
            SocketKind::Pub => peer == b"SUB" || peer == b"XSUB",
            SocketKind::Router => matches!(peer, b"DEALER" | b"REQ" | b"ROUTER"),
            SocketKind::Push => peer == b"PULL",
            SocketKind::Sub => peer == b"PUB" || peer == b"XPUB",
            SocketKind::Dealer => peer == b"ROUTER",
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// Not a ZMTP greeting (wrong signature).
    #[error("not a ZMTP peer (bad greeting signature)")]
    NotZmtp,
    /// ZMTP 1.0/2.0.
    #[error("unsupported ZMTP version {0}.{1}")]
    Version(u8, u8),
    /// A security mechanism other than NULL.
    #[error("unsupported security mechanism (only NULL)")]
    Mechanism,
    /// First command was not a well-formed READY.
    #[error("bad READY command: {0}")]
    BadReady(&'static str),
    /// The peer's socket type cannot talk to ours.
    #[error("incompatible peer socket type {peer} for {ours}")]
    Incompatible {
        /// Peer's type.
        peer: String,
        /// Ours.
        ours: &'static str,
    },
    /// Reading failed (including an oversize frame).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs the handshake (the NULL mechanism is symmetric: both sides greet
/// and send READY, so this serves the `pub` tool's client side too). On success the reader's frame
/// limit is set to `max_frame` and the peer's socket type is returned.
pub(crate) async fn handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    kind: SocketKind,
    max_frame: usize,
) -> Result<Bytes, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_all(&greeting()).await?;
    let peer = reader.read_raw(64).await?;
    if peer[0] != 0xff || peer[9] != 0x7f {
        return Err(HandshakeError::NotZmtp);
    }
    if peer[10] < 3 {
        return Err(HandshakeError::Version(peer[10], peer[11]));
    }
    if &peer[12..16] != b"NULL" || peer[16..32].iter().any(|&b| b != 0) {
        return Err(HandshakeError::Mechanism);
    }
    writer.write_all(&command::ready(kind.zmtp_name())).await?;
    writer.flush().await?;
    reader.set_max_frame(MAX_HANDSHAKE_FRAME);
    let body = match reader.next_frame().await? {
        Some(ZmtpFrame::Command(body)) => body,
        Some(ZmtpFrame::Message { .. }) => return Err(HandshakeError::BadReady("a message")),
        None => return Err(HandshakeError::BadReady("connection closed")),
    };
    let peer_type = command::ready_socket_type(&body).map_err(HandshakeError::BadReady)?;
    if !kind.accepts(&peer_type) {
        let reason = format!(
            "{} cannot talk to {}",
            kind.zmtp_name(),
            String::from_utf8_lossy(&peer_type)
        );
        writer.write_all(&command::error(&reason)).await?;
        return Err(HandshakeError::Incompatible {
            peer: String::from_utf8_lossy(&peer_type).into_owned(),
            ours: kind.zmtp_name(),
        });
    }
    reader.set_max_frame(max_frame);
    Ok(peer_type)
}

/// Our greeting: signature, version 3.0, NULL, as-server 0, filler.
fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_types_that_may_talk() {
        assert!(SocketKind::Pub.accepts(b"SUB"));
        assert!(SocketKind::Pub.accepts(b"XSUB"));
        assert!(!SocketKind::Pull.accepts(b"SUB"));
        assert!(SocketKind::Router.accepts(b"REQ"));
        assert!(SocketKind::Push.accepts(b"PULL"));
        assert!(SocketKind::Sub.accepts(b"PUB"));
        assert!(!SocketKind::Sub.accepts(b"PULL"));
        assert!(SocketKind::Dealer.accepts(b"ROUTER"));
    }

    #[tokio::test]
    async fn handshake_with_a_zmtp_peer() {
        let (client, server) = tokio::io::duplex(4096);
        let (sr, mut sw) = tokio::io::split(server);
        let mut reader = FrameReader::new(sr, 16);
        let peer = tokio::spawn(async move {
            let (cr, mut cw) = tokio::io::split(client);
            let mut r = FrameReader::new(cr, 1024);
            cw.write_all(&greeting()).await.unwrap();
            cw.write_all(&command::ready("PUSH")).await.unwrap();
            let _ = r.read_raw(64).await.unwrap();
            r.next_frame().await.unwrap()
        });
        let t = handshake(&mut reader, &mut sw, SocketKind::Pull, 100)
            .await
            .unwrap();
        assert_eq!(&t[..], b"PUSH");
        assert!(matches!(peer.await.unwrap(), Some(ZmtpFrame::Command(_))));
    }
}
