//! Reading the broadcaster's own counters from its admin endpoint
//! (`GET /metrics`, Prometheus text), to set them beside what subscribers saw.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Bound on connecting, writing and reading the scrape.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A metrics page larger than this is refused.
const MAX_BODY: u64 = 1 << 20;

/// Fetches `<admin>/metrics` (`admin` like `http://127.0.0.1:P`) and sums each
/// metric's samples over its labels.
pub fn scrape(admin: &str) -> Result<HashMap<String, f64>> {
    let authority = admin
        .strip_prefix("http://")
        .with_context(|| format!("admin endpoint `{admin}` is not http://"))?;
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("resolve {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).context("connect to admin")?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .take(MAX_BODY)
        .read_to_string(&mut response)
        .context("read /metrics")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET /metrics: {}", head.lines().next().unwrap_or(""));
    }
    Ok(parse(body))
}

/// Sums `name{labels} value` samples per name; comments and bad lines are skipped.
fn parse(body: &str) -> HashMap<String, f64> {
    let mut metrics = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        *metrics.entry(name.to_owned()).or_insert(0.0) += value;
    }
    metrics
}
