//! Reading frames: a zero-copy frame reader that checks every header
//! against a size limit before reading or allocating the body.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::command::pong_for;
use crate::liveness::Activity;

/// Flag bit: more frames follow in this message.
pub(super) const MORE: u8 = 0x01;
/// Flag bit: the length is 8 bytes, not 1.
pub(super) const LONG: u8 = 0x02;
/// Flag bit: a command frame, not a message frame.
pub(super) const COMMAND: u8 = 0x04;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// One frame as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZmtpFrame {
    /// A message frame; `more` says whether the message continues.
    Message {
        /// More frames follow.
        more: bool,
        /// Frame body (a zero-copy slice of the read buffer).
        body: Bytes,
    },
    /// A command frame (body starts with the command name).
    Command(Bytes),
}

/// Why reading failed. Every variant ends the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The peer announced a frame longer than this socket accepts.
    #[error("peer announced a {announced}-byte frame; the limit is {limit}")]
    Oversize {
        /// Length in the frame header.
        announced: u64,
        /// Limit of this socket.
        limit: usize,
    },
    /// Flag bits that ZMTP does not define.
    #[error("invalid frame flags {0:#04x}")]
    BadFlags(u8),
    /// The connection ended in the middle of a frame.
    #[error("connection closed mid-frame")]
    Truncated,
    /// A started frame or message was not complete within the deadline.
    #[error("frame not completed within {0:?}")]
    FrameDeadline(Duration),
    /// Nothing arrived for the idle timeout.
    #[error("peer silent for {0:?}")]
    Idle(Duration),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Time bounds on reading after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// A frame (and a multipart message) that has started must be complete
    /// within this time.
    pub(crate) frame: Duration,
    /// Longest silence between messages; `None`: no bound.
    pub(crate) idle: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            frame: Duration::from_secs(10),
            idle: None,
        }
    }
}

/// Reads frames from a byte stream; frames are slices of one growing buffer,
/// so reading allocates once per 64 KiB of input, not per frame.
pub(crate) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_frame: usize,
    pong: Option<Bytes>,
    timeouts: Timeouts,
    activity: Option<Arc<Activity>>,
    /// When the frame or message being read started (first wait on it).
    started: Option<Instant>,
    /// A frame with the MORE flag was returned: a message is under way.
    in_message: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `io`; frames longer than `max_frame` end the connection.
    pub(crate) fn new(io: R, max_frame: usize) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            max_frame,
            pong: None,
            timeouts: Timeouts::default(),
            activity: None,
            started: None,
            in_message: false,
        }
    }

    /// Sets the read time bounds; every read that brings bytes touches
    /// `activity` (progress for idle eviction).
    pub(crate) fn set_timeouts(&mut self, timeouts: Timeouts, activity: Arc<Activity>) {
        self.timeouts = timeouts;
        self.activity = Some(activity);
    }

    /// Changes the frame size limit (the handshake uses a small one).
    pub(crate) fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Reads exactly `n` raw bytes (the greeting); the stream ending first
    /// is [`ReadError::Truncated`] (looping on it would spin a core).
    pub(crate) async fn read_raw(&mut self, n: usize) -> Result<Bytes, ReadError> {
        while self.buf.len() < n {
            if self.fill(n - self.buf.len()).await? == 0 {
                return Err(ReadError::Truncated);
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// True when a whole message (every frame through the last, commands in
    /// between skipped) is already buffered, so the next
    /// [`Self::next_message`] will not wait on the network.
    pub(crate) fn has_buffered_message(&self) -> bool {
        let mut pos = 0;
        while let Ok(Some((header, len))) = parse_header_at(&self.buf[pos..], self.max_frame) {
            let flags = self.buf[pos];
            pos += header + len;
            if pos > self.buf.len() {
                return false;
            }
            if flags & COMMAND == 0 && flags & MORE == 0 {
                return true;
            }
        }
        false
    }

    /// Next frame, or `None` on a clean end of stream between frames.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<ZmtpFrame>, ReadError> {
        loop {
            if let Some((header, len)) = self.parse_header()? {
                if self.buf.len() >= header + len {
                    let flags = self.buf[0];
                    self.buf.advance(header);
                    let body = self.buf.split_to(len).freeze();
                    if flags & COMMAND == 0 {
                        self.in_message = flags & MORE != 0;
                    }
                    if !self.in_message {
                        self.started = None;
                    }
                    return Ok(Some(if flags & COMMAND != 0 {
                        ZmtpFrame::Command(body)
                    } else {
                        ZmtpFrame::Message {
                            more: flags & MORE != 0,
                            body,
                        }
                    }));
                }
                let missing = header + len - self.buf.len();
                if self.fill_bounded(missing).await? == 0 {
                    return Err(ReadError::Truncated);
                }
            } else if self.fill_bounded(1).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
        }
    }

    /// Reads one whole message. Up to `max_keep` frames are kept in `frames`
    /// (cleared first); the rest are read and dropped. Commands between
    /// messages are skipped, except a PING, which returns `Some(0)` so the
    /// caller can send [`Self::take_pong`]. Returns the message's total frame
    /// count, or `None` on a clean end of stream.
    pub(crate) async fn next_message(
        &mut self,
        frames: &mut Vec<Bytes>,
        max_keep: usize,
    ) -> Result<Option<usize>, ReadError> {
        frames.clear();
        let mut count = 0usize;
        loop {
            match self.next_frame().await? {
                None if count == 0 => return Ok(None),
                None => return Err(ReadError::Truncated),
                Some(ZmtpFrame::Command(body)) => {
                    self.note_command(&body);
                    if count == 0 && self.pong.is_some() {
                        return Ok(Some(0));
                    }
                }
                Some(ZmtpFrame::Message { more, body }) => {
                    count += 1;
                    if frames.len() < max_keep {
                        frames.push(body);
                    }
                    if !more {
                        return Ok(Some(count));
                    }
                }
            }
        }
    }

    /// Remembers a PING so the connection can answer it (see [`Self::take_pong`]).
    fn note_command(&mut self, body: &Bytes) {
        if let Some(pong) = pong_for(body) {
            self.pong = Some(pong);
        }
    }

    /// The encoded PONG owed for the last PING read, if any.
    pub(crate) fn take_pong(&mut self) -> Option<Bytes> {
        self.pong.take()
    }

    /// Header length and body length of the buffered frame, if the header is
    /// complete. Fails as soon as the announced length exceeds the limit.
    fn parse_header(&self) -> Result<Option<(usize, usize)>, ReadError> {
        parse_header_at(&self.buf, self.max_frame)
    }

    /// [`Self::fill`] under the time bounds: the frame deadline while a frame
    /// or message is under way, the idle timeout between messages.
    async fn fill_bounded(&mut self, want: usize) -> Result<usize, ReadError> {
        let n = if self.buf.is_empty() && !self.in_message {
            match self.timeouts.idle {
                None => self.fill(want).await?,
                Some(idle) => tokio::time::timeout(idle, self.fill(want))
                    .await
                    .map_err(|_| ReadError::Idle(idle))??,
            }
        } else {
            let frame = self.timeouts.frame;
            let started = *self.started.get_or_insert_with(Instant::now);
            tokio::time::timeout_at(started + frame, self.fill(want))
                .await
                .map_err(|_| ReadError::FrameDeadline(frame))??
        };
        if n > 0 {
            if let Some(a) = &self.activity {
                a.touch();
            }
        }
        Ok(n)
    }

    /// Reads at least once; returns the bytes read (0 = end of stream).
    async fn fill(&mut self, want: usize) -> Result<usize, ReadError> {
        // Keep at least a quarter chunk of room so one read takes many
        // messages; a nearly full buffer would otherwise read a few bytes.
        if self.buf.capacity() - self.buf.len() < want.max(READ_CHUNK / 4) {
            self.buf.reserve(want.max(READ_CHUNK));
        }
        Ok(self.io.read_buf(&mut self.buf).await?)
    }
}

/// Parses the frame header at the start of `buf`: `(header length, body
/// length)`, `None` if incomplete, an error for bad flags or an oversize frame.
fn parse_header_at(buf: &[u8], max_frame: usize) -> Result<Option<(usize, usize)>, ReadError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    if flags & !(MORE | LONG | COMMAND) != 0 || (flags & COMMAND != 0 && flags & MORE != 0) {
        return Err(ReadError::BadFlags(flags));
    }
    let (header, len) = if flags & LONG != 0 {
        if buf.len() < 9 {
            return Ok(None);
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&buf[1..9]);
        (9, u64::from_be_bytes(a))
    } else {
        if buf.len() < 2 {
            return Ok(None);
        }
        (2, u64::from(buf[1]))
    };
    if len > max_frame as u64 {
        return Err(ReadError::Oversize {
            announced: len,
            limit: max_frame,
        });
    }
    Ok(Some((header, len as usize)))
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
