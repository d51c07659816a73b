//! Fuzz target: see `fanfare_client::hub::protocol::fuzzing::inbound`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fanfare_client::hub::protocol::fuzzing::inbound(data));
