//! Fuzz target: see `fanfare_broadcaster::fuzzing::handshake`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fanfare_broadcaster::fuzzing::handshake(data));
