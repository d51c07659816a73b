//! Waiting for a condition with a deadline instead of sleeping.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Interval between two polls.
pub const POLL: Duration = Duration::from_millis(25);

/// Polls `check` until it yields `Some`, at most `timeout`; `what` names the
/// condition in the error.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
