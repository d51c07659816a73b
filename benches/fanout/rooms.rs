//! The fanout bench's "many rooms" mode (`FANFARE_FANOUT_ROOMS` > 0, issue 10
//! benchmark 2): connection k listens to room `k % rooms` only (Fanfare
//! topic `room.N`, a Socket.IO room `room.N`, the floor's `?room=N`), the
//! publishers send event j to room `j % rooms` with the per-room sequence
//! `j / rooms`. Also what that mode measures beyond the one-topic mode:
//! bytes the broadcaster (or redis) wrote, the broadcaster's egress
//! messages, each worker's intake against what its browsers wanted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

/// Most rooms accepted (the floor keeps one list per room).
pub const MAX_ROOMS: u64 = 1_000_000;
/// Loopback source addresses the clients are spread over (127.0.0.2 ..,
/// not the 127.0.0.1 everything else uses), each with its own ephemeral
/// port range, so > 28k connections to one server port fit.
pub const SOURCES: usize = 8;
/// How long one metrics request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest metrics page read.
const MAX_PAGE: u64 = 4 << 20;

/// The room of connection `k`.
pub fn room_of(k: usize, rooms: u64) -> u64 {
    k as u64 % rooms.max(1)
}

/// Events of room `room` when `sent` events went round-robin over `rooms`.
pub fn events_of_room(room: u64, sent: u64, rooms: u64) -> u64 {
    let rooms = rooms.max(1);
    sent / rooms + u64::from(room < sent % rooms)
}

/// Deliveries expected by `clients` connections (round-robin over rooms).
pub fn expected(clients: usize, rooms: u64, sent: u64) -> u64 {
    (0..clients)
        .map(|k| events_of_room(room_of(k, rooms), sent, rooms))
        .sum()
}

/// The source address of connection `k`.
pub fn source(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (k % SOURCES) as u8)
}

/// Raises this process's open-file limit (children inherit it) to at least
/// `want` (the soft limit up to the hard one, the hard one too when
/// privileged); returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let cur = current.unwrap_or(u64::MAX);
    if cur >= want {
        return cur;
    }
    let max = maximum.unwrap_or(u64::MAX);
    let target = Rlimit {
        current: Some(want),
        maximum: Some(max.max(want)),
    };
    if setrlimit(Resource::Nofile, target).is_ok() {
        return want;
    }
    let soft = Rlimit {
        current: Some(max),
        maximum: Some(max),
    };
    if setrlimit(Resource::Nofile, soft).is_ok() {
        return max;
    }
    cur
}

/// TCP payload bytes sent so far on the established connections whose local
/// port is `port` (`bytes_sent` of `ss -tin`, iproute2); None when `ss`
/// cannot be run.
pub fn sent_bytes(port: u16) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args(["-tinH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.split_whitespace()
            .filter_map(|w| w.strip_prefix("bytes_sent:")?.parse::<u64>().ok())
            .fold(0u64, u64::saturating_add),
    )
}

/// `GET path` over HTTP/1.0 on a fresh connection; the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut page = String::new();
    s.take(MAX_PAGE).read_to_string(&mut page)?;
    let body = page
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .context("no HTTP body")?;
    Ok(body)
}

/// The sum of every sample of `name` (any labels) in a Prometheus page.
pub fn metric_sum(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *found.get_or_insert(0.0) += v;
    }
    found
}

/// `fanfare_egress_messages_total` and `fanfare_subscribers` of the
/// broadcaster at `admin` (`http://HOST:PORT`).
pub fn broadcaster_egress(admin: &str) -> Result<(f64, f64)> {
    let addr: SocketAddr = admin
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("admin address {admin}"))?;
    let page = http_get(addr, "/metrics")?;
    let egress = metric_sum(&page, "fanfare_egress_messages_total")
        .context("no fanfare_egress_messages_total")?;
    Ok((
        egress,
        metric_sum(&page, "fanfare_subscribers").unwrap_or(f64::NAN),
    ))
}

/// `fanfare_hub_events_in_total` of every worker behind the shared port
/// (SO_REUSEPORT picks the worker per connection: asks until all `workers`
/// answered, at most 32 × workers requests), by worker id.
pub fn worker_events_in(port: u16, workers: usize) -> Result<BTreeMap<String, f64>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut seen = BTreeMap::new();
    for _ in 0..workers.saturating_mul(32).max(1) {
        if seen.len() >= workers {
            break;
        }
        let page = http_get(addr, "/metrics")?;
        for line in page.lines() {
            let Some(rest) = line.strip_prefix("fanfare_hub_events_in_total{") else {
                continue;
            };
            let Some(worker) = label(rest, "worker") else {
                continue;
            };
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse().ok()) {
                seen.insert(worker.to_owned(), v);
            }
        }
    }
    Ok(seen)
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let at = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = labels.get(at..)?;
    rest.get(..rest.find('"')?)
}

/// What a worker's browsers wanted of `sent` events: for each worker id,
/// the events of the rooms at least one of its connections is in.
pub fn wanted_by_worker(
    workers: &[Option<String>],
    rooms: u64,
    sent: u64,
) -> BTreeMap<String, u64> {
    let mut by_worker: BTreeMap<&str, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for (k, w) in workers.iter().enumerate() {
        if let Some(w) = w {
            by_worker
                .entry(w.as_str())
                .or_default()
                .insert(room_of(k, rooms));
        }
    }
    by_worker
        .into_iter()
        .map(|(w, rs)| {
            let n = rs.iter().map(|&r| events_of_room(r, sent, rooms)).sum();
            (w.to_owned(), n)
        })
        .collect()
}
