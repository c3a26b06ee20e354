//! Any bytes as `/var/lib/health-checker/history.json`: reading never
//! panics, and what is read is written back without loss, entries this
//! version does not understand included.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| health_checker::history::fuzz_read_write(data));
