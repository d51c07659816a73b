//! Accept loop shared by the three ZMTP sockets: connection limit, handshake
//! with a deadline, then the socket's own connection handler.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::zmtp::{handshake, FrameReader, ReadError, SocketKind};

/// A peer must finish greeting and READY within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A handshaken connection handed to a socket's handler.
pub(crate) struct Conn {
    /// Frame reader on the read half (limit already set).
    pub(crate) reader: FrameReader<OwnedReadHalf>,
    /// Write half.
    pub(crate) writer: OwnedWriteHalf,
    /// Peer address.
    pub(crate) peer: SocketAddr,
}

/// One listening socket and what its connections share.
pub(crate) struct Acceptor {
    /// Bound listener.
    pub(crate) listener: TcpListener,
    /// Which socket this is.
    pub(crate) kind: SocketKind,
    /// Frame size limit after the handshake.
    pub(crate) max_frame: usize,
    /// Most simultaneous connections.
    pub(crate) max_connections: usize,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Stops accepting.
    pub(crate) shutdown: CancellationToken,
    /// Connection tasks run here.
    pub(crate) tracker: TaskTracker,
}

/// Accepts until `shutdown`; each connection runs `handler` in `tracker`.
/// `handler` returns how the connection ended; read errors are counted.
pub(crate) async fn accept_loop<H, F>(a: Acceptor, handler: H)
where
    H: Fn(Conn) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), ReadError>> + Send + 'static,
{
    let Acceptor {
        listener,
        kind,
        max_frame,
        max_connections,
        metrics,
        shutdown,
        tracker,
    } = a;
    let limit = Arc::new(Semaphore::new(max_connections));
    let handler = Arc::new(handler);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(socket = kind.label(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let counters = metrics.socket(kind);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            counters.refused.inc();
            if metrics.log_allowed(crate::metrics::LogKind::Connection) {
                tracing::warn!(socket = kind.label(), %peer, "connection limit reached; refusing");
            }
            continue;
        };
        counters.accepted.inc();
        let (metrics, handler) = (metrics.clone(), handler.clone());
        tracker.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let (r, mut writer) = stream.into_split();
            let mut reader = FrameReader::new(r, max_frame);
            let shake = handshake(&mut reader, &mut writer, kind, max_frame);
            let counters = metrics.socket(kind);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, shake).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    counters.handshake_failed.inc();
                    if matches!(e, crate::zmtp::HandshakeError::Read(ReadError::Oversize { .. })) {
                        counters.oversize_frame.inc();
                    }
                    tracing::debug!(socket = kind.label(), %peer, error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    counters.handshake_failed.inc();
                    tracing::debug!(socket = kind.label(), %peer, "handshake timed out");
                    return;
                }
            }
            counters.open.inc();
            let result = handler(Conn { reader, writer, peer }).await;
            counters.open.dec();
            match result {
                Ok(()) => tracing::debug!(socket = kind.label(), %peer, "peer left"),
                Err(ReadError::Io(e)) => tracing::debug!(socket = kind.label(), %peer, error = %e, "peer connection failed"),
                Err(e) => {
                    let c = if matches!(e, ReadError::Oversize { .. }) { &counters.oversize_frame } else { &counters.protocol_error };
                    c.inc();
                    if metrics.log_allowed(crate::metrics::LogKind::Connection) {
                        tracing::warn!(socket = kind.label(), %peer, error = %e, "peer disconnected");
                    }
                }
            }
        });
    }
}
