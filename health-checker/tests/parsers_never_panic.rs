//! Untrusted input (manifests, configuration, fstab, mountinfo, durations)
//! never panics a parser: it is accepted or rejected with an error.

use std::path::Path;

use health_checker::config::{parse_duration, Config};
use health_checker::probes::builtin::parse_fstab;
use health_checker::probes::manifest;
use health_checker::snapshots::mountinfo;
use proptest::prelude::*;

/// Text made of TOML-ish pieces, so the parsers get past the first byte.
fn tomlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("description = \"x\"\n".to_string()),
        Just("phase = \"late\"\n".to_string()),
        Just("severity = \"wanted\"\n".to_string()),
        Just("[boot]\n".to_string()),
        Just("[probes]\n".to_string()),
        Just("min_free = { path = \"/var\", percent = 200 }\n".to_string()),
        Just("timeout = \"5min 3s\"\n".to_string()),
        Just("tries = 0\n".to_string()),
        Just("after = [\"a\", 1]\n".to_string()),
        Just("stop = false\n".to_string()),
        Just("= { [ ] } \" ' \\ \n".to_string()),
        "[a-z_ =\\[\\]{}\",.0-9\n]{0,20}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn manifests(text in tomlish(), beside in any::<bool>()) {
        let b = Path::new("/x/p");
        let _ = manifest::parse(Path::new("/x/p.toml"), &text, beside.then_some(b));
    }

    #[test]
    fn configs(text in tomlish()) {
        let _ = health_checker::toml_error::parse::<Config>(Path::new("/c.toml"), &text);
    }

    #[test]
    fn fstab_and_mountinfo(text in "[ -~\t\n\\\\]{0,300}") {
        let _ = parse_fstab(&text);
        let _ = mountinfo::parse(&text);
    }

    #[test]
    fn durations(text in "[0-9a-z ]{0,24}") {
        let _ = parse_duration(&text);
    }
}
