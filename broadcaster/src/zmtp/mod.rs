//! A server-side ZMTP 3.0 implementation (NULL mechanism) for the sockets
//! the broadcaster exposes. Every ZMTP byte the broadcaster reads or writes
//! is parsed or encoded here; the rest of the crate sees frames, messages
//! and [`Subscription`]s.
//!
//! We speak ZMTP ourselves instead of using `zeromq`'s PULL/PUB/ROUTER for
//! three reasons (see ARCHITECTURE.md): every frame header is checked against
//! a limit *before* anything is allocated (zmq.rs aborts the process on a
//! frame announcing 1 TiB); egress is written in batches of pre-encoded bytes
//! shared by every subscriber; and we own the per-subscriber queues, so a
//! slow subscriber's losses are counted and repairable instead of silent.
//!
//! * `frame` — reading: [`FrameReader`], frame header checks.
//! * `encode` — writing: frame headers, frames, multipart messages.
//! * `command` — command frames: READY, ERROR, PING/PONG.
//! * `subscription` — SUBSCRIBE / CANCEL, as 3.0 messages or 3.1 commands.
//! * `handshake` — greeting, READY exchange, socket-type check.

mod command;
mod encode;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod subscription;

pub(crate) use command::pong_for;
pub(crate) use encode::{encode_frame_header, encode_multipart, put_frame, MAX_FRAME_HEADER};
pub(crate) use frame::{FrameReader, ReadError, Timeouts, ZmtpFrame};
pub(crate) use handshake::{handshake, HandshakeError, SocketKind};
pub(crate) use subscription::Subscription;
