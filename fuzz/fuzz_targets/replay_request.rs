//! Fuzz target: see `fanfare_protocol::fuzzing::replay_request`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fanfare_protocol::fuzzing::replay_request(data));
