//! Rate limits for noisy warnings: a flood of bad input is logged at most
//! once a second per kind, so one kind never hides another.

use std::sync::Mutex;
use std::time::Instant;

/// What a rate-limited warning is about; each kind has its own gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogKind {
    /// Ingress messages dropped as invalid.
    Reject,
    /// Peers disconnected for protocol errors, connection limit reached.
    Connection,
    /// Malformed replay requests.
    Replay,
    /// Subscription limits.
    Subscription,
    /// Federation: bad link input, hop-limit drops, repairs given up.
    Federation,
}

/// When each kind last logged.
#[derive(Debug, Default)]
pub(super) struct LogGates([Mutex<Option<Instant>>; 5]);

impl LogGates {
    /// True at most once per second per kind.
    pub(super) fn allowed(&self, kind: LogKind) -> bool {
        let Ok(mut last) = self.0[kind as usize].lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t).as_secs() < 1) {
            return false;
        }
        *last = Some(now);
        true
    }
}
