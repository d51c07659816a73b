//! The memory bench's markdown summary and CSV files
//! (`memory-idle-<label>.csv`, `memory-soak-<label>.csv`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, Result};

use super::idle::IdleResult;
use super::soak::{SoakConfig, SoakResult};

/// Date, machine, load and settings.
pub fn header(label: &str, nofile: u64, env: &[(String, String)], args: &[String]) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let load = read("/proc/loadavg");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    format!(
        "## memory bench `{label}`, {} · {cores} cores, {:.1} GiB · load {} · RLIMIT_NOFILE {nofile} · worker env {env:?} · demo args {args:?}\n",
        date.trim(),
        mem_kib as f64 / 1048576.0,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// The idle table.
pub fn idle_table(results: &[IdleResult]) -> String {
    let mut s = String::from(
        "\n| idle websockets | worker RSS before → N/2 → N | KiB per websocket (Δ/N) | marginal KiB (N/2 → N) | worker fds | ramp |\n|---:|---|---:|---:|---:|---:|\n",
    );
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {:.1} → {:.1} → {:.1} MiB | {:.2} | {:.2} | {} | {:.0} s |",
            r.n,
            r.rss[0] as f64 / 1024.0,
            r.rss[1] as f64 / 1024.0,
            r.rss[2] as f64 / 1024.0,
            r.per_conn(),
            r.marginal(),
            r.fds,
            r.ramp_s
        );
    }
    s
}

/// Least-squares slope of `ys` over `xs` (per unit of x).
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// The soak summary.
pub fn soak_summary(cfg: &SoakConfig, r: &SoakResult) -> String {
    let m = &r.samples[r.measured_from.min(r.samples.len().saturating_sub(1))..];
    let (Some(first), Some(last)) = (m.first(), m.last()) else {
        return "\nsoak: no samples\n".into();
    };
    let rss: Vec<f64> = m.iter().map(|s| s.rss_kib as f64).collect();
    let ts: Vec<f64> = m.iter().map(|s| s.t_s / 60.0).collect();
    let max = rss.iter().copied().fold(0.0, f64::max);
    let min = rss.iter().copied().fold(f64::INFINITY, f64::min);
    let drift = (last.rss_kib as f64 - first.rss_kib as f64) / first.rss_kib as f64 * 100.0;
    let per_min = slope(&ts, &rss);
    let fd_min = m.iter().map(|s| s.fds).min().unwrap_or(0);
    let fd_max = m.iter().map(|s| s.fds).max().unwrap_or(0);
    let t = &r.totals;
    let secs = (last.t_s - first.t_s).max(1.0);
    format!(
        "\n### soak: {} clients, {} topics, {} msg/s, churn {:.0} %/min ({}), warm-up {} s, measured {:.0} s\n\n\
         | | value |\n|---|---|\n\
         | worker RSS at end of warm-up → end | {:.1} → {:.1} MiB (min {:.1}, max {:.1}) |\n\
         | RSS drift (end vs end of warm-up) | {drift:+.2} % |\n\
         | RSS trend (least squares over the measured part) | {:+.0} KiB/min |\n\
         | worker open fds (measured part) | {} → {} (min {fd_min}, max {fd_max}) |\n\
         | open websockets (worker, last sample) | {} |\n\
         | events received (live + replayed) / published | {} / {} ({:.0} deliveries/s in the measured part) |\n\
         | **silent gaps** (events skipped with no `gap` frame) | **{}** |\n\
         | explicit loss (events skipped after a `gap` frame) / `gap` frames | {} / {} |\n\
         | duplicates | {} |\n\
         | reconnects by churn / events replayed on resume / resumes whose count differed | {} / {} / {} |\n\
         | server close frames / connections lost or failed / `error` frames | {} / {} / {} |\n\
         | broadcaster RSS end of warm-up → end | {:.1} → {:.1} MiB |\n",
        cfg.clients,
        cfg.topics,
        cfg.rate,
        cfg.churn_per_min * 100.0,
        if cfg.resume { "resume with since" } else { "plain subscribe" },
        cfg.warmup_s,
        secs,
        first.rss_kib as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0,
        min / 1024.0,
        max / 1024.0,
        per_min,
        first.fds,
        last.fds,
        last.open,
        t.events.load(Relaxed),
        r.published,
        (last.events - first.events) as f64 / secs,
        t.silent.load(Relaxed),
        t.explicit.load(Relaxed),
        t.gap_frames.load(Relaxed),
        t.dups.load(Relaxed),
        t.churned.load(Relaxed),
        t.replayed.load(Relaxed),
        t.replay_mismatch.load(Relaxed),
        t.server_closes.load(Relaxed),
        t.dropped.load(Relaxed),
        t.errors.load(Relaxed),
        first.broadcaster_kib as f64 / 1024.0,
        last.broadcaster_kib as f64 / 1024.0,
    )
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    eprintln!("memory: wrote {}", path.display());
    Ok(())
}

/// `memory-idle-<label>.csv`.
pub fn write_idle_csv(dir: &Path, label: &str, results: &[IdleResult]) -> Result<()> {
    let mut s = String::from(
        "n,rss_before_kib,rss_half_kib,rss_n_kib,kib_per_conn,marginal_kib,fds,ramp_s\n",
    );
    for r in results {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.3},{:.3},{},{:.1}",
            r.n,
            r.rss[0],
            r.rss[1],
            r.rss[2],
            r.per_conn(),
            r.marginal(),
            r.fds,
            r.ramp_s
        );
    }
    write(dir, &format!("memory-idle-{label}.csv"), &s)
}

/// `memory-soak-<label>.csv`: every sample.
pub fn write_soak_csv(dir: &Path, label: &str, r: &SoakResult) -> Result<()> {
    let mut s = String::from(
        "t_s,measured,worker_rss_kib,worker_fds,open,events,silent,explicit,replayed,churned,broadcaster_rss_kib\n",
    );
    for (k, x) in r.samples.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:.1},{},{},{},{},{},{},{},{},{},{}",
            x.t_s,
            u8::from(k >= r.measured_from),
            x.rss_kib,
            x.fds,
            x.open,
            x.events,
            x.silent,
            x.explicit,
            x.replayed,
            x.churned,
            x.broadcaster_kib
        );
    }
    write(dir, &format!("memory-soak-{label}.csv"), &s)
}
