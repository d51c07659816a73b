//! Memory of one hub worker (issue 10, benchmark 4):
//! * `idle`: RSS per idle websocket at N connections (default 10 000 and
//!   50 000), each subscribed to one pattern, on one worker;
//! * `soak`: 2 000 clients, 10 %/min churn (resuming with `since`), 1 000
//!   msg/s published, for 10 minutes after a warm-up: worker RSS drift, open
//!   fds, silent gaps.
//!
//! `cargo bench -p fanfare-benches --bench memory`; see benches/README.md.

#[path = "memory/dial.rs"]
mod dial;
#[allow(dead_code)] // shared with the fanout bench; only `due` is used here
#[path = "fanout/event.rs"]
mod event;
#[path = "memory/idle.rs"]
mod idle;
#[allow(dead_code)] // shared with the forwarding bench, which uses all of it
#[path = "harness/procs.rs"]
mod procs;
#[path = "memory/report.rs"]
mod report;
#[path = "memory/server.rs"]
mod server;
#[path = "memory/soak.rs"]
mod soak;
#[path = "harness/ws.rs"]
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("memory benchmark: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
    }
}

fn run() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("memory: a benchmark, not a test; run it with `cargo bench -p fanfare-benches --bench memory`");
        return Ok(());
    }
    let modes = var("FANFARE_MEMORY_MODES").unwrap_or_else(|| "idle,soak".into());
    let idle_ns: Vec<usize> = var("FANFARE_MEMORY_IDLE")
        .unwrap_or_else(|| "10000,50000".into())
        .split(',')
        .map(|v| v.trim().parse().context("FANFARE_MEMORY_IDLE"))
        .collect::<Result<_>>()?;
    let parallel: usize = num("FANFARE_MEMORY_PARALLEL", 200)?;
    let worker_env: Vec<(String, String)> = var("FANFARE_MEMORY_WORKER_ENV")
        .map(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let demo_args: Vec<String> = var("FANFARE_MEMORY_DEMO_ARGS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let soak_cfg = soak::SoakConfig {
        clients: num("FANFARE_SOAK_CLIENTS", 2000)?,
        topics: num("FANFARE_SOAK_TOPICS", 50)?,
        rate: num("FANFARE_SOAK_RATE", 1000.0)?,
        churn_per_min: num("FANFARE_SOAK_CHURN", 0.10)?,
        resume: num("FANFARE_SOAK_RESUME", 1u8)? != 0,
        warmup_s: num("FANFARE_SOAK_WARMUP", 60)?,
        duration_s: num("FANFARE_SOAK_SECONDS", 600)?,
        sample_s: num("FANFARE_SOAK_SAMPLE", 5)?,
        pad: num("FANFARE_SOAK_PAD", 60)?,
    };
    let label = var("FANFARE_MEMORY_LABEL").unwrap_or_else(|| "run".into());
    let out_dir = var("FANFARE_MEMORY_OUT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
        PathBuf::from,
    );
    let nofile = dial::raise_nofile()?;
    let bins = server::Bins::find()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(num("FANFARE_MEMORY_THREADS", 2)?)
        .enable_all()
        .build()?;
    let header = report::header(&label, nofile, &worker_env, &demo_args);
    eprintln!("{header}");
    let mut md = header;
    for mode in modes.split(',').map(str::trim) {
        match mode {
            "idle" => {
                let mut results = Vec::new();
                for &n in &idle_ns {
                    // The worker and this process each hold n sockets.
                    let need = n as u64 + 1024;
                    if need > nofile {
                        let note = format!(
                            "idle N={n}: skipped, RLIMIT_NOFILE is {nofile} (hard limit) and \
                             N + 1024 = {need} fds are needed in this process and in the worker"
                        );
                        eprintln!("{note}");
                        md.push_str(&format!("\n{note}\n"));
                        continue;
                    }
                    eprintln!("idle N={n} …");
                    let r =
                        rt.block_on(idle::measure(&bins, &worker_env, &demo_args, n, parallel))?;
                    eprintln!(
                        "idle N={n}: {:.2} KiB per websocket ((RSS at N − before) / N), marginal {:.2} KiB, RSS {:?} KiB, fds {}, ramp {:.1} s",
                        r.per_conn(),
                        r.marginal(),
                        r.rss,
                        r.fds,
                        r.ramp_s
                    );
                    results.push(r);
                }
                md.push_str(&report::idle_table(&results));
                report::write_idle_csv(&out_dir, &label, &results)?;
            }
            "soak" => {
                let r = rt.block_on(soak::run(
                    &bins,
                    &worker_env,
                    &demo_args,
                    &soak_cfg,
                    parallel,
                ))?;
                md.push_str(&report::soak_summary(&soak_cfg, &r));
                report::write_soak_csv(&out_dir, &label, &r)?;
            }
            other => anyhow::bail!("unknown mode {other:?} in FANFARE_MEMORY_MODES (idle, soak)"),
        }
    }
    println!("{md}");
    Ok(())
}
