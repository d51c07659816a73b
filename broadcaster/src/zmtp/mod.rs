//! A server-side ZMTP 3.0 implementation (NULL mechanism) for the sockets
//! the broadcaster exposes.
//!
//! We speak ZMTP ourselves instead of using `zeromq`'s PULL/PUB/ROUTER for
//! three reasons (see ARCHITECTURE.md): every frame header is checked against
//! a limit *before* anything is allocated (zmq.rs aborts the process on a
//! frame announcing 1 TiB); egress is written in batches of pre-encoded bytes
//! shared by every subscriber; and we own the per-subscriber queues, so a
//! slow subscriber's losses are counted and repairable instead of silent.

mod frame;
mod handshake;

pub use frame::{encode_frame_header, pong_for, FrameReader, ReadError, ZmtpFrame, MORE};
pub(crate) use handshake::subscription_command;
pub use handshake::{handshake, HandshakeError, SocketKind};
