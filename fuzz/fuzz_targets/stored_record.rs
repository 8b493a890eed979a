//! Fuzz target: `baton_fuzz_checks::stored_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz_checks::stored_record(data));
