//! One mechanism per seam, checked in the source: systemd's client sits
//! below both the probes and the actions (neither it nor the probes reach
//! into `actions`), and files are replaced atomically in one place only
//! (`fsutil::atomic_write`).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `(file, line number, line)` of every line of the files under `dir`
/// (relative to `src/`) that contains `needle`, comments excluded.
fn uses(dir: &str, needle: &str) -> Vec<String> {
    let mut files = Vec::new();
    let base = src().join(dir);
    if base.is_dir() {
        sources(&base, &mut files);
    } else {
        files.push(base.with_extension("rs"));
    }
    let mut hits = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && line.contains(needle) {
                hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    hits
}

#[test]
fn the_systemd_client_and_the_probes_do_not_depend_on_the_actions() {
    let mut hits = uses("systemd", "crate::actions");
    hits.extend(uses("probes", "crate::actions"));
    assert!(hits.is_empty(), "{hits:#?}");
}

#[test]
fn files_are_replaced_in_one_place() {
    let hits: Vec<String> = uses("", "rename(")
        .into_iter()
        .filter(|h| !h.contains("/src/fsutil.rs:"))
        .collect();
    assert!(
        hits.is_empty(),
        "write through fsutil::atomic_write: {hits:#?}"
    );
}
