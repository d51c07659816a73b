//! Opening many websockets to one port from one process.
//!
//! * The open-files limit is raised to its hard limit (children started
//!   afterwards — the demo and its worker — inherit it).
//! * Every (source address, destination) pair has only the kernel's
//!   ephemeral port range (`ip_local_port_range`, ~28 000 ports): the
//!   client sockets are bound to 127.0.0.2, 127.0.0.3, … in turn (SO_REUSEADDR: the ports of a
//!   previous run may still be in TIME_WAIT), a new
//!   source address every [`Dialer::per_source`] connections.
//! * The client side keeps small tungstenite buffers (4 KiB read buffer), so
//!   50 000 clients fit in the bench process.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::SinkExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client websocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Every connect step and every receive of a greeting waits at most this long.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the soft
/// limit now in force (`u64::MAX` = unlimited).
pub fn raise_nofile() -> Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).context("setrlimit(RLIMIT_NOFILE)")?;
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// Connects websockets to `127.0.0.1:port`, spreading source addresses.
#[derive(Clone)]
pub struct Dialer {
    port: u16,
    /// Connections per source address.
    pub per_source: usize,
}

impl Dialer {
    /// A dialer for `port`; the connections per source address are the
    /// ephemeral range less a margin of 2 000 (other sockets use it too).
    pub fn new(port: u16) -> Dialer {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut w = s.split_whitespace().map(|v| v.parse::<usize>().ok());
                Some(w.next()??.abs_diff(w.next()??) + 1)
            })
            .unwrap_or(28_000);
        Dialer {
            port,
            per_source: range.saturating_sub(2_000).max(1_000),
        }
    }

    /// The source address of connection `k`.
    pub fn source(&self, k: usize) -> Ipv4Addr {
        let s = (k / self.per_source).min(250);
        Ipv4Addr::new(127, 0, 0, 2 + s as u8)
    }

    /// Opens connection `k` on `path` and reads the hub's `welcome`.
    pub async fn open(&self, k: usize, path: &str) -> Result<Ws> {
        let socket = TcpSocket::new_v4()?;
        // The ports of earlier runs sit in TIME_WAIT for a minute.
        socket.set_reuseaddr(true)?;
        socket
            .bind(SocketAddr::from((self.source(k), 0)))
            .with_context(|| format!("bind to {}", self.source(k)))?;
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0);
        let mut ws = tokio::time::timeout(TIMEOUT, async {
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                .await
                .context("websocket handshake")?;
            anyhow::Ok(ws)
        })
        .await
        .context("websocket connect timed out")??;
        let welcome = next_text(&mut ws).await?;
        anyhow::ensure!(
            welcome.contains("\"op\":\"welcome\""),
            "expected welcome, got {welcome}"
        );
        Ok(ws)
    }
}

/// Sends `frame` and waits for the first frame whose `op` is `op` (an
/// `error` fails); returns it.
pub async fn request(ws: &mut Ws, frame: String, op: &str) -> Result<String> {
    ws.send(Message::text(frame)).await?;
    let want = format!("\"op\":\"{op}\"");
    loop {
        let f = next_text(ws).await?;
        if f.contains(&want) {
            return Ok(f);
        }
        if f.contains("\"op\":\"error\"") {
            bail!("refused: {f}");
        }
    }
}

/// The next text frame within [`TIMEOUT`].
pub async fn next_text(ws: &mut Ws) -> Result<String> {
    super::ws::next_text(ws, TIMEOUT).await
}
