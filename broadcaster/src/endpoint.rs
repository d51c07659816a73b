//! Endpoint strings: `tcp://HOST:PORT` for ZeroMQ sockets, `HOST:PORT` (or
//! `http://HOST:PORT`) for the admin server.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Why an endpoint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Not `tcp://HOST:PORT`.
    #[error("endpoint {0:?}: expected tcp://HOST:PORT (only TCP is supported)")]
    Syntax(String),
    /// Binding failed.
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// Endpoint as given.
        endpoint: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// `tcp://HOST:PORT` → `HOST:PORT`; `*` means every interface (`0.0.0.0`).
pub(crate) fn tcp_host_port(endpoint: &str) -> Result<String, EndpointError> {
    let rest = endpoint
        .strip_prefix("tcp://")
        .ok_or_else(|| EndpointError::Syntax(endpoint.to_owned()))?;
    host_port(rest).ok_or_else(|| EndpointError::Syntax(endpoint.to_owned()))
}

/// `HOST:PORT` or `http://HOST:PORT` → `HOST:PORT`.
pub(crate) fn http_host_port(addr: &str) -> Result<String, EndpointError> {
    let rest = addr.strip_prefix("http://").unwrap_or(addr);
    host_port(rest.trim_end_matches('/')).ok_or_else(|| EndpointError::Syntax(addr.to_owned()))
}

fn host_port(s: &str) -> Option<String> {
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = if host == "*" { "0.0.0.0" } else { host };
    (!host.is_empty()).then(|| format!("{host}:{port}"))
}

/// Binds a TCP listener on `host:port`.
pub(crate) async fn bind(
    endpoint: &str,
    host_port: &str,
) -> Result<(TcpListener, SocketAddr), EndpointError> {
    let err = |source| EndpointError::Bind {
        endpoint: endpoint.to_owned(),
        source,
    };
    let l = TcpListener::bind(host_port).await.map_err(err)?;
    let addr = l.local_addr().map_err(err)?;
    Ok((l, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(tcp_host_port("tcp://127.0.0.1:0").unwrap(), "127.0.0.1:0");
        assert_eq!(tcp_host_port("tcp://*:5557").unwrap(), "0.0.0.0:5557");
        assert!(tcp_host_port("ipc:///tmp/x").is_err());
        assert!(tcp_host_port("tcp://host").is_err());
        assert_eq!(
            http_host_port("http://127.0.0.1:80/").unwrap(),
            "127.0.0.1:80"
        );
        assert_eq!(http_host_port("localhost:1").unwrap(), "localhost:1");
    }
}
