//! Per-connection liveness: when a peer last made progress (a byte read
//! from it or written to it), the token that stops its connection, and the
//! table of one socket's open connections, from which the longest-idle peer
//! is evicted when the socket is at its connection cap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Milliseconds since the first call (a coarse monotonic clock).
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One connection's progress clock and stop token.
#[derive(Debug)]
pub(crate) struct Activity {
    last_ms: AtomicU64,
    stop: CancellationToken,
}

impl Activity {
    /// A connection that made progress just now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            last_ms: AtomicU64::new(now_ms()),
            stop: CancellationToken::new(),
        })
    }

    /// The peer made progress (one relaxed store).
    pub(crate) fn touch(&self) {
        self.last_ms.store(now_ms(), Relaxed);
    }

    /// How long since the last progress.
    pub(crate) fn idle(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_ms.load(Relaxed)))
    }

    /// Cancelled when the connection must end (evicted, or its writer gave up).
    pub(crate) fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}

/// The open connections of one socket.
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next: AtomicU64,
}

impl ConnTable {
    /// Registers a connection; returns its key for [`Self::remove`].
    pub(crate) fn insert(&self, a: Arc<Activity>) -> u64 {
        let key = self.next.fetch_add(1, Relaxed);
        self.lock().insert(key, a);
        key
    }

    /// Forgets a connection that ended.
    pub(crate) fn remove(&self, key: u64) {
        self.lock().remove(&key);
    }

    /// Stops the longest-idle connection if it has been idle at least
    /// `min_idle`; true if one was stopped. O(open connections), run only
    /// when a socket is at its cap.
    pub(crate) fn evict_idlest(&self, min_idle: Duration) -> bool {
        let mut conns = self.lock();
        let idlest = conns
            .iter()
            .filter(|(_, a)| !a.stop.is_cancelled())
            .max_by_key(|(_, a)| a.idle())
            .map(|(k, a)| (*k, a.clone()));
        match idlest {
            Some((key, a)) if a.idle() >= min_idle => {
                a.stop.cancel();
                conns.remove(&key);
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_only_an_idle_enough_peer() {
        let t = ConnTable::default();
        let a = Activity::new();
        let key = t.insert(a.clone());
        assert!(!t.evict_idlest(Duration::from_secs(60)));
        assert!(!a.stop().is_cancelled());
        assert!(t.evict_idlest(Duration::ZERO));
        assert!(a.stop().is_cancelled());
        assert!(!t.evict_idlest(Duration::ZERO), "already evicted");
        t.remove(key);
    }
}
