//! Writing frames: headers, whole message frames, multipart messages.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::frame::{LONG, MORE};

/// Longest frame header: the flags byte and an 8-byte length.
pub(crate) const MAX_FRAME_HEADER: usize = 9;

/// Writes a header with `flags` (`MORE` and/or `COMMAND`) for a body of
/// `len` bytes, with the long form when the length needs it.
pub(super) fn put_header(out: &mut impl BufMut, flags: u8, len: usize) {
    if len <= 255 {
        out.put_u8(flags);
        out.put_u8(len as u8);
    } else {
        out.put_u8(flags | LONG);
        out.put_u64(len as u64);
    }
}

/// Writes a message frame header for a body of `len` bytes.
pub(crate) fn encode_frame_header(out: &mut impl BufMut, len: usize, more: bool) {
    put_header(out, if more { MORE } else { 0 }, len);
}

/// Appends one message frame whose `len`-byte body `write_body` writes;
/// returns where the body sits in `out`.
pub(crate) fn put_frame(
    out: &mut BytesMut,
    len: usize,
    more: bool,
    write_body: impl FnOnce(&mut BytesMut),
) -> Range<usize> {
    encode_frame_header(out, len, more);
    let start = out.len();
    write_body(out);
    debug_assert_eq!(out.len() - start, len, "frame body length");
    start..out.len()
}

/// Appends a whole multipart message: every frame but the last has `MORE`.
pub(crate) fn encode_multipart(out: &mut impl BufMut, frames: &[&[u8]]) {
    for (i, f) in frames.iter().enumerate() {
        encode_frame_header(out, f.len(), i + 1 < frames.len());
        out.put_slice(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_headers() {
        let mut out = Vec::new();
        encode_frame_header(&mut out, 3, true);
        encode_frame_header(&mut out, 300, false);
        assert_eq!(out, [0x01, 3, 0x02, 0, 0, 0, 0, 0, 0, 1, 44]);
    }

    #[test]
    fn multipart_marks_all_but_the_last_frame() {
        let mut out = Vec::new();
        encode_multipart(&mut out, &[b"ab", b"", b"c"]);
        assert_eq!(out, b"\x01\x02ab\x01\x00\x00\x01c");
    }

    #[test]
    fn put_frame_returns_the_body_range() {
        let mut out = BytesMut::new();
        out.put_slice(b"xx");
        let r = put_frame(&mut out, 3, false, |o| o.put_slice(b"abc"));
        assert_eq!(r, 4..7);
        assert_eq!(&out[..], b"xx\x00\x03abc");
    }
}
