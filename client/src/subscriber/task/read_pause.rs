//! When the SUB sockets are not read: while the tracker's parking bound is
//! full and a repair is being answered.
//!
//! In that state every message read on a lane under repair is decoded,
//! dropped by the tracker and fetched again from history as the lane's
//! tail; under sustained overload the tail's repair lets the next one pile
//! up, and the client fetched 1.9–9.7× what the PUB had dropped (forwarding
//! bench, 2 000 000 messages, 1–4 subscribers; 1.00× with the pause,
//! benches/results/2026-12-03c). Not reading moves the drop to
//! the broadcaster, where it costs this client nothing: the session marker
//! and the lanes' seq jumps after the pause ask for exactly what was
//! dropped, once.
//!
//! The pause costs the other lanes their live delivery while it lasts, so it
//! holds only while the repair makes progress: a pause ends when no repair
//! round has been answered for [`PROGRESS`] (a slow or failing replay
//! endpoint), and the task then reads and drops as before. While paused the
//! task cannot hear heartbeats, so it does not count silence either.
//!
//! The rule is checked before each message of a batch (`live.rs`), not once
//! per wake-up: with a 64-message bound and live traffic during a long
//! repair (test `live_traffic_during_a_long_repair_is_fetched_once`), a
//! check per wake-up still fetched 1.12–1.18× what the PUB dropped, because
//! each time the bound filled the rest of the batch (up to 256) was read
//! and dropped; per message, 1.00×.

use std::time::Duration;

use tokio::time::Instant;

use super::State;

/// Longest a pause lasts without a repair round answered.
pub(super) const PROGRESS: Duration = Duration::from_secs(1);

/// The pause rule's state.
#[derive(Debug, Default)]
pub(crate) struct ReadPause {
    /// Set while the pause's conditions hold: when it started or a round
    /// was last answered, whichever is later.
    progress_at: Option<Instant>,
}

impl ReadPause {
    /// Whether to leave the sockets unread now. `full`: the parking bound
    /// is reached; `repairing`: a repair round is in flight.
    pub(super) fn paused(&mut self, full: bool, repairing: bool) -> bool {
        if !(full && repairing) {
            self.progress_at = None;
            return false;
        }
        if self.progress_at.is_none() {
            tracing::debug!("parking bound full while repairing: SUB reads paused");
            self.progress_at = Some(Instant::now());
        }
        self.active()
    }

    /// A repair round was answered.
    pub(super) fn progress(&mut self) {
        if let Some(at) = self.progress_at.as_mut() {
            *at = Instant::now();
        }
    }

    /// When the current pause ends unless a round is answered first.
    pub(super) fn ends_at(&self) -> Option<Instant> {
        self.progress_at.map(|at| at + PROGRESS)
    }

    /// True while a pause holds (conditions met, progress recent).
    pub(super) fn active(&self) -> bool {
        self.ends_at().is_some_and(|end| Instant::now() < end)
    }
}

impl State {
    /// Whether the SUBs are left unread now: the parking bound is full and
    /// a repair round is in flight (the loop asks before each wake-up,
    /// `live.rs` before each buffered message).
    pub(super) fn reads_paused(&mut self) -> bool {
        let repairing = !self.rounds.is_empty();
        self.read_pause
            .paused(self.tracker.parking_full(), repairing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_only_while_full_and_repairing() {
        let mut p = ReadPause::default();
        assert!(!p.paused(false, true));
        assert!(!p.paused(true, false));
        assert!(!p.active());
        assert!(p.paused(true, true));
        assert!(p.active());
        // The bound is no longer full: reading resumes at once.
        assert!(!p.paused(false, true));
        assert!(!p.active());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_without_progress_ends_and_progress_renews_it() {
        let mut p = ReadPause::default();
        assert!(p.paused(true, true));
        tokio::time::advance(PROGRESS / 2).await;
        p.progress();
        tokio::time::advance(PROGRESS / 2 + Duration::from_millis(100)).await;
        // Answered half a PROGRESS ago: still paused.
        assert!(p.paused(true, true));
        tokio::time::advance(PROGRESS).await;
        // Nothing answered for PROGRESS: read (and drop) again.
        assert!(!p.paused(true, true));
        assert!(!p.active());
        // A late answer pauses again.
        p.progress();
        assert!(p.paused(true, true));
    }
}
