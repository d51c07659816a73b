//! One at a time: tests of one binary that measure latency or memory under
//! an attack hold [`measured`] for their whole run, so that the other
//! attacks of the same binary (run in parallel threads by default) do not
//! load the 2 cores they are measured on.

use tokio::sync::{Mutex, MutexGuard};

static MEASURED: Mutex<()> = Mutex::const_new(());

/// Waits for the other measured tests of this test binary to finish.
pub async fn measured() -> MutexGuard<'static, ()> {
    MEASURED.lock().await
}
