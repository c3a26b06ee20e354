//! Text an admin or a vendor wrote, or a system holds: the configuration,
//! plugin manifests, fstab, mountinfo and durations are accepted or
//! rejected with an error, never a panic. The checks are
//! `health_checker::config::fuzz_text_inputs`, which `cargo test` also runs
//! on the seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| health_checker::config::fuzz_text_inputs(data));
