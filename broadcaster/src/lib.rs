//! Fanfare broadcaster.
