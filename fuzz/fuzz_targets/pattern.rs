//! Fuzz target: see `fanfare_protocol::fuzzing::pattern`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fanfare_protocol::fuzzing::pattern(data));
