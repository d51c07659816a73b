//! Command frames: encoding (READY, ERROR, PONG) and parsing (READY's
//! `Socket-Type`, PING, the name of any command).
//!
//! A command body is a 1-byte name length, the name, then the command's data.

use bytes::{BufMut, Bytes};

use super::encode::put_header;
use super::frame::COMMAND;

/// Longest PING context echoed in a PONG (ZMTP 3.1).
const MAX_PING_CONTEXT: usize = 16;

/// A whole command frame: header, name, `data`.
pub(super) fn command(name: &str, data: &[u8]) -> Vec<u8> {
    let len = 1 + name.len() + data.len();
    let mut out = Vec::with_capacity(len + 9);
    put_header(&mut out, COMMAND, len);
    out.put_u8(name.len() as u8);
    out.put_slice(name.as_bytes());
    out.put_slice(data);
    out
}

/// Splits a command body into its name and its data (a zero-copy slice).
pub(super) fn parse(body: &Bytes) -> Option<(&[u8], Bytes)> {
    let n = usize::from(*body.first()?);
    let name = body.get(1..1 + n)?;
    Some((name, body.slice(1 + n..)))
}

/// READY with one property, `Socket-Type`.
pub(super) fn ready(socket_type: &str) -> Vec<u8> {
    let mut props = Vec::new();
    let name = b"Socket-Type";
    props.put_u8(name.len() as u8);
    props.put_slice(name);
    props.put_u32(socket_type.len() as u32);
    props.put_slice(socket_type.as_bytes());
    command("READY", &props)
}

/// ERROR with a reason (at most 255 bytes).
pub(super) fn error(reason: &str) -> Vec<u8> {
    let r = &reason.as_bytes()[..reason.len().min(255)];
    let mut data = vec![r.len() as u8];
    data.extend_from_slice(r);
    command("ERROR", &data)
}

/// Extracts `Socket-Type` from a READY command body; the error says what
/// is wrong with it.
pub(super) fn ready_socket_type(body: &Bytes) -> Result<Bytes, &'static str> {
    if body.is_empty() {
        return Err("empty command");
    }
    let (name, props) = parse(body).ok_or("first command is not READY")?;
    if name != b"READY" {
        return Err("first command is not READY");
    }
    let mut pos = 0;
    let mut socket_type = None;
    while pos < props.len() {
        let nlen = usize::from(props[pos]);
        let name = props
            .get(pos + 1..pos + 1 + nlen)
            .ok_or("truncated property")?;
        pos += 1 + nlen;
        let vlen = props.get(pos..pos + 4).ok_or("truncated property")?;
        let vlen = u32::from_be_bytes([vlen[0], vlen[1], vlen[2], vlen[3]]) as usize;
        pos += 4;
        if props.len() < pos + vlen {
            return Err("truncated property value");
        }
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            socket_type = Some(props.slice(pos..pos + vlen));
        }
        pos += vlen;
    }
    socket_type.ok_or("no Socket-Type")
}

/// ZMTP 3.1 PING body: `\x04PING`, TTL (u16), context (≤ 16 bytes). Returns
/// the whole encoded PONG command echoing the context.
pub(crate) fn pong_for(body: &[u8]) -> Option<Bytes> {
    let rest = body.strip_prefix(b"\x04PING")?;
    let context = rest.get(2..).unwrap_or_default();
    let context = &context[..context.len().min(MAX_PING_CONTEXT)];
    Some(Bytes::from(command("PONG", context)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_round_trip() {
        let cmd = Bytes::from(ready("PUB"));
        // Skip the 2-byte command header.
        assert_eq!(&ready_socket_type(&cmd.slice(2..)).unwrap()[..], b"PUB");
        let not_ready = Bytes::from(error("no"));
        assert!(ready_socket_type(&not_ready.slice(2..)).is_err());
        assert!(ready_socket_type(&Bytes::new()).is_err());
    }

    #[test]
    fn long_commands_use_the_long_header() {
        let cmd = command("X", &[0; 300]);
        assert_eq!(cmd[0], COMMAND | super::super::frame::LONG);
        assert_eq!(cmd.len(), 9 + 2 + 300);
    }

    #[test]
    fn pong_echoes_ping_context() {
        let pong = pong_for(b"\x04PING\x00\x0actx").unwrap();
        assert_eq!(&pong[..], b"\x04\x08\x04PONGctx");
        assert!(pong_for(b"\x05READY").is_none());
    }
}
