//! Unit tests of `frame`.
use super::super::encode::encode_frame_header;
use super::*;

async fn frames(bytes: &[u8], max: usize) -> Result<Vec<ZmtpFrame>, ReadError> {
    let mut r = FrameReader::new(bytes, max);
    let mut out = Vec::new();
    while let Some(f) = r.next_frame().await? {
        out.push(f);
    }
    Ok(out)
}

#[tokio::test]
async fn short_long_and_commands() {
    let mut wire = Vec::new();
    encode_frame_header(&mut wire, 3, true);
    wire.extend_from_slice(b"abc");
    encode_frame_header(&mut wire, 300, false);
    wire.extend_from_slice(&[7u8; 300]);
    wire.extend_from_slice(&[0x04, 5, 4, b'P', b'I', b'N', b'G']);
    let f = frames(&wire, 1000).await.unwrap();
    assert_eq!(f.len(), 3);
    assert_eq!(
        f[0],
        ZmtpFrame::Message {
            more: true,
            body: Bytes::from_static(b"abc")
        }
    );
    assert!(matches!(&f[1], ZmtpFrame::Message { more: false, body } if body.len() == 300));
    assert!(matches!(&f[2], ZmtpFrame::Command(b) if &b[..] == b"\x04PING"));
}

#[tokio::test]
async fn refuses_huge_frame_before_reading_it() {
    let mut wire = vec![0x02];
    wire.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let err = frames(&wire, 1 << 20).await.unwrap_err();
    assert!(matches!(err, ReadError::Oversize { announced, .. } if announced == 1 << 40));
}

#[tokio::test]
async fn truncated_and_bad_flags() {
    assert!(matches!(
        frames(&[0x00, 5, b'a'], 10).await,
        Err(ReadError::Truncated)
    ));
    assert!(matches!(
        frames(&[0x40, 1, 0], 10).await,
        Err(ReadError::BadFlags(0x40))
    ));
    assert!(frames(&[], 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stalled_frame_or_message_hits_the_deadline() {
    let t = Timeouts {
        frame: Duration::from_millis(100),
        idle: Some(Duration::from_millis(300)),
    };
    // One byte short of a 100-byte frame.
    let (mut tx, rx) = tokio::io::duplex(1024);
    let mut r = FrameReader::new(rx, 1000);
    r.set_timeouts(t, Activity::new());
    let mut wire = Vec::new();
    encode_frame_header(&mut wire, 100, false);
    wire.extend_from_slice(&[1; 99]);
    tokio::io::AsyncWriteExt::write_all(&mut tx, &wire)
        .await
        .unwrap();
    let err = r.next_frame().await.unwrap_err();
    assert!(matches!(err, ReadError::FrameDeadline(_)), "{err}");

    // A complete MORE frame, then nothing: the message is under way.
    let (mut tx, rx) = tokio::io::duplex(1024);
    let mut r = FrameReader::new(rx, 1000);
    r.set_timeouts(t, Activity::new());
    let mut wire = Vec::new();
    encode_frame_header(&mut wire, 1, true);
    wire.push(b't');
    tokio::io::AsyncWriteExt::write_all(&mut tx, &wire)
        .await
        .unwrap();
    assert!(r.next_frame().await.unwrap().is_some());
    let err = r.next_frame().await.unwrap_err();
    assert!(matches!(err, ReadError::FrameDeadline(_)), "{err}");

    // Between messages only the idle timeout applies.
    let (_tx, rx) = tokio::io::duplex(1024);
    let mut r = FrameReader::new(rx, 1000);
    r.set_timeouts(t, Activity::new());
    let at = Instant::now();
    let err = r.next_frame().await.unwrap_err();
    assert!(matches!(err, ReadError::Idle(_)), "{err}");
    assert!(at.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn knows_when_a_whole_message_is_buffered() {
    let mut wire = Vec::new();
    encode_frame_header(&mut wire, 1, true);
    wire.push(b't');
    wire.extend_from_slice(&[0x04, 5, 4, b'P', b'I', b'N', b'G']);
    let (mut tx, rx) = tokio::io::duplex(1024);
    let mut r = FrameReader::new(rx, 100);
    tokio::io::AsyncWriteExt::write_all(&mut tx, &wire)
        .await
        .unwrap();
    r.fill(1).await.unwrap();
    assert!(!r.has_buffered_message(), "only a MORE frame and a command");
    tokio::io::AsyncWriteExt::write_all(&mut tx, &[0x00, 1, b'p'])
        .await
        .unwrap();
    while r.buf.len() < wire.len() + 3 {
        r.fill(1).await.unwrap();
    }
    assert!(r.has_buffered_message());
}
