//! A pausable TCP proxy: put it between a subscriber and the broadcaster's
//! PUB to stall that one subscriber's network deterministically. While
//! paused it stops reading from the broadcaster, so the broadcaster's queue
//! toward that subscriber fills and it drops (and counts) what does not
//! fit — exactly what a slow or stalled consumer looks like from the PUB.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::endpoints::Endpoints;

/// Receive buffer asked for on the proxy's upstream side, so that a pause
/// backs up into the broadcaster quickly.
const UPSTREAM_RCVBUF: u32 = 4096;

/// A running proxy; stops when dropped.
pub struct PausableProxy {
    endpoint: String,
    paused: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl PausableProxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`
    /// (`tcp://host:port`).
    pub async fn start(upstream: &str) -> Result<Self> {
        let upstream: std::net::SocketAddr = Endpoints::tcp_addr(upstream)
            .parse()
            .context("upstream address")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("tcp://{}", listener.local_addr()?);
        let (paused, watch_rx) = watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let rx = watch_rx.clone();
                tokio::spawn(async move {
                    let _ = relay(down, upstream, rx).await;
                });
            }
        });
        Ok(Self {
            endpoint,
            paused,
            accept,
        })
    }

    /// Where subscribers connect instead of the broadcaster.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops forwarding broadcaster → subscriber (subscriber → broadcaster
    /// keeps flowing).
    pub fn pause(&self) {
        let _ = self.paused.send(true);
    }

    /// Forwards again.
    pub fn resume(&self) {
        let _ = self.paused.send(false);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    down: TcpStream,
    upstream: std::net::SocketAddr,
    mut paused: watch::Receiver<bool>,
) -> Result<()> {
    let sock = TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(UPSTREAM_RCVBUF)?;
    let up = tokio::time::timeout(Duration::from_secs(10), sock.connect(upstream)).await??;
    up.set_nodelay(true)?;
    down.set_nodelay(true)?;
    let (mut up_r, mut up_w) = up.into_split();
    let (mut down_r, mut down_w) = down.into_split();
    let to_upstream = async {
        let _ = tokio::io::copy(&mut down_r, &mut up_w).await;
        let _ = up_w.shutdown().await;
    };
    let to_subscriber = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Wait while paused; the watch closing means the proxy is gone.
            if paused.wait_for(|p| !*p).await.is_err() {
                break;
            }
            match up_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if down_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = down_w.shutdown().await;
    };
    tokio::select! {
        () = to_upstream => {}
        () = to_subscriber => {}
    }
    Ok(())
}
