//! Fanfare client.
