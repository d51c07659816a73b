//! `broadcaster`: runs a Fanfare broadcaster, or one of its tools
//! (`pub`, `tail`, `stats`). Thin: parses arguments and calls the library.

use std::process::ExitCode;

use clap::Parser;
use fanfare_broadcaster::cli::{Cli, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        None => run(cli.run).await,
        Some(Command::Pub(a)) => fanfare_broadcaster::cli::publish::run(a).await,
        Some(Command::Tail(a)) => fanfare_broadcaster::cli::tail::run(a).await,
        Some(Command::Stats(a)) => fanfare_broadcaster::cli::stats::run(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broadcaster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: fanfare_broadcaster::cli::RunArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let shutdown = CancellationToken::new();
    let running = fanfare_broadcaster::start(config, shutdown.clone()).await?;
    // Handlers exist before anyone can read the ready line and send a signal.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // The readiness contract: exactly one line on stdout, once every socket is bound.
    println!("{}", running.endpoints().ready_line());
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    if let Err(e) = running.wait().await {
        tracing::warn!(error = %e, "shutdown was not clean");
    }
    tracing::info!("stopped");
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FANFARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
