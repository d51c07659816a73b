//! `fanfare-demo-web`: one command that starts an embedded broadcaster and N
//! worker processes sharing one port (SO_REUSEPORT), each serving the
//! websocket hub and the live dashboards.
//!
//! ```text
//! fanfare-demo-web --workers 4 --port 8080
//! ready http://127.0.0.1:8080
//! ```

mod assets;
mod auth;
mod cli;
mod fleet;
mod stats;
mod supervisor;
mod sysinfo;
mod worker;

use clap::Parser;

/// jemalloc, not glibc's malloc: under connection churn (websockets opened
/// and closed all day) glibc's heap kept growing by ≈ 1.6 KiB per churned
/// connection with the live set constant; jemalloc returns it
/// (`benches/results/2026-12-03/churn-memory.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fanfare=info".into()),
        )
        .init();
    let cli = cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.unwrap_or(2).max(1))
        .enable_all()
        .build()?;
    match cli.command {
        Some(cli::Command::Worker(w)) => rt.block_on(worker::run(w)),
        Some(cli::Command::Guard { command }) => rt.block_on(fleet::guard(command)),
        None => rt.block_on(supervisor::run(cli.demo, cli.threads)),
    }
}
