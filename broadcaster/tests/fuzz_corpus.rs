//! Replays the committed corpus of the ZMTP fuzz targets
//! (`fuzz/corpus/zmtp_frames/`, `fuzz/corpus/zmtp_handshake/`) on stable, so
//! every input the fuzzers found interesting — crashes included, once fixed —
//! keeps being checked by `cargo test`.
//!
//! `FANFARE_FUZZ_WRITE_SEEDS=1 cargo test -p fanfare-broadcaster --test
//! fuzz_corpus` (re)writes the seed inputs into the corpus folders first.

use fanfare_broadcaster::fuzzing::{seeds, TARGETS};

#[test]
fn every_target_has_a_corpus_and_survives_it() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    fanfare_protocol::fuzzing::replay_corpus(&root, TARGETS, &seeds())
}
