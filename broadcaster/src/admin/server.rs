//! The admin endpoint's HTTP/1 server: a bounded number of connections, each
//! under time bounds, so a flood of idle or slow HTTP clients can neither
//! exhaust descriptors nor keep `/healthz` from a well-behaved prober.
//!
//! * At most [`MAX_CONNECTIONS`] at once, counted until each one's socket is
//!   closed. A new connection past the cap evicts the oldest connection with
//!   no request in progress and waits (at most [`EVICT_WAIT`]) for it to
//!   close; when every one is busy, or the wait runs out, the new connection
//!   is closed at once.
//! * Request headers must arrive within [`HEADER_TIMEOUT`] (also the idle
//!   limit of a kept-alive connection: its next request's headers).
//! * A request is answered within [`REQUEST_TIMEOUT`] (else 503), and a
//!   connection lives at most [`CONNECTION_LIFETIME`] (a client that stops
//!   reading a response is cut then).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Admin connections open at once (within the open-file reserve,
/// `fd_limit::FD_RESERVE`).
pub(crate) const MAX_CONNECTIONS: usize = 48;

/// How long a new connection waits for an evicted one to close.
pub(crate) const EVICT_WAIT: Duration = Duration::from_millis(250);

/// Time to send a request's headers, from the connection's start or the
/// previous response.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Time to answer one request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest life of one admin connection.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

struct Slot {
    opened: Instant,
    /// Requests in progress.
    busy: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Slot {
    fn evictable(&self) -> bool {
        self.busy.load(Relaxed) == 0 && !self.stop.is_cancelled()
    }
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Slot>,
}

impl Table {
    fn has_room(&self) -> bool {
        self.open.len() < MAX_CONNECTIONS
    }

    /// At the cap: asks the oldest idle connection to close (it leaves the
    /// table when its socket is closed). False when none can be evicted.
    fn evict_oldest_idle(&mut self) -> bool {
        let oldest_idle = self
            .open
            .values()
            .filter(|s| s.evictable())
            .min_by_key(|s| s.opened);
        match oldest_idle {
            Some(slot) => {
                slot.stop.cancel();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`.
pub(crate) async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let table = Arc::new(Mutex::new(Table::default()));
    let closed = Arc::new(Notify::new());
    let tasks = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !admit(&table, &closed).await {
            tracing::debug!("admin connection refused: every slot is busy");
            continue; // dropping the stream closes it
        }
        let (id, busy, stop) = {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            t.next += 1;
            let id = t.next;
            let busy = Arc::new(AtomicUsize::new(0));
            let stop = shutdown.child_token();
            t.open.insert(
                id,
                Slot {
                    opened: Instant::now(),
                    busy: busy.clone(),
                    stop: stop.clone(),
                },
            );
            (id, busy, stop)
        };
        let (app, table, closed) = (app.clone(), table.clone(), closed.clone());
        tasks.spawn(async move {
            connection(stream, app, busy, stop).await;
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .open
                .remove(&id);
            closed.notify_waiters();
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// Room for one more connection: at the cap, evicts the oldest idle one and
/// waits for its socket to close.
async fn admit(table: &Mutex<Table>, closed: &Notify) -> bool {
    let deadline = tokio::time::Instant::now() + EVICT_WAIT;
    loop {
        let wake = closed.notified();
        let mut wake = std::pin::pin!(wake);
        // Registered before the check: a close right after it still wakes us.
        wake.as_mut().enable();
        {
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            if t.has_room() {
                return true;
            }
            let evicting = t.open.values().any(|s| s.stop.is_cancelled());
            if !evicting && !t.evict_oldest_idle() {
                return false;
            }
        }
        if tokio::time::timeout_at(deadline, wake).await.is_err() {
            return false;
        }
    }
}

/// Counts a request in progress for as long as it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Relaxed);
        Self(n.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn connection(
    stream: TcpStream,
    app: Router,
    busy: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let inner = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |req| {
        let _busy = Busy::new(&busy);
        let answer = inner.call(req);
        async move {
            let _busy = _busy;
            match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
                Ok(r) => r,
                Err(_) => Ok::<_, Infallible>(
                    (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
                ),
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "admin connection ended");
            }
        }
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(opened: Instant, busy: usize) -> Slot {
        Slot {
            opened,
            busy: Arc::new(AtomicUsize::new(busy)),
            stop: CancellationToken::new(),
        }
    }

    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let now = Instant::now();
        let mut t = Table::default();
        for i in 0..MAX_CONNECTIONS as u64 {
            // The oldest (0) is busy; 1 is the oldest idle one.
            t.open
                .insert(i, slot(now + Duration::from_millis(i), usize::from(i == 0)));
        }
        let evicted = t.open[&1].stop.clone();
        assert!(!t.has_room());
        assert!(t.evict_oldest_idle());
        assert!(evicted.is_cancelled());
        // Still counted until it closes; the next eviction picks another.
        assert!(!t.has_room());
        t.open.remove(&1);
        assert!(t.has_room());
        // All busy: none to evict.
        t.open.insert(999, slot(now, 1));
        for s in t.open.values() {
            s.busy.store(1, Relaxed);
        }
        assert!(!t.evict_oldest_idle());
    }
}
