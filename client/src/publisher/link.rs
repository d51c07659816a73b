//! The publisher's connection to one broadcaster: a PUSH socket to its
//! ingress and a SUB socket to its egress that takes only this publisher's
//! acks and the heartbeats (how it knows the broadcaster is alive).

use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::ack::Ack;
use fanfare_protocol::stamp::StampRef;
use fanfare_protocol::HEARTBEAT_PREFIX;
use tokio::time::Instant;
use zeromq::{
    PushSocket, Socket, SocketOptions, SocketRecv, SocketSend, SubSocket, ZmqError, ZmqMessage,
};

use super::unacked::AckFrom;
use crate::message::Origins;
use crate::options::Endpoints;

/// PUSH + ack SUB to one broadcaster.
pub(super) struct Link {
    push: PushSocket,
    sub: SubSocket,
    ack_topic: Bytes,
    /// Last time the SUB brought anything (an ack or a heartbeat).
    pub(super) last_heard: Instant,
}

impl Link {
    /// Connects the SUB first (the ack topic, then heartbeats) and waits up
    /// to `wait` for the first heartbeat: once one is heard, the ack
    /// subscription, sent before it, is in force at the broadcaster. Then
    /// connects the PUSH.
    pub(super) async fn open(
        ep: Endpoints,
        ack_topic: String,
        connect_timeout: Duration,
        wait: Duration,
    ) -> Result<Link, String> {
        let options = || {
            let mut o = SocketOptions::default();
            o.connect_timeout(connect_timeout);
            o
        };
        let mut sub = SubSocket::with_options(options());
        let err = |e: ZmqError| e.to_string();
        sub.subscribe(&ack_topic).await.map_err(err)?;
        sub.subscribe(HEARTBEAT_PREFIX).await.map_err(err)?;
        sub.connect(&ep.publish).await.map_err(err)?;
        match tokio::time::timeout(wait, sub.recv()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no heartbeat from {} within {wait:?}", ep.publish)),
        }
        let mut push = PushSocket::with_options(options());
        push.connect(&ep.pull).await.map_err(err)?;
        Ok(Link {
            push,
            sub,
            ack_topic: Bytes::from(ack_topic),
            last_heard: Instant::now(),
        })
    }

    /// Hands a message to the PUSH socket, within `limit` (a stopped
    /// broadcaster whose TCP window is full would block it for ever).
    pub(super) async fn send(&mut self, msg: ZmqMessage, limit: Duration) -> Result<(), String> {
        match tokio::time::timeout(limit, self.push.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("send blocked for {limit:?}")),
        }
    }

    /// The next message of the SUB socket.
    pub(super) async fn recv(&mut self) -> Result<ZmqMessage, ZmqError> {
        self.sub.recv().await
    }

    /// Takes what the SUB brought: an ack of this publisher, or anything
    /// else as a sign of life.
    pub(super) fn on_frames(&mut self, m: ZmqMessage, origins: &mut Origins) -> Option<AckFrom> {
        self.last_heard = Instant::now();
        let frames = m.into_vec();
        let [topic, stamp, payload] = frames.as_slice() else {
            return None;
        };
        if *topic != self.ack_topic {
            return None;
        }
        let s = StampRef::decode(stamp).ok().filter(StampRef::is_ack)?;
        let a = Ack::decode(payload).ok()?;
        Some(AckFrom {
            origin: origins.intern(s.origin),
            epoch: s.epoch,
            publisher_seq: a.publisher_seq,
            seq: a.seq,
        })
    }
}
