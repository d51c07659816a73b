//! The broadcaster's readiness line and the endpoints it announces.

use anyhow::{bail, Context, Result};

/// Prefix of the one readiness line the broadcaster prints on stdout.
pub const READY_PREFIX: &str = "ready ";

/// The real bound endpoints of a running broadcaster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Ingress PULL, `tcp://127.0.0.1:P`.
    pub pull: String,
    /// Egress PUB, `tcp://127.0.0.1:P`.
    pub publish: String,
    /// Replay ROUTER, `tcp://127.0.0.1:P`.
    pub replay: String,
    /// Admin HTTP, `http://127.0.0.1:P`; `None` when started with `--admin off`.
    pub admin: Option<String>,
}

impl Endpoints {
    /// Parses `ready pull=… pub=… replay=… [admin=…]`.
    pub fn parse_ready(line: &str) -> Result<Self> {
        let rest = line
            .trim()
            .strip_prefix(READY_PREFIX)
            .with_context(|| format!("not a readiness line: {line:?}"))?;
        let (mut pull, mut publish, mut replay, mut admin) = (None, None, None, None);
        for field in rest.split_whitespace() {
            let (k, v) = field
                .split_once('=')
                .with_context(|| format!("bad field {field:?} in {line:?}"))?;
            let slot = match k {
                "pull" => &mut pull,
                "pub" => &mut publish,
                "replay" => &mut replay,
                "admin" => &mut admin,
                _ => continue,
            };
            *slot = Some(v.to_owned());
        }
        let e = Self {
            pull: pull.context("no pull= in readiness line")?,
            publish: publish.context("no pub= in readiness line")?,
            replay: replay.context("no replay= in readiness line")?,
            admin,
        };
        e.ports()?;
        e.admin_port()?;
        Ok(e)
    }

    /// `http://host:port` of the admin endpoint; an error when it is off.
    pub fn admin_url(&self) -> Result<&str> {
        self.admin.as_deref().context("the admin endpoint is off")
    }

    /// `host:port` of the admin endpoint, for a TCP connection; an error
    /// when it is off.
    pub fn admin_addr(&self) -> Result<&str> {
        let url = self.admin_url()?;
        Ok(url
            .strip_prefix("http://")
            .unwrap_or(url)
            .trim_end_matches('/'))
    }

    /// `host:port` of a `tcp://host:port` endpoint.
    pub fn tcp_addr(endpoint: &str) -> &str {
        endpoint.strip_prefix("tcp://").unwrap_or(endpoint)
    }

    /// The three ZeroMQ ports: pull, pub, replay.
    pub fn ports(&self) -> Result<[u16; 3]> {
        Ok([
            port_of(&self.pull)?,
            port_of(&self.publish)?,
            port_of(&self.replay)?,
        ])
    }

    /// The admin port, `None` when the admin endpoint is off.
    pub fn admin_port(&self) -> Result<Option<u16>> {
        self.admin.as_deref().map(port_of).transpose()
    }
}

/// The port of `scheme://host:port` (or `host:port`).
pub fn port_of(endpoint: &str) -> Result<u16> {
    let port = endpoint
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .context("endpoint has no port")?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in {endpoint:?}"))?;
    if port == 0 {
        bail!("endpoint {endpoint:?} still says port 0");
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line() {
        let e = Endpoints::parse_ready(
            "ready pull=tcp://127.0.0.1:1 pub=tcp://127.0.0.1:2 replay=tcp://127.0.0.1:3 admin=http://127.0.0.1:4\n",
        )
        .unwrap();
        assert_eq!(e.ports().unwrap(), [1, 2, 3]);
        assert_eq!(e.admin_port().unwrap(), Some(4));
        assert_eq!(e.admin_addr().unwrap(), "127.0.0.1:4");
        assert_eq!(Endpoints::tcp_addr(&e.pull), "127.0.0.1:1");
        assert!(Endpoints::parse_ready("ready pull=tcp://127.0.0.1:0").is_err());
        assert!(Endpoints::parse_ready("hello").is_err());
        let off = Endpoints::parse_ready(
            "ready pull=tcp://127.0.0.1:1 pub=tcp://127.0.0.1:2 replay=tcp://127.0.0.1:3",
        )
        .unwrap();
        assert_eq!(off.admin_port().unwrap(), None);
        assert!(off.admin_addr().is_err());
    }
}
