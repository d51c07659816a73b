//! Forwarding benchmark: throughput and loss of libzmq's `zmq_proxy`, a naive
//! zmq.rs PULL→PUB loop, the Fanfare broadcaster (raw libzmq SUB) and the
//! broadcaster through fanfare-client (after gap repair), fed by the same
//! libzmq load generator. See `benches/README.md`.

mod harness;
mod roles;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use harness::config::BenchConfig;
use harness::forwarders::ROLE_VAR;
use harness::table::{self, Cell};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("forwarding benchmark: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        return match role.as_str() {
            "naive-forwarder" => roles::naive_forwarder::run(),
            "client-sink" => roles::client_sink::run(&std::env::args().skip(1).collect::<Vec<_>>()),
            other => bail!("unknown {ROLE_VAR}={other}"),
        };
    }
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("forwarding: a benchmark, not a test; run it with `cargo bench -p fanfare-benches --bench forwarding`");
        return Ok(());
    }
    let target_dir = target_dir()?;
    let config = BenchConfig::from_env(&target_dir)?;
    let uses_broadcaster = config.uses_broadcaster();
    if uses_broadcaster && !config.broadcaster_bin.is_file() {
        bail!(
            "no broadcaster binary at {}: build it first with `cargo build --release -p fanfare-broadcaster` \
             (same CARGO_TARGET_DIR), set FANFARE_BROADCASTER_BIN, or leave it out with FANFARE_BENCH_COLUMNS=proxy,naive",
            config.broadcaster_bin.display()
        );
    }
    let tools = harness::c_tools::build(&target_dir.join("bench-tools"))?;
    let header = header(&config);
    eprintln!("{header}");
    // Side by side: every run of a row goes through all its columns in turn
    // (A B C A B C …), so slow phases of a noisy machine hit every column.
    let mut cells = Vec::new();
    for &subscribers in &config.subscribers {
        for &payload in &config.payloads {
            let first = cells.len();
            for &column in &config.columns {
                cells.push(Cell {
                    subscribers,
                    payload,
                    column,
                    runs: Vec::new(),
                    errors: Vec::new(),
                });
            }
            for run in 1..=config.runs {
                for cell in &mut cells[first..] {
                    let column = cell.column;
                    match harness::run::run_once(&tools, &config, column, subscribers, payload) {
                        Ok(result) => {
                            eprintln!(
                                "{subscribers} sub × {payload} B · {} · run {run}: {}",
                                column.title(),
                                describe(&result)
                            );
                            cell.runs.push(result);
                        }
                        Err(error) => {
                            eprintln!("{subscribers} sub × {payload} B · {} · run {run}: FAILED: {error:#}", column.title());
                            cell.errors.push(format!("run {run}: {error:#}"));
                        }
                    }
                }
            }
        }
    }
    let report = table::render(&config, &cells, &header);
    println!("\n{report}");
    let out_dir = target_dir.join("bench-results");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let out = out_dir.join("forwarding.md");
    std::fs::write(&out, &report).with_context(|| format!("write {}", out.display()))?;
    println!("written to {}", out.display());
    if cells.iter().all(|c| c.runs.is_empty()) {
        bail!("every run failed");
    }
    Ok(())
}

/// The Cargo target directory: the bench runs as `<target>/release/deps/forwarding-<hash>`.
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the bench binary")?;
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .context("the bench binary is not inside a Cargo target directory")
}

fn header(config: &BenchConfig) -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let broadcaster = if config.uses_broadcaster() {
        let age = std::fs::metadata(&config.broadcaster_bin)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map(|d| format!(", built {} min before the run", d.as_secs() / 60))
            .unwrap_or_default();
        let before = config
            .before_bin
            .as_ref()
            .filter(|_| config.columns.iter().any(|c| c.before()))
            .map(|b| {
                let client = config
                    .before_client
                    .as_ref()
                    .map(|c| format!(", their fanfare-client subscribers `{}`", c.display()))
                    .unwrap_or_default();
                format!(" Before columns: `{}`{client}.", b.display())
            })
            .unwrap_or_default();
        format!(
            " Broadcaster binary: `{}`{age}.{before}",
            config.broadcaster_bin.display()
        )
    } else {
        String::new()
    };
    let pace = if config.rate > 0.0 {
        format!("paced at {:.0} msg/s", config.rate)
    } else {
        "at full speed".to_owned()
    };
    format!(
        "# Forwarding benchmark\n\n{} messages per run, {} runs per cell, libzmq HWM {}, {cores} cores, git {rev}; \
         load: one libzmq PUSH sending [bench.t, payload] {pace}. Broadcaster buffers sized like the reference's: \
         each subscriber queue holds HWM × (payload + 128) bytes, history holds the whole run.{broadcaster}",
        config.messages, config.runs, config.hwm
    )
}

fn describe(result: &harness::run::RunResult) -> String {
    let sinks: Vec<String> = result
        .sinks
        .iter()
        .map(|s| {
            format!(
                "{:.0}/s {}/{} ({}, stamp gaps {}, replayed {}, resumes {})",
                s.rate(),
                s.unique,
                s.received,
                s.end,
                s.stamp_missing,
                s.replayed,
                s.resumes
            )
        })
        .collect();
    let counters = result
        .counters
        .map(|c| {
            format!(
                "; broadcaster metrics: ingress {}, rejected {}, egress dropped {}",
                c.ingress, c.rejected, c.egress_dropped
            )
        })
        .unwrap_or_default();
    format!(
        "ingest {:.0}/s; subscribers: {}{counters}; forwarder CPU {:.2} µs/msg; steal {:.0} %",
        result.ingest_rate,
        sinks.join("; "),
        result.cpu.forwarder,
        result.steal * 100.0
    )
}
