//! Why a connection ends, and the one place that turns that into a close
//! code: [`close_cause`].
//!
//! Everything that ends a connection — the reader, the writer's queue, the
//! registry's dispatch, hub shutdown — reports an [`Ending`] to the
//! connection's [`ConnShared`]. [`close_cause`] decides from the ending's
//! kind (for socket errors, the websocket library's error type) which
//! [`CloseCause`] the browser is told, and the first cause wins.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::cancel_flag::WakeFlag;

use super::super::metrics::HubMetrics;

/// Why the hub closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Its outgoing queue was full (close code 4008).
    SlowConsumer,
    /// Nothing heard within the keepalive timeout (close code 4002).
    Idle,
    /// Too many bad frames (close code 1008).
    Abuse,
    /// A frame over the hard websocket limit (close code 1009).
    TooLarge,
    /// The hub is shutting down (close code 1001).
    Shutdown,
    /// The token sent in `auth` was refused (close code 4003).
    Unauthorized,
}

impl CloseCause {
    /// Every cause, for metrics.
    pub const ALL: [CloseCause; 6] = [
        CloseCause::SlowConsumer,
        CloseCause::Idle,
        CloseCause::Abuse,
        CloseCause::TooLarge,
        CloseCause::Shutdown,
        CloseCause::Unauthorized,
    ];

    /// Websocket close code and reason.
    pub fn close_frame(self) -> (u16, &'static str) {
        match self {
            CloseCause::SlowConsumer => (4008, "slow consumer"),
            CloseCause::Idle => (4002, "keepalive timeout"),
            CloseCause::Abuse => (1008, "too many bad frames"),
            CloseCause::TooLarge => (1009, "frame too large"),
            CloseCause::Shutdown => (1001, "server shutting down"),
            CloseCause::Unauthorized => (4003, "unauthorized"),
        }
    }

    /// The `cause` label of `fanfare_hub_closed_total`.
    pub fn label(self) -> &'static str {
        match self {
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::Idle => "keepalive_timeout",
            CloseCause::Abuse => "abuse",
            CloseCause::TooLarge => "too_large",
            CloseCause::Shutdown => "shutdown",
            CloseCause::Unauthorized => "unauthorized",
        }
    }
}

/// An error reading a browser's websocket, as the stream given to
/// [`Hub::serve_socket`](super::super::Hub::serve_socket) yields it. It keeps
/// the original error: the hub picks the close code from its type (a
/// `tungstenite::Error::Capacity` closes with 1009), never from its text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SocketError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl SocketError {
    /// Wraps a read error of any other websocket stream. A
    /// `tungstenite::Error::Capacity` closes with 1009, anything else ends
    /// the connection without a close code of the hub's.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

impl From<axum::Error> for SocketError {
    fn from(e: axum::Error) -> Self {
        // axum wraps the tungstenite error; unwrap it so its kind is visible.
        Self(e.into_inner())
    }
}

impl From<tungstenite::Error> for SocketError {
    fn from(e: tungstenite::Error) -> Self {
        Self(Box::new(e))
    }
}

impl From<Infallible> for SocketError {
    fn from(e: Infallible) -> Self {
        match e {}
    }
}

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub enum Ending {
    /// The hub shuts down.
    #[error("hub shutting down")]
    Shutdown,
    /// The connection's outgoing queue is full.
    #[error("outgoing queue full")]
    QueueFull,
    /// While it resumed, more live events arrived than its queue holds.
    #[error("live events held during a resume overflowed")]
    HoldFull,
    /// Nothing came from the browser within the idle timeout.
    #[error("nothing heard within the idle timeout")]
    Idle,
    /// The browser spent its error budget.
    #[error("too many bad frames")]
    TooManyErrors,
    /// The token sent in `auth` was refused.
    #[error("token refused")]
    Unauthorized,
    /// The browser closed, or its stream ended.
    #[error("closed by the browser")]
    PeerClosed,
    /// Reading the socket failed.
    #[error("websocket read failed: {0}")]
    Read(#[source] SocketError),
}

/// The close cause the browser is told for `ending`; `None` when the hub
/// has nothing to say (the browser left, or the socket broke: the writer
/// then sends a plain 1000 if it still can).
///
/// This is the only place that maps endings to close codes.
pub fn close_cause(ending: &Ending) -> Option<CloseCause> {
    match ending {
        Ending::Shutdown => Some(CloseCause::Shutdown),
        Ending::QueueFull | Ending::HoldFull => Some(CloseCause::SlowConsumer),
        Ending::Idle => Some(CloseCause::Idle),
        Ending::TooManyErrors => Some(CloseCause::Abuse),
        Ending::Unauthorized => Some(CloseCause::Unauthorized),
        Ending::PeerClosed => None,
        Ending::Read(SocketError(e)) => match e.downcast_ref::<tungstenite::Error>() {
            // Over `max_message_size` / `max_frame_size` (MessageTooLong),
            // or any other read-side capacity limit.
            Some(tungstenite::Error::Capacity(_)) => Some(CloseCause::TooLarge),
            _ => None,
        },
    }
}

/// What a connection's tasks share with the registry: the cancel token and
/// the close cause.
///
/// Every cancel goes through [`ConnShared::end`] or [`ConnShared::stop`],
/// which set `ended` before cancelling the token: [`ConnShared::is_ended`]
/// is one atomic load, where the token's own `is_cancelled` takes its lock
/// (measured: 2.6 % of a worker's CPU at 1000 clients, once per written batch).
/// The writer, which waits for the end once per batch, waits on that flag's
/// waker ([`ConnShared::poll_ended`]) rather than on the token, whose future
/// also takes two locks per poll.
#[derive(Debug, Default)]
pub struct ConnShared {
    /// Cancelled when the connection must end (private: see above).
    cancel: CancellationToken,
    /// Set, waking the writer (its one waiter), before the token is cancelled.
    ended: WakeFlag,
    cause: OnceLock<CloseCause>,
}

impl ConnShared {
    /// Ends the connection for `ending`. The first cause wins and is the one
    /// counted in `fanfare_hub_closed_total`.
    pub fn end(&self, ending: Ending, metrics: &HubMetrics) {
        if let Some(cause) = close_cause(&ending) {
            if self.cause.set(cause).is_ok() {
                metrics.closed(cause);
            }
        }
        self.stop();
    }

    /// Ends the connection with no cause of the hub's (the browser left or
    /// the socket broke, unless a cause was set already).
    pub fn stop(&self) {
        self.ended.set();
        self.cancel.cancel();
    }

    /// For the connection's writer alone (the waker has one slot): ready
    /// once the connection must end, else registers the writer to be woken
    /// then. No lock.
    pub fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.ended.poll_set(cx)
    }

    /// True once the connection must end (no lock).
    pub fn is_ended(&self) -> bool {
        self.ended.is_set()
    }

    /// Completes once the connection must end.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Why the hub ended it, if it did.
    pub fn cause(&self) -> Option<CloseCause> {
        self.cause.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_come_from_kinds() {
        use tungstenite::error::CapacityError;
        let too_long = tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 300_000,
            max_size: 262_144,
        });
        let read = |e: tungstenite::Error| Ending::Read(SocketError::from(axum::Error::new(e)));
        assert_eq!(close_cause(&read(too_long)), Some(CloseCause::TooLarge));
        assert_eq!(close_cause(&read(tungstenite::Error::AlreadyClosed)), None);
        let io = std::io::Error::other("too long: Space limit");
        assert_eq!(close_cause(&Ending::Read(SocketError::new(io))), None);
        assert_eq!(
            close_cause(&Ending::HoldFull),
            Some(CloseCause::SlowConsumer)
        );
    }

    #[test]
    fn the_first_cause_wins_and_is_counted_once() {
        let m = HubMetrics::new("w");
        let s = ConnShared::default();
        s.end(Ending::Idle, &m);
        s.end(Ending::QueueFull, &m);
        s.end(Ending::PeerClosed, &m);
        assert_eq!(s.cause(), Some(CloseCause::Idle));
        assert!(s.is_ended());
        assert!(s.cancel.is_cancelled());
        assert_eq!(m.closes(CloseCause::Idle), 1);
        assert_eq!(m.closes(CloseCause::SlowConsumer), 0);
    }

    #[tokio::test]
    async fn a_stop_ends_with_no_cause_and_wakes_the_waiters() {
        let s = std::sync::Arc::new(ConnShared::default());
        assert!(!s.is_ended());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.cancelled().await }
        });
        s.stop();
        assert!(s.is_ended());
        assert_eq!(s.cause(), None);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is woken")
            .expect("the waiter did not panic");
    }

    #[tokio::test]
    async fn a_stop_wakes_the_writer_waiting_in_poll_ended() {
        let s = std::sync::Arc::new(ConnShared::default());
        let writer = tokio::spawn({
            let s = s.clone();
            async move { std::future::poll_fn(|cx| s.poll_ended(cx)).await }
        });
        tokio::task::yield_now().await;
        assert!(!writer.is_finished(), "not ended yet");
        s.end(Ending::Idle, &HubMetrics::new("w"));
        tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer is woken")
            .expect("the writer did not panic");
    }
}
