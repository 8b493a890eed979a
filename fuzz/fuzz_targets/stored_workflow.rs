//! Fuzz target: `baton_fuzz_checks::stored_workflow`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baton_fuzz_checks::stored_workflow(data));
