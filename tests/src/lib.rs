//! Shared integration-test harness for Fanfare.
//!
//! Everything here drives the *real* thing: the `broadcaster` binary as a
//! child process bound on port 0 ([`process::BroadcasterProcess`]), the
//! demo with its hub workers ([`demo::Demo`]) and browser-protocol
//! websocket clients ([`websocket::Ws`]), real ZeroMQ sockets with a timeout
//! on every receive ([`sockets`]), fanfare-client helpers ([`client`]), raw
//! TCP peers that speak (or abuse) ZMTP ([`zmtp`]), the admin HTTP endpoint
//! ([`http`], [`metrics`]) and libzmq through pyzmq ([`python`]). The
//! binaries are built on first use ([`binary`]). A test whose prerequisite
//! is missing skips visibly, and fails under CI ([`skip`]).
//!
//! Synchronisation is never a bare sleep: [`wait::eventually`] polls a
//! condition until a deadline.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use fanfare_tests::process::BroadcasterProcess;
//! let b = BroadcasterProcess::spawn(&["--id", "t1"]).await?;
//! println!("pull endpoint: {}", b.endpoints().pull);
//! # Ok(()) }
//! ```

pub mod bad_input;
pub mod binary;
pub mod browser;
pub mod cli;
pub mod client;
pub mod demo;
pub mod endpoints;
pub mod fabric;
pub mod http;
pub mod link_proxy;
pub mod metrics;
pub mod process;
pub mod procfs;
pub mod proxy;
pub mod python;
pub mod serial;
pub mod skip;
pub mod sockets;
pub mod wait;
pub mod websocket;
pub mod zmtp;

/// Default timeout for one receive in a test.
pub const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
