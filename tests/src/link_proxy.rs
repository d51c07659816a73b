//! A TCP proxy for federation links whose upstream is set after it
//! listens (so rings can be wired before the broadcasters they lead to
//! exist) and which can cut the link: close every connection and refuse new
//! ones until restored. Until an upstream is set, connections are closed at
//! once (the link behind it reconnects with backoff).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::endpoints::Endpoints;

/// Where the proxy forwards to, and whether it is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    upstream: Option<SocketAddr>,
    cut: bool,
    /// Bumped by every cut: connections of an older generation end.
    generation: u64,
}

/// A running link proxy; stops when dropped.
pub struct LinkProxy {
    endpoint: String,
    route: watch::Sender<Route>,
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on `127.0.0.1:0`, with no upstream yet.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("tcp://{}", listener.local_addr()?);
        let (route, rx) = watch::channel(Route {
            upstream: None,
            cut: false,
            generation: 0,
        });
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let r = *rx.borrow();
                let (Some(up), false) = (r.upstream, r.cut) else {
                    drop(down);
                    continue;
                };
                let rx = rx.clone();
                tokio::spawn(async move {
                    let _ = relay(down, up, r.generation, rx).await;
                });
            }
        });
        Ok(Self {
            endpoint,
            route,
            accept,
        })
    }

    /// Where the link connects (`tcp://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Forwards to `upstream` (`tcp://host:port`) from now on.
    pub fn set_upstream(&self, upstream: &str) -> Result<()> {
        let addr: SocketAddr = Endpoints::tcp_addr(upstream)
            .parse()
            .context("upstream address")?;
        self.route.send_modify(|r| r.upstream = Some(addr));
        Ok(())
    }

    /// Cuts the link: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.route.send_modify(|r| {
            r.cut = true;
            r.generation += 1;
        });
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.route.send_modify(|r| r.cut = false);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.route.send_modify(|r| r.generation += 1);
    }
}

async fn relay(
    mut down: TcpStream,
    upstream: SocketAddr,
    generation: u64,
    mut route: watch::Receiver<Route>,
) -> Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    down.set_nodelay(true)?;
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
        _ = route.wait_for(|r| r.generation != generation) => {}
    }
    Ok(())
}
