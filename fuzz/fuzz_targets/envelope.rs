//! Fuzz target: `baton_fuzz_checks::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz_checks::envelope(data));
