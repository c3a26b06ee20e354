//! `make bench` runs every benchmark of the workspace: the command the
//! Makefile runs, with `--no-run`, builds the bench executable of every
//! bench target `cargo metadata` lists.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The names of every `[[bench]]` target of the workspace.
fn bench_targets(cargo: &str) -> BTreeSet<String> {
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(workspace())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names = BTreeSet::new();
    for p in v["packages"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            if t["kind"].as_array().unwrap().iter().any(|k| k == "bench") {
                names.insert(t["name"].as_str().unwrap().to_string());
            }
        }
    }
    names
}

#[test]
fn make_bench_runs_every_bench_target() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let want = bench_targets(&cargo);
    assert!(want.len() >= 2, "bench targets: {want:?}");
    // The recipe, without the dependency installation.
    let out = Command::new("make")
        .args(["-n", "-o", "deps", "bench", "CARGO=cargo"])
        .current_dir(workspace())
        .output()
        .expect("running make -n bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recipe = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut built = BTreeSet::new();
    for line in recipe.lines().filter(|l| l.starts_with("cargo bench")) {
        // The same selection, built (not run) in the test profile's
        // directory so nothing is compiled twice.
        let cmd = format!(
            "{} --profile dev --no-run --message-format=json",
            line.replacen("cargo", &cargo, 1)
        );
        let out = Command::new("sh")
            .args(["-c", &cmd])
            .current_dir(workspace())
            .output()
            .expect("running the bench command");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for msg in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(msg) else {
                continue;
            };
            let is_bench = v["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"));
            if v["reason"] == "compiler-artifact" && is_bench && !v["executable"].is_null() {
                built.insert(v["target"]["name"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(built, want, "make bench runs:\n{recipe}");
}
