//! Any bytes: parsing never panics, and whatever parses writes back to the
//! same bytes' meaning (a parsed environment re-serialises and re-parses to
//! itself). What GRUB reads from any bytes (`parse_as_grub`) is written
//! back as a well-formed block holding the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = grub_env::Env::parse(data) {
        let bytes = env.to_bytes().expect("a parsed block fits its own size");
        let again = grub_env::Env::parse(&bytes).expect("our output parses");
        assert_eq!(again, env);
    }
    if let Ok(read) = grub_env::Env::parse_as_grub(data) {
        let bytes = read.env.to_bytes().expect("what GRUB reads fits a block");
        let again = grub_env::Env::parse(&bytes).expect("the repair is well formed");
        assert_eq!(again, read.env);
    }
});
