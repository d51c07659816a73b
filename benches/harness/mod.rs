//! The forwarding benchmark's harness: processes, the C tools, one run, the table.

pub mod admin;
pub mod c_tools;
pub mod config;
pub mod forwarders;
pub mod procs;
pub mod run;
pub mod table;
