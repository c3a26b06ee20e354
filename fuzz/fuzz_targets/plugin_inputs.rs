//! Text an admin or a vendor wrote, or a system holds: plugin manifests,
//! fstab, mountinfo and durations are accepted or rejected with an error,
//! never a panic.
#![no_main]

use std::path::Path;

use health_checker::config::parse_duration;
use health_checker::probes::builtin::parse_fstab;
use health_checker::snapshots::mountinfo;
use health_checker::probes::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = manifest::parse(Path::new("/fuzz/p.toml"), text, None);
    let _ = parse_fstab(text);
    let _ = mountinfo::parse(text);
    let _ = parse_duration(text);
});
