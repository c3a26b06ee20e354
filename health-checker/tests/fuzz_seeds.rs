//! The seed corpus of the fuzz targets for the files kept outside the
//! snapshots (`fuzz/seeds/state_json`, `fuzz/seeds/history_json`), fed
//! through the same functions the targets call: every seed, and every crash
//! the fuzzer ever found (kept there as a seed), stays fixed.

use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

fn run(target: &str, f: fn(&[u8])) {
    for seed in seeds(target) {
        let data = std::fs::read(&seed).unwrap();
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!("seed {} fails", seed.display());
        }
    }
}

#[test]
fn state_json_seeds() {
    run("state_json", health_checker::state::fuzz_read_write);
}

#[test]
fn history_json_seeds() {
    run("history_json", health_checker::history::fuzz_read_write);
}
