//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable
//! test that replays their corpus (`protocol/tests/fuzz_corpus.rs`), so a
//! crash found once stays fixed in CI. Not part of the API.
//!
//! Each entry takes arbitrary bytes, runs one decoder, and checks the
//! properties that must hold for every input: no panic, and for what
//! decodes, encoding it again and decoding gives the same value.

use bytes::{BufMut, Bytes, BytesMut};

use crate::heartbeat::Heartbeat;
use crate::meta::MetaRef;
use crate::pattern::Pattern;
use crate::replay::{ReplayRequest, ReplyHeader};
use crate::stamp::StampRef;

/// One fuzz entry point.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("stamp", stamp),
    ("meta", meta),
    ("heartbeat", heartbeat),
    ("replay_request", replay_request),
    ("replay_reply", replay_reply),
    ("pattern", pattern),
    ("ack", ack),
];

/// Ack payloads: decode; what decodes re-encodes to the same bytes.
pub fn ack(data: &[u8]) {
    if let Ok(a) = crate::ack::Ack::decode(data) {
        let mut out = Vec::new();
        a.encode(&mut out);
        assert_eq!(out, data, "ack round trip");
    }
}

/// Stamp frames: decode; what decodes re-encodes to an equal stamp.
pub fn stamp(data: &[u8]) {
    if let Ok(s) = StampRef::decode(data) {
        let mut out = BytesMut::new();
        s.encode(&mut out);
        let again = StampRef::decode(&out);
        assert_eq!(again, Ok(s), "stamp round trip");
    }
}

/// Publisher metadata frames: decode; what decodes re-encodes to the same bytes.
pub fn meta(data: &[u8]) {
    if let Ok(m) = MetaRef::decode(data) {
        let out = match m.publisher_seq {
            Some(seq) => crate::meta::encode_seq(m.publisher, m.trace_id, m.published_us, seq),
            None => crate::meta::encode(m.publisher, m.trace_id, m.published_us),
        };
        assert_eq!(out, data, "meta round trip");
    }
}

/// Heartbeat payloads: decode; what decodes re-encodes to an equal heartbeat.
pub fn heartbeat(data: &[u8]) {
    if let Ok(h) = Heartbeat::decode(data) {
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(
            Heartbeat::decode(&out).as_ref(),
            Ok(&h),
            "heartbeat round trip"
        );
    }
}

/// Replay requests, as frames split from `data` (see [`frames`]).
pub fn replay_request(data: &[u8]) {
    let f = frames(data);
    if let Ok(r) = ReplayRequest::from_frames(&f) {
        let again = ReplayRequest::from_frames(&r.to_frames());
        assert_eq!(again.as_ref(), Ok(&r), "replay request round trip");
        // Filtering any topic is safe and bounded.
        let _ = r.wants("a.b.c", 0);
    }
}

/// Replay reply headers, as frames split from `data`.
pub fn replay_reply(data: &[u8]) {
    let f = frames(data);
    if let Ok(h) = ReplyHeader::from_frames(&f) {
        let mut again = vec![Bytes::new()];
        again.extend(h.to_frames());
        assert_eq!(
            ReplyHeader::from_frames(&again),
            Ok(h),
            "reply header round trip"
        );
    }
}

/// `pattern \n topic`: parse the pattern and match the topic, checked
/// against a reference matcher (dynamic programming over the definition).
pub fn pattern(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (p, topic) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(parsed) = Pattern::parse(p) else {
        return;
    };
    let got = parsed.matches(topic);
    let pw: Vec<&str> = p.split('.').collect();
    let tw: Vec<&str> = topic.split('.').collect();
    assert_eq!(got, reference_match(&pw, &tw), "{p:?} vs {topic:?}");
    if got {
        assert!(
            topic.starts_with(parsed.literal_prefix()),
            "prefix of {p:?}"
        );
    }
}

/// Splits fuzz input into frames: each frame is a length byte then that many
/// bytes (cut short at the end of the input).
pub fn frames(data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        out.push(Bytes::copy_from_slice(&tail[..n]));
        rest = &tail[n..];
    }
    out
}

/// Joins frames the way [`frames`] splits them (frames over 255 bytes are cut).
pub fn join_frames(frames: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let n = f.len().min(255);
        out.put_u8(n as u8);
        out.put_slice(&f[..n]);
    }
    out
}

/// `m[i][j]`: does `p[i..]` match `t[j..]`? O(|p|·|t|), no backtracking.
fn reference_match(p: &[&str], t: &[&str]) -> bool {
    let (np, nt) = (p.len(), t.len());
    let mut m = vec![vec![false; nt + 1]; np + 1];
    m[np][nt] = true;
    for i in (0..np).rev() {
        for j in (0..=nt).rev() {
            m[i][j] = match p[i] {
                "#" => m[i + 1][j] || (j < nt && m[i][j + 1]),
                "*" => j < nt && m[i + 1][j + 1],
                w => j < nt && w == t[j] && m[i + 1][j + 1],
            };
        }
    }
    m[0][0]
}

/// A named seed input of a target: `(target, file name, bytes)`.
pub type Seed = (&'static str, String, Vec<u8>);

/// Replays every input under `corpus_root/<target>/` through its target,
/// for the stable corpus tests of each crate. With `FANFARE_FUZZ_WRITE_SEEDS`
/// set, writes `seeds` into the corpus folders first. Fails when a target's
/// corpus is empty: such a test would pass without checking anything.
pub fn replay_corpus(
    corpus_root: &std::path::Path,
    targets: &[(&str, Target)],
    seeds: &[Seed],
) -> std::io::Result<()> {
    if std::env::var_os("FANFARE_FUZZ_WRITE_SEEDS").is_some() {
        for (target, name, data) in seeds {
            let dir = corpus_root.join(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(name), data)?;
        }
    }
    for (name, run) in targets {
        let dir = corpus_root.join(name);
        let mut inputs = 0usize;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_file() {
                run(&std::fs::read(&path)?);
                inputs += 1;
            }
        }
        assert!(inputs > 0, "{} holds no inputs", dir.display());
        eprintln!("fuzz corpus {name}: {inputs} inputs replayed");
    }
    Ok(())
}
