//! One web worker: fanfare-client + the hub + the dashboards, listening with
//! SO_REUSEPORT on the port the supervisor chose. Prints `ready worker=ID
//! pid=PID` once it accepts; stops on SIGINT/SIGTERM or when stdin closes.

use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::Router;
use fanfare_client::hub::{Hub, HubOptions, METRICS_CONTENT_TYPE};
use fanfare_client::{Client, ClientOptions};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

use crate::cli::WorkerArgs;

/// Serves until told to stop.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let targets = args
        .broadcaster
        .iter()
        .map(|s| crate::cli::parse_broadcaster(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every broadcaster: subscribed through all (duplicates dropped by
    // stamp), published through the first healthy one.
    let opts = ClientOptions::with_broadcasters(
        targets
            .iter()
            .map(|t| (t.pull.clone(), t.publish.clone(), t.replay.clone())),
    )
    .publisher_id(&args.id)
    .heartbeat_timeout(Duration::from_millis(args.heartbeat_timeout_ms))
    .ack_timeout(Duration::from_millis(args.heartbeat_timeout_ms))
    .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2));
    let client = Client::connect(opts)
        .await
        .context("connecting to the broadcaster")?;

    let h = &args.hub;
    let burst = (h.publish_rate * 2.0).clamp(1.0, 10_000.0) as u32;
    let mut hub_opts = HubOptions::new(&args.id)
        .queue_capacity(h.ws_queue)
        .ring(h.ring, 64 * 1024 * 1024)
        .max_frame(h.max_frame, h.max_frame.saturating_mul(4))
        .publish_rate(h.publish_rate, burst);
    if !args.trusted_publishers.is_empty() {
        hub_opts = hub_opts.trusted_publishers(args.trusted_publishers.clone());
    }
    if !h.allowed_origins.is_empty() {
        hub_opts = hub_opts.allowed_origins(h.allowed_origins.clone());
    }
    if let Some(token) = &h.auth_token {
        hub_opts = hub_opts.authorizer(crate::auth::SharedToken::new(token));
    }
    hub_opts = hub_opts
        .auth_in_first_frame(h.auth_in_first_frame)
        .auth_timeout(Duration::from_millis(h.auth_timeout_ms));
    let hub = Hub::new(client.clone(), hub_opts);

    let metrics_hub = hub.clone();
    let info = serde_json::json!({
        "worker": args.id,
        "pid": std::process::id(),
        "broadcasters": targets.iter().map(|t| t.publish.clone()).collect::<Vec<_>>(),
    })
    .to_string();
    let app = Router::new()
        .merge(crate::assets::router())
        .merge(hub.router())
        .route(
            "/metrics",
            get(move || async move {
                let content_type = (axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE);
                ([content_type], metrics_hub.render_metrics())
            }),
        )
        .route("/api/info", get(move || async move { info }));

    let addr: std::net::SocketAddr = format!("{}:{}", args.host, args.port).parse()?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A bounded kernel send buffer per connection (accepted sockets inherit
    // it): a browser that stops reading fills it quickly, so its hub queue
    // fills and it is cut (4008) within seconds, and what the kernel still
    // holds for it after the close is at most this much.
    socket.set_send_buffer_size(h.ws_send_buffer)?;
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    // Small frames must not wait for Nagle's algorithm (and the peer's
    // delayed ACK): that alone adds up to 40 ms to an event.
    let listener = socket.listen(1024)?.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    println!("ready worker={} pid={}", args.id, std::process::id());

    let stats = tokio::spawn(crate::stats::worker_stats(
        client.clone(),
        hub.clone(),
        targets.iter().map(|t| t.publish.clone()).collect(),
        shutdown.child_token(),
    ));
    let stop = {
        let (hub, shutdown) = (hub.clone(), shutdown.clone());
        async move {
            let reason = tokio::select! {
                _ = crate::supervisor::stop_signal() => "signal",
                _ = stdin_closed() => "supervisor gone (stdin closed)",
            };
            tracing::info!(worker = %hub.worker_id(), reason, "stopping");
            shutdown.cancel();
            hub.shutdown();
        }
    };
    let serve = axum::serve(listener, app).with_graceful_shutdown(stop);
    let drained = shutdown.clone();
    tokio::select! {
        r = serve => r?,
        _ = async { drained.cancelled().await; tokio::time::sleep(Duration::from_secs(5)).await } => {
            tracing::warn!("connections still open after 5 s; leaving");
        }
    }
    // Upgraded websockets outlive `serve`: give their writers a moment to
    // send the 1001 close frames the hub queued.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while hub.connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stats.await;
    client.close().await;
    Ok(())
}

/// Resolves when stdin reaches end of file (the supervisor closed it or died).
pub async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
