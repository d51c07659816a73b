//! The supervisor: starts (or points at) the broadcaster(s) — one embedded,
//! `--broadcasters N` supervised child processes ([`crate::fleet`]), or
//! running ones given with `--broadcaster` — reserves the port,
//! starts N worker processes (this same binary, `worker` subcommand), prints
//! `ready http://HOST:PORT` once every worker accepts, and on SIGINT/SIGTERM
//! stops them all.
//!
//! Workers stop when their stdin closes: the supervisor holds the write end,
//! so they also stop if the supervisor dies.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpSocket;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::cli::{parse_broadcaster, DemoArgs, Target};

/// Runtime threads of each worker when `--threads` is not given: the
/// machine's cores shared out over the workers, at least one each. Workers
/// are separate processes, so two threads each on a 2-core machine with 4
/// workers means 8 runtime threads parking and waking on 2 cores. In the
/// fanout bench (benches/README.md) 1 thread each spent 25–45 % less worker
/// CPU per delivery than 2 at the same rates, 200 and 1000 clients.
fn default_worker_threads(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / workers.max(1)).max(1)
}

/// Runs the demo until SIGINT/SIGTERM; `threads` (if given) is passed on to
/// the workers.
pub async fn run(args: DemoArgs, threads: Option<usize>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut embedded = None;
    let mut fleet = None;
    let mut targets = args
        .broadcaster
        .iter()
        .map(|s| parse_broadcaster(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if targets.is_empty() && args.broadcasters >= 2 {
        let f = crate::fleet::Fleet::start(
            crate::fleet::FleetArgs {
                bin: broadcaster_bin(&args),
                count: args.broadcasters,
                topology: args.topology,
                history: args.history,
                heartbeat_ms: args.broadcaster_heartbeat_ms,
            },
            shutdown.child_token(),
        )
        .await
        .context("starting the broadcasters")?;
        targets = f
            .nodes
            .iter()
            .map(|n| Target {
                pull: n.endpoints.pull.clone(),
                publish: n.endpoints.publish.clone(),
                replay: n.endpoints.replay.clone(),
                admin: Some(n.endpoints.admin.clone()),
            })
            .collect();
        fleet = Some(f);
    }
    if targets.is_empty() {
        targets.push({
            let config = fanfare_broadcaster::Config {
                pull: "tcp://127.0.0.1:0".into(),
                publish: "tcp://127.0.0.1:0".into(),
                replay: "tcp://127.0.0.1:0".into(),
                admin: None,
                id: "b1".into(),
                history_count: args.history,
                ..Default::default()
            };
            let b = fanfare_broadcaster::start(config, shutdown.child_token())
                .await
                .context("starting the embedded broadcaster")?;
            let e = b.endpoints().clone();
            tracing::info!(pull = %e.pull, publish = %e.publish, replay = %e.replay, "embedded broadcaster up");
            embedded = Some(b);
            Target {
                pull: e.pull,
                publish: e.publish,
                replay: e.replay,
                admin: None,
            }
        });
    }

    // Reserve the port: bound with SO_REUSEPORT but never listening, so the
    // kernel hands connections to the workers only.
    let addr: std::net::SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .context("--host/--port")?;
    let reserve = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    reserve.set_reuseport(true)?;
    reserve.set_reuseaddr(true)?;
    reserve
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    let port = reserve.local_addr()?.port();

    let exe = std::env::current_exe().context("finding my own binary")?;
    let worker_threads = threads.unwrap_or_else(|| default_worker_threads(args.workers));
    let mut children = Vec::new();
    // Held apart: `Child::wait` closes a child's stdin, which stops it.
    let mut stdins = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<String>(args.workers.max(1));
    for i in 1..=args.workers {
        let id = format!("w{i}");
        // Every broadcaster, worker i's preferred one first.
        let first = (i - 1) % targets.len();
        let mine = targets[first..].iter().chain(&targets[..first]);
        let mut cmd = Command::new(&exe);
        cmd.arg(format!("--threads={worker_threads}"));
        cmd.arg("worker")
            .args([
                "--id",
                &id,
                "--host",
                &args.host,
                "--port",
                &port.to_string(),
            ])
            .args(mine.map(|t| format!("--broadcaster={}", t.to_arg())))
            .args((1..=args.workers).map(|j| format!("--trusted-publisher=w{j}")))
            .args(args.hub.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting worker {id}"))?;
        stdins.extend(child.stdin.take());
        if let Some(out) = child.stdout.take() {
            let tx = ready_tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("ready") {
                        let _ = tx.send(line).await;
                    } else {
                        println!("{line}");
                    }
                }
            });
        }
        children.push(child);
    }
    drop(ready_tx);

    let mut ready = 0;
    let all_ready = async {
        while ready < args.workers {
            match ready_rx.recv().await {
                Some(line) => {
                    tracing::info!("{line}");
                    ready += 1;
                }
                None => anyhow::bail!("a worker exited before it was ready"),
            }
        }
        Ok(())
    };
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(60), all_ready) => {
            r.context("workers not ready within 60 s")??;
        }
        _ = stop_signal() => {
            stop(children, stdins, shutdown, embedded).await;
            if let Some(f) = fleet {
                f.wait().await;
            }
            return Ok(());
        }
    }
    drop(reserve);
    println!("ready http://{}:{port}", args.host);

    let stats = match (&embedded, &fleet) {
        (Some(b), _) => tokio::spawn(crate::stats::broadcaster_stats(
            b.metrics(),
            targets[0].clone(),
            shutdown.child_token(),
        )),
        (None, Some(f)) => tokio::spawn(crate::stats::fleet_stats(
            f.nodes
                .iter()
                .map(|n| crate::stats::Watched::child(n.clone()))
                .collect(),
            targets.clone(),
            shutdown.child_token(),
        )),
        (None, None) => tokio::spawn(crate::stats::fleet_stats(
            targets
                .iter()
                .filter_map(|t| Some((t.admin.clone()?, t.publish.clone())))
                .map(|(a, p)| crate::stats::Watched::external(a, p))
                .collect(),
            targets.clone(),
            shutdown.child_token(),
        )),
    };
    tokio::select! {
        _ = stop_signal() => tracing::info!("stopping"),
        _ = watch_children(&mut children) => tracing::error!("a worker died; stopping the demo"),
    }
    shutdown.cancel();
    let _ = stats.await;
    stop(children, stdins, shutdown, embedded).await;
    if let Some(f) = fleet {
        f.wait().await;
    }
    Ok(())
}

/// `--broadcaster-bin`, else `broadcaster` next to this binary, else on PATH.
fn broadcaster_bin(args: &DemoArgs) -> std::path::PathBuf {
    if let Some(b) = &args.broadcaster_bin {
        return b.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("broadcaster")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "broadcaster".into())
}

async fn watch_children(children: &mut [Child]) {
    let waits = children.iter_mut().map(|c| Box::pin(c.wait()));
    let _ = futures::future::select_all(waits).await;
}

async fn stop(
    mut children: Vec<Child>,
    stdins: Vec<tokio::process::ChildStdin>,
    shutdown: CancellationToken,
    embedded: Option<fanfare_broadcaster::RunningBroadcaster>,
) {
    // Closing stdin asks each worker to stop gracefully.
    drop(stdins);
    for c in &mut children {
        if tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
    shutdown.cancel();
    if let Some(b) = embedded {
        if let Err(e) = b.wait().await {
            tracing::warn!(error = %e, "broadcaster shutdown");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
