//! Replays the committed corpus of the ZMTP fuzz targets
//! (`fuzz/corpus/zmtp_frames/`, `fuzz/corpus/zmtp_handshake/`) on stable, so
//! every input the fuzzers found interesting — crashes included, once fixed —
//! keeps being checked by `cargo test`.
//!
//! `FANFARE_FUZZ_WRITE_SEEDS=1 cargo test -p fanfare-broadcaster --test
//! fuzz_corpus` (re)writes the seed inputs into the corpus folders first.

use std::path::PathBuf;

use fanfare_broadcaster::fuzzing::{seeds, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_a_corpus_and_survives_it() -> std::io::Result<()> {
    if std::env::var_os("FANFARE_FUZZ_WRITE_SEEDS").is_some() {
        for (target, name, data) in seeds() {
            let dir = corpus_dir(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(name), data)?;
        }
    }
    for (name, run) in TARGETS {
        let dir = corpus_dir(name);
        let mut inputs = 0usize;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_file() {
                run(&std::fs::read(&path)?);
                inputs += 1;
            }
        }
        // An empty corpus would make this test pass without checking anything.
        assert!(inputs > 0, "{} holds no inputs", dir.display());
        eprintln!("fuzz corpus {name}: {inputs} inputs replayed");
    }
    Ok(())
}
