//! Fanfare client.
#[cfg(feature = "hub")]
pub mod hub;
