//! Any bytes: parsing never panics, and whatever parses writes back to the
//! same bytes' meaning (a parsed environment re-serialises and re-parses to
//! itself). What GRUB reads from any bytes (`parse_as_grub`) is written
//! back as a well-formed block holding the same entries. The checks are
//! `grub_env::fuzz_parse`, which `cargo test` also runs on the seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| grub_env::fuzz_parse(data));
