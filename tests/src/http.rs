//! A tiny HTTP/1.0 GET over a tokio `TcpStream`, for `/metrics`, `/stats`
//! and `/healthz` of the admin endpoint.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response body read.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// Status and body of an HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

/// `GET path` from `addr` (`host:port`), with a timeout on the whole exchange.
pub async fn http_get(addr: &str, path: &str) -> Result<HttpResponse> {
    tokio::time::timeout(Duration::from_secs(10), get(addr, path))
        .await
        .with_context(|| format!("GET {path} from {addr} timed out"))?
}

async fn get(addr: &str, path: &str) -> Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("HTTP response has no header end")?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}

/// `GET path`, requiring status 200; returns the body.
pub async fn http_get_ok(addr: &str, path: &str) -> Result<String> {
    let r = http_get(addr, path).await?;
    if r.status != 200 {
        bail!("GET {path}: status {} body {:?}", r.status, r.body);
    }
    Ok(r.body)
}
