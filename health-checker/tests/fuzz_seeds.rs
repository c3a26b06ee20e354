//! The seed corpus of every fuzz target (`fuzz/seeds/TARGET`), fed through
//! the same functions the targets call: every seed, and every crash the
//! fuzzer ever found (kept there as a seed), stays fixed.

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

#[test]
fn grubenv_parse_seeds() {
    run("grubenv_parse", grub_env::fuzz_parse);
}

#[test]
fn plugin_inputs_seeds() {
    run("plugin_inputs", health_checker::config::fuzz_text_inputs);
}

/// Every fuzz target has its seeds run here.
#[test]
fn every_fuzz_target_has_its_seeds_run_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let this =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds.rs"))
            .unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let target = name.trim_end_matches(".rs");
        assert!(
            this.contains(&format!("run(\"{target}\"")),
            "the seeds of fuzz target {target} are not run in cargo test"
        );
    }
}
