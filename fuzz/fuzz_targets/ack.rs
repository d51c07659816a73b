//! Fuzz target: see `fanfare_protocol::fuzzing::ack`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fanfare_protocol::fuzzing::ack(data));
