//! Fuzz target: see `fanfare_protocol::fuzzing::replay_reply`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fanfare_protocol::fuzzing::replay_reply(data));
