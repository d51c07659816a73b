//! Sent messages waiting for their ack, and the flushes waiting on them.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;
use zeromq::ZmqMessage;

use crate::message::Confirmation;

/// One sent message, kept until a broadcaster acknowledges its publisher seq.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) seq: u64,
    pub(super) msg: ZmqMessage,
    pub(super) confirm: Option<oneshot::Sender<Confirmation>>,
    /// When it was last handed to a socket.
    pub(super) sent_at: Instant,
}

/// What an ack said.
#[derive(Debug, Clone)]
pub(super) struct AckFrom {
    pub(super) origin: Arc<str>,
    pub(super) epoch: u64,
    pub(super) publisher_seq: u64,
    pub(super) seq: u64,
}

/// Most recently acknowledged messages kept for a re-send after a failure.
pub(super) const RETAINED: usize = 1024;

/// The unacknowledged messages, oldest first (publisher seqs ascending),
/// the most recently acknowledged ones, and flushes waiting until
/// everything before them is acknowledged.
///
/// Why keep acknowledged messages: an ack means the broadcaster stamped the
/// message and queued it to its subscribers, not that they got it. A
/// broadcaster killed in between loses it for them. So after a failure the
/// messages acknowledged shortly before it ([`Unacked::requeue_recent`],
/// at most [`RETAINED`]) are sent again with the unacknowledged ones;
/// subscribers that already have them drop the copies by publisher seq.
#[derive(Debug, Default)]
pub(super) struct Unacked {
    sent: VecDeque<Sent>,
    /// `(seq, message, when its ack came)`, oldest first.
    retained: VecDeque<(u64, ZmqMessage, Instant)>,
    /// `(last seq assigned when the flush came, its answer)`.
    flushes: VecDeque<(u64, oneshot::Sender<()>)>,
    /// Highest publisher seq acknowledged.
    acked: u64,
    /// Last time an ack moved `acked` on (or the first message went out).
    progress: Option<Instant>,
}

impl Unacked {
    pub(super) fn len(&self) -> usize {
        self.sent.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub(super) fn push(&mut self, s: Sent) {
        if self.sent.is_empty() {
            self.progress = Some(s.sent_at);
        }
        self.sent.push_back(s);
    }

    /// Every unacknowledged message, oldest first, to be sent again.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Sent> {
        self.sent.iter_mut()
    }

    /// A flush after everything up to publisher seq `last`.
    pub(super) fn flush(&mut self, last: u64, answer: oneshot::Sender<()>) {
        if last <= self.acked {
            let _ = answer.send(());
        } else {
            self.flushes.push_back((last, answer));
        }
    }

    /// Applies an ack: confirms every message it covers.
    pub(super) fn ack(&mut self, a: &AckFrom, now: Instant) {
        if a.publisher_seq > self.acked {
            self.acked = a.publisher_seq;
            self.progress = Some(now);
        }
        while self.sent.front().is_some_and(|s| s.seq <= a.publisher_seq) {
            let Some(s) = self.sent.pop_front() else {
                break;
            };
            self.progress = Some(now);
            if self.retained.len() >= RETAINED {
                self.retained.pop_front();
            }
            self.retained.push_back((s.seq, s.msg, now));
            if let Some(c) = s.confirm {
                let _ = c.send(Confirmation {
                    publisher_seq: s.seq,
                    origin: a.origin.clone(),
                    epoch: a.epoch,
                    seq: (s.seq == a.publisher_seq).then_some(a.seq),
                });
            }
        }
        while self.flushes.front().is_some_and(|f| f.0 <= self.acked) {
            if let Some((_, answer)) = self.flushes.pop_front() {
                let _ = answer.send(());
            }
        }
    }

    /// True when the oldest message has waited longer than `limit` since it
    /// was sent and since the last ack progress.
    pub(super) fn overdue(&self, now: Instant, limit: std::time::Duration) -> bool {
        let Some(front) = self.sent.front() else {
            return false;
        };
        let since = self
            .progress
            .map_or(front.sent_at, |p| p.max(front.sent_at));
        now.saturating_duration_since(since) > limit
    }

    /// After a failure: the messages acknowledged at or after `since` go
    /// back in front of the unacknowledged ones, to be sent again.
    pub(super) fn requeue_recent(&mut self, since: Instant) {
        while let Some((seq, msg, at)) = self.retained.pop_back() {
            if at < since {
                break;
            }
            self.sent.push_front(Sent {
                seq,
                msg,
                confirm: None,
                sent_at: at,
            });
        }
        self.retained.clear();
    }

    /// Sent messages were handed to a new socket: the wait starts again.
    pub(super) fn restart_clock(&mut self, now: Instant) {
        self.progress = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sent(seq: u64, at: Instant) -> (Sent, oneshot::Receiver<Confirmation>) {
        let (tx, rx) = oneshot::channel();
        let s = Sent {
            seq,
            msg: ZmqMessage::from("t"),
            confirm: Some(tx),
            sent_at: at,
        };
        (s, rx)
    }

    #[test]
    fn an_ack_confirms_everything_up_to_it() {
        let t0 = Instant::now();
        let mut u = Unacked::default();
        let mut rx = Vec::new();
        for seq in 1..=3 {
            let (s, r) = sent(seq, t0);
            u.push(s);
            rx.push(r);
        }
        let (ftx, mut frx) = oneshot::channel();
        u.flush(3, ftx);
        assert!(!u.overdue(t0 + Duration::from_millis(5), Duration::from_millis(10)));
        assert!(u.overdue(t0 + Duration::from_millis(11), Duration::from_millis(10)));
        let a = AckFrom {
            origin: Arc::from("b1"),
            epoch: 7,
            publisher_seq: 2,
            seq: 40,
        };
        u.ack(&a, t0 + Duration::from_millis(11));
        assert_eq!(u.len(), 1);
        let c1 = rx[0].try_recv().unwrap();
        let c2 = rx[1].try_recv().unwrap();
        assert_eq!((c1.publisher_seq, c1.seq, c2.seq), (1, None, Some(40)));
        assert_eq!(&*c2.origin, "b1");
        assert!(rx[2].try_recv().is_err());
        assert!(frx.try_recv().is_err(), "flush waits for seq 3");
        assert!(!u.overdue(t0 + Duration::from_millis(15), Duration::from_millis(10)));
        u.ack(
            &AckFrom {
                publisher_seq: 5,
                ..a.clone()
            },
            t0 + Duration::from_millis(12),
        );
        assert!(u.is_empty());
        assert!(frx.try_recv().is_ok());
        // After a failure the ones acked since then are sent again, in order.
        u.requeue_recent(t0 + Duration::from_millis(5));
        let again: Vec<u64> = u.iter_mut().map(|s| s.seq).collect();
        assert_eq!(again, [1, 2, 3], "acked at +11 and +12 ms");
        u.ack(
            &AckFrom {
                publisher_seq: 3,
                ..a
            },
            t0,
        );
        assert!(u.is_empty(), "a new broadcaster's ack covers them");
    }
}
