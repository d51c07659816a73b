//! A raw TCP peer that speaks just enough ZMTP 3.0 (NULL mechanism) to
//! reach a socket's framing layer, and then misbehaves on purpose: huge
//! frame headers, malformed messages, garbage instead of a greeting.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::endpoints::Endpoints;

/// Frame flag: more frames follow.
pub const FLAG_MORE: u8 = 0x01;
/// Frame flag: 8-byte length follows instead of 1 byte.
pub const FLAG_LONG: u8 = 0x02;
/// Frame flag: this is a command.
pub const FLAG_COMMAND: u8 = 0x04;
/// One tebibyte, the announced size of the hostile frame.
pub const ONE_TIB: u64 = 1 << 40;
/// Longest frame body this peer accepts to read.
const MAX_READ_FRAME: u64 = 1 << 20;

/// A ZMTP 3.0 greeting with the NULL mechanism, as a client.
pub fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[8] = 0x01;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// A frame header: flags and a short (1-byte) or long (8-byte) size.
pub fn frame_header(flags: u8, len: u64) -> Vec<u8> {
    if len <= 255 && flags & FLAG_LONG == 0 {
        vec![flags, len as u8]
    } else {
        let mut h = vec![flags | FLAG_LONG];
        h.extend_from_slice(&len.to_be_bytes());
        h
    }
}

/// A whole frame.
pub fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = frame_header(flags, body.len() as u64);
    f.extend_from_slice(body);
    f
}

/// The NULL mechanism's READY command announcing `socket_type`.
pub fn ready_command(socket_type: &str) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    frame(FLAG_COMMAND, &body)
}

/// A multipart message as ZMTP frames.
pub fn multipart(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let more = if i + 1 < frames.len() { FLAG_MORE } else { 0 };
        out.extend(frame(more, f));
    }
    out
}

/// A raw TCP connection to a ZMTP socket.
pub struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    /// Connects to `tcp://host:port` (or `host:port`).
    pub async fn connect(endpoint: &str) -> Result<Self> {
        let addr = Endpoints::tcp_addr(endpoint);
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    /// Connects from the local address `source` (e.g. another loopback
    /// address, `127.0.0.2`: a different peer address on the same host).
    pub async fn connect_from(endpoint: &str, source: std::net::IpAddr) -> Result<Self> {
        let addr: std::net::SocketAddr = Endpoints::tcp_addr(endpoint)
            .parse()
            .with_context(|| format!("not an address: {endpoint}"))?;
        let socket = if source.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connect {addr} from {source}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    /// Connects and completes greeting + READY as `socket_type`.
    pub async fn handshake(endpoint: &str, socket_type: &str) -> Result<Self> {
        let p = Self::connect(endpoint).await?;
        p.finish_handshake(socket_type).await
    }

    /// Like [`Self::handshake`], from the local address `source`.
    pub async fn handshake_from(
        endpoint: &str,
        socket_type: &str,
        source: std::net::IpAddr,
    ) -> Result<Self> {
        let p = Self::connect_from(endpoint, source).await?;
        p.finish_handshake(socket_type).await
    }

    async fn finish_handshake(mut self, socket_type: &str) -> Result<Self> {
        let p = &mut self;
        p.send(&greeting()).await?;
        let mut theirs = [0u8; 64];
        p.read_exact(&mut theirs)
            .await
            .context("reading the greeting")?;
        ensure!(
            theirs[0] == 0xFF && theirs[9] == 0x7F,
            "not a ZMTP greeting: {theirs:?}"
        );
        ensure!(theirs[10] == 3, "not ZMTP 3: version {}", theirs[10]);
        p.send(&ready_command(socket_type)).await?;
        let (flags, body) = p.read_frame().await.context("reading READY")?;
        ensure!(
            flags & FLAG_COMMAND != 0,
            "expected a command, flags {flags:#x}"
        );
        ensure!(
            body.get(1..6) == Some(&b"READY"[..]),
            "expected READY, got {body:?}"
        );
        Ok(self)
    }

    /// Reads one whole message (frames up to the last without MORE).
    pub async fn read_message(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut frames = Vec::new();
        loop {
            let (flags, body) = self.read_frame().await?;
            if flags & FLAG_COMMAND != 0 {
                continue; // PING etc.
            }
            frames.push(body);
            if flags & FLAG_MORE == 0 {
                return Ok(frames);
            }
        }
    }

    /// As a SUB: subscribes `prefix` (a one-frame `\x01prefix` message).
    pub async fn subscribe(&mut self, prefix: &str) -> Result<()> {
        let mut body = vec![1u8];
        body.extend_from_slice(prefix.as_bytes());
        self.send(&frame(0, &body)).await
    }

    /// Half-closes: no more bytes from us (FIN); reading still works.
    pub async fn shutdown_write(&mut self) -> Result<()> {
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Writes bytes (a write error means the peer closed: reported as such).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(10), self.stream.write_all(bytes))
            .await
            .context("write timed out")??;
        Ok(())
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(buf))
            .await
            .context("read timed out")??;
        Ok(())
    }

    /// Reads one frame: flags and body (bodies over 1 MiB are refused).
    pub async fn read_frame(&mut self) -> Result<(u8, Vec<u8>)> {
        let mut flags = [0u8; 1];
        self.read_exact(&mut flags).await?;
        let len = if flags[0] & FLAG_LONG != 0 {
            let mut l = [0u8; 8];
            self.read_exact(&mut l).await?;
            u64::from_be_bytes(l)
        } else {
            let mut l = [0u8; 1];
            self.read_exact(&mut l).await?;
            u64::from(l[0])
        };
        if len > MAX_READ_FRAME {
            bail!("peer announced a {len}-byte frame");
        }
        let mut body = vec![0u8; len as usize];
        self.read_exact(&mut body).await?;
        Ok((flags[0], body))
    }

    /// Waits until the other side closes the connection (EOF or reset),
    /// discarding anything it sends meanwhile; fails after `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Err(_) => bail!("connection still open after {timeout:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(_)) => {}
            }
        }
    }
}
