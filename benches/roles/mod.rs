//! Helper roles the bench binary plays when started with `FANFARE_BENCH_ROLE`
//! (so the Rust forwarder and subscribers run as their own processes).

pub mod client_sink;
pub mod naive_forwarder;
