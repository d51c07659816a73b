//! `idle`: RSS per idle websocket on one worker. For each N: a fresh server,
//! N connections opened (at most `parallel` at a time), each subscribed to
//! one pattern (`idle.r<k mod 1000>`, literal topics: 1 000 distinct
//! patterns), then left idle; the worker's VmRSS is read before, at N/2 and
//! at N (each time once its `/metrics` counts the connections open).

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio::task::JoinSet;

use super::dial::{request, Dialer};
use super::server::{fds, rss_kib, Bins, Server};

/// What one N measured.
pub struct IdleResult {
    /// Connections.
    pub n: usize,
    /// Worker VmRSS before, at N/2 and at N, KiB.
    pub rss: [u64; 3],
    /// Worker open fds at N.
    pub fds: usize,
    /// Seconds the ramp took.
    pub ramp_s: f64,
}

impl IdleResult {
    /// (RSS at N − before) / N, KiB.
    pub fn per_conn(&self) -> f64 {
        self.rss[2].saturating_sub(self.rss[0]) as f64 / self.n as f64
    }

    /// (RSS at N − RSS at N/2) / (N − N/2), KiB: the marginal cost, without
    /// what the first connections allocate once (tables, thread caches).
    pub fn marginal(&self) -> f64 {
        let half = self.n / 2;
        self.rss[2].saturating_sub(self.rss[1]) as f64 / (self.n - half).max(1) as f64
    }
}

/// Opens connections `from..to` into `held` (each task keeps its socket and
/// reads until it closes, so pings are answered).
async fn open_range(
    dialer: &Dialer,
    from: usize,
    to: usize,
    parallel: usize,
    held: &mut JoinSet<()>,
) -> Result<()> {
    let mut opening = JoinSet::new();
    let mut next = from;
    while next < to || !opening.is_empty() {
        while next < to && opening.len() < parallel.max(1) {
            let (d, k) = (dialer.clone(), next);
            opening.spawn(async move {
                let mut ws = d.open(k, "/ws").await?;
                let sub = format!(r#"{{"op":"subscribe","topics":["idle.r{}"]}}"#, k % 1000);
                request(&mut ws, sub, "subscribed").await?;
                anyhow::Ok(ws)
            });
            next += 1;
        }
        let Some(done) = opening.join_next().await else {
            break;
        };
        let mut ws = done.context("connect task")??;
        held.spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    }
    Ok(())
}

/// Measures N idle websockets on a fresh server.
pub async fn measure(
    bins: &Bins,
    worker_env: &[(String, String)],
    demo_args: &[String],
    n: usize,
    parallel: usize,
) -> Result<IdleResult> {
    let server = Server::start(bins, worker_env, demo_args).await?;
    let dialer = Dialer::new(server.port);
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    let ramp = Duration::from_secs(120 + n as u64 / 100);
    settle().await;
    let before = rss_kib(server.worker_pid)?;
    let started = std::time::Instant::now();
    let mut held = JoinSet::new();
    let half = n / 2;
    open_range(&dialer, 0, half, parallel, &mut held).await?;
    server.wait_open(half as u64, ramp).await?;
    settle().await;
    let mid = rss_kib(server.worker_pid)?;
    open_range(&dialer, half, n, parallel, &mut held).await?;
    server.wait_open(n as u64, ramp).await?;
    let ramp_s = started.elapsed().as_secs_f64();
    settle().await;
    let end = rss_kib(server.worker_pid)?;
    let open_fds = fds(server.worker_pid)?;
    // Every connection must still be there (none closed during the reading).
    server.wait_open(n as u64, Duration::from_secs(5)).await?;
    held.abort_all();
    while held.join_next().await.is_some() {}
    drop(server);
    Ok(IdleResult {
        n,
        rss: [before, mid, end],
        fds: open_fds,
        ramp_s,
    })
}
