//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`) on
//! stable, so every input the fuzzers found interesting — crashes included,
//! once fixed — keeps being checked by `cargo test`.

use std::path::PathBuf;

use fanfare_protocol::fuzzing::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_a_corpus_and_survives_it() -> std::io::Result<()> {
    for (name, run) in TARGETS {
        let dir = corpus_dir(name);
        let mut inputs = 0usize;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_file() {
                let data = std::fs::read(&path)?;
                run(&data);
                inputs += 1;
            }
        }
        // An empty corpus would make this test pass without checking anything.
        assert!(inputs > 0, "{} holds no inputs", dir.display());
        eprintln!("fuzz corpus {name}: {inputs} inputs replayed");
    }
    Ok(())
}

#[test]
fn frames_split_and_join_agree() {
    use fanfare_protocol::fuzzing::{frames, join_frames};
    let data = [2u8, b'a', b'b', 0, 1, b'c'];
    let f = frames(&data);
    assert_eq!(f.len(), 3);
    assert_eq!(join_frames(&f), data);
}
