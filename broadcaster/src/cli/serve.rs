//! Running the broadcaster itself: start, the readiness line, SIGINT /
//! SIGTERM, the graceful drain.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::Config;

/// Runs until SIGINT or SIGTERM, then drains (bounded by the shutdown timeout).
pub(super) async fn until_signal(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let running = crate::start(config, shutdown.clone()).await?;
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
