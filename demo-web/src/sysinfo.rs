//! This process's CPU and memory, read from `/proc/self` (Linux).

use std::time::Instant;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Samples CPU use between calls.
#[derive(Debug)]
pub struct CpuSampler {
    last_ticks: u64,
    last_at: Instant,
}

impl CpuSampler {
    /// Starts sampling now.
    pub fn new() -> Self {
        Self {
            last_ticks: cpu_ticks().unwrap_or(0),
            last_at: Instant::now(),
        }
    }

    /// CPU use since the last call, in percent of one core.
    pub fn sample(&mut self) -> f64 {
        let ticks = cpu_ticks().unwrap_or(self.last_ticks);
        let now = Instant::now();
        let secs = now.duration_since(self.last_at).as_secs_f64();
        let used = ticks.saturating_sub(self.last_ticks) as f64 / TICKS_PER_SECOND;
        self.last_ticks = ticks;
        self.last_at = now;
        if secs > 0.0 {
            100.0 * used / secs
        } else {
            0.0
        }
    }
}

fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of this process in bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
