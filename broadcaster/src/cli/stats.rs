//! `broadcaster stats`: a human-readable view of a broadcaster's `/stats`.

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;

/// Arguments of `stats`.
#[derive(Debug, Args)]
pub(super) struct StatsArgs {
    /// Broadcaster admin address.
    #[arg(long, env = "FANFARE_ADMIN", default_value = super::DEFAULT_ADMIN)]
    admin: String,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `stats`.
pub(super) async fn run(a: StatsArgs) -> anyhow::Result<()> {
    let v = fetch_json(&a.admin, "/stats").await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v));
    }
    Ok(())
}

/// GETs `path` from an admin address and parses the body as JSON.
pub(super) async fn fetch_json(admin: &str, path: &str) -> anyhow::Result<Value> {
    let host_port = crate::endpoint::http_host_port(admin)?;
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(&host_port),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no admin server at {admin} after 5 s"))??;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host_port)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "GET {path}: {}", resp.status());
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// Formats `/stats` for people.
fn render(v: &Value) -> String {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let mut s = String::new();
    let id = v.get("id").and_then(Value::as_str).unwrap_or("?");
    s += &format!(
        "broadcaster {id}  epoch {}  up {} s\n",
        n("/epoch"),
        n("/uptime_secs")
    );
    s += &format!("  last seq        {}\n", n("/last_seq"));
    s += &format!(
        "  ingress         {} messages, {} bytes\n",
        n("/ingress/messages"),
        n("/ingress/bytes")
    );
    if let Some(Value::Object(r)) = v.pointer("/ingress/rejected") {
        let parts: Vec<String> = r.iter().map(|(k, c)| format!("{k}={c}")).collect();
        s += &format!("  rejected        {}\n", parts.join(" "));
    }
    s += &format!(
        "  egress          {} subscribers, {} queued, {} dropped (repairable), {} heartbeats\n",
        n("/egress/subscribers"),
        n("/egress/messages"),
        n("/egress/dropped"),
        n("/egress/heartbeats")
    );
    s += &format!(
        "  history         {} messages, {} bytes, oldest seq {}, {} evicted\n",
        n("/history/messages"),
        n("/history/bytes"),
        n("/history/oldest"),
        n("/history/evicted")
    );
    s += &format!(
        "  replay          {} requests, {} bad, {} messages\n",
        n("/replay/requests"),
        n("/replay/bad_requests"),
        n("/replay/messages")
    );
    if let Some(Value::Object(socks)) = v.get("sockets") {
        for (name, c) in socks {
            let g = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
            s += &format!(
                "  socket {name:<8} {} open, {} accepted, {} refused, {} bad handshakes, {} oversize, {} protocol errors\n",
                g("open"), g("accepted"), g("refused"), g("handshake_failed"), g("oversize_frame"), g("protocol_error")
            );
        }
    }
    s
}
