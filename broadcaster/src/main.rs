//! `broadcaster`: runs a Fanfare broadcaster, or one of its tools
//! (`pub`, `tail`, `stats`). Thin: parses arguments, sets up logging and
//! calls the library's [`Cli::run`].

use std::process::ExitCode;

use clap::Parser;
use fanfare_broadcaster::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broadcaster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tracing` to stderr, filtered by `FANFARE_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FANFARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
