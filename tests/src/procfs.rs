//! What Linux says about a process the test started (`/proc/<pid>/status`,
//! `/proc/<pid>/fd`).

use anyhow::{Context, Result};

/// Resident set size of `pid`, KiB. An error (rather than 0) when it cannot
/// be read, so a memory bound can never pass for want of a reading.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Open file descriptors of `pid` (entries of `/proc/<pid>/fd`). An error
/// when it cannot be read.
pub fn open_fds(pid: u32) -> Result<usize> {
    let path = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&path)
        .with_context(|| format!("read {path}"))?
        .count())
}
