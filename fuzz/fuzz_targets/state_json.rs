//! Any bytes as `/var/lib/health-checker/state.json` (a file another version
//! wrote, or a disk returned): reading never panics, and what is read is
//! written back without loss.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| health_checker::state::fuzz_read_write(data));
