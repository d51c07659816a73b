//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`) on
//! stable, so every input the fuzzers found interesting — crashes included,
//! once fixed — keeps being checked by `cargo test`.

use fanfare_protocol::fuzzing::TARGETS;

#[test]
fn every_target_has_a_corpus_and_survives_it() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    fanfare_protocol::fuzzing::replay_corpus(&root, TARGETS, &[])
}

#[test]
fn frames_split_and_join_agree() {
    use fanfare_protocol::fuzzing::{frames, join_frames};
    let data = [2u8, b'a', b'b', 0, 1, b'c'];
    let f = frames(&data);
    assert_eq!(f.len(), 3);
    assert_eq!(join_frames(&f), data);
}
