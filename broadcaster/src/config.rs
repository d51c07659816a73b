//! Broadcaster configuration: defaults, TOML file, validation.
//!
//! Precedence (applied by the binary): command-line flag, then `FANFARE_*`
//! environment variable, then the `--config` file, then these defaults.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Everything a broadcaster needs to run. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Ingress endpoint (PULL), `tcp://HOST:PORT`.
    pub pull: String,
    /// Egress endpoint (PUB).
    #[serde(rename = "pub")]
    pub publish: String,
    /// History endpoint (ROUTER).
    pub replay: String,
    /// Admin HTTP address (`HOST:PORT`); `None` disables it.
    pub admin: Option<String>,
    /// Origin id stamped on every message (`A-Z a-z 0-9 . _ -`, ≤ 64).
    pub id: String,
    /// Largest payload accepted on ingress, bytes.
    pub max_payload: usize,
    /// History bound: messages.
    pub history_count: usize,
    /// History bound: payload + topic bytes.
    pub history_bytes: usize,
    /// History bound: age, seconds.
    pub history_age_secs: u64,
    /// Heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Per-subscriber egress queue bound, bytes. When full, that subscriber
    /// alone misses messages (counted) and repairs them from history.
    pub subscriber_queue_bytes: usize,
    /// Most simultaneous connections per socket. At the cap a new peer
    /// evicts the longest-idle one (idle at least `evict-idle-ms`), else it
    /// is closed at once. Lowered at start (with a warning) when three times
    /// it does not fit under the open-file limit.
    pub max_connections: usize,
    /// A frame (and a multipart message) that has started must be complete
    /// within this time, milliseconds; else the peer is disconnected.
    pub frame_deadline_ms: u64,
    /// A PULL or replay peer that sends nothing (not even a PING) for this
    /// long is disconnected, milliseconds; 0 = never. SUB peers are
    /// legitimately silent and have no such timeout.
    pub idle_timeout_ms: u64,
    /// A subscriber whose socket accepts no bytes for this long while data
    /// is queued to it is disconnected, milliseconds.
    pub write_stall_ms: u64,
    /// At the connection cap, a peer idle (nothing read from it, nothing
    /// written to it) at least this long may be evicted for a new one,
    /// milliseconds.
    pub evict_idle_ms: u64,
    /// Most messages in one replay reply.
    pub replay_max_messages: usize,
    /// Most bytes in one replay reply.
    pub replay_max_bytes: usize,
    /// Most history entries one replay reply examines; a longer range is
    /// cut and the requester continues from `next`.
    pub replay_scan_entries: usize,
    /// Most entry × pattern tests one replay reply makes (with 64 patterns,
    /// `replay_scan_matches / 64` entries).
    pub replay_scan_matches: usize,
    /// Most time one replay reply spends filtering, milliseconds.
    pub replay_scan_ms: u64,
    /// Replay scans running at once (on blocking threads, never on the
    /// async workers). A request waits at most 250 ms for one, else `busy`.
    pub replay_workers: usize,
    /// Most bytes held by replay replies being written, all connections
    /// together; a reply that does not fit is answered `busy`.
    pub replay_inflight_bytes: usize,
    /// Deadline of each replay reply write, milliseconds; a peer that does
    /// not take a write in time is disconnected.
    pub replay_write_timeout_ms: u64,
    /// Time allowed for a graceful shutdown, milliseconds.
    pub shutdown_timeout_ms: u64,
    /// Federation links: one `[[peer]]` table per peer broadcaster whose
    /// PUB this broadcaster subscribes to (`--peer`, `FANFARE_PEERS`).
    #[serde(rename = "peer")]
    pub peers: Vec<PeerConfig>,
    /// A message re-published over this many links is dropped (counted);
    /// the last guard against loops, 1..=255.
    pub hop_limit: u8,
    /// A link that brings nothing (not even a heartbeat) for this long is
    /// reconnected, milliseconds.
    pub peer_stall_ms: u64,
}

/// Most federation links.
pub const MAX_PEERS: usize = 64;

/// One federation link (a `[[peer]]` table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeerConfig {
    /// The peer's PUB endpoint, `tcp://HOST:PORT`.
    #[serde(rename = "pub")]
    pub publish: String,
    /// The peer's replay endpoint; without it, learned from the peer's
    /// heartbeats.
    pub replay: Option<String>,
    /// Name in metrics and logs; default: the PUB endpoint.
    pub name: Option<String>,
    /// Largest payload accepted from this peer, bytes; default: `max-payload`.
    pub max_payload: Option<usize>,
}

impl PeerConfig {
    /// A link to `publish` with every default.
    pub fn new(publish: impl Into<String>) -> Self {
        Self {
            publish: publish.into(),
            ..Self::default()
        }
    }

    /// The link's label in metrics and logs.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.publish)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pull: "tcp://127.0.0.1:5557".into(),
            publish: "tcp://127.0.0.1:5558".into(),
            replay: "tcp://127.0.0.1:5559".into(),
            admin: Some("127.0.0.1:5560".into()),
            id: default_id(),
            max_payload: 1024 * 1024,
            history_count: 100_000,
            history_bytes: 64 * 1024 * 1024,
            history_age_secs: 600,
            heartbeat_ms: 1000,
            subscriber_queue_bytes: 16 * 1024 * 1024,
            max_connections: 4096,
            frame_deadline_ms: 10_000,
            idle_timeout_ms: 300_000,
            write_stall_ms: 15_000,
            evict_idle_ms: 10_000,
            replay_max_messages: 4096,
            replay_max_bytes: 8 * 1024 * 1024,
            replay_scan_entries: 4096,
            replay_scan_matches: 65_536,
            replay_scan_ms: 10,
            replay_workers: 2,
            replay_inflight_bytes: 64 * 1024 * 1024,
            replay_write_timeout_ms: 5000,
            shutdown_timeout_ms: 5000,
            peers: Vec::new(),
            hop_limit: 8,
            peer_stall_ms: 5000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct.
    #[error("bad config file {path}: {source}")]
    Parse {
        /// File path.
        path: String,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: p,
            source: Box::new(source),
        })
    }

    /// Checks ranges and the origin id.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if fanfare_protocol::stamp::validate_origin(&self.id).is_err() {
            return bad("id must be 1..=64 characters of A-Z a-z 0-9 . _ -");
        }
        if self.max_payload == 0 || self.max_payload > 256 * 1024 * 1024 {
            return bad("max-payload must be 1 byte ..= 256 MiB");
        }
        if self.history_count == 0 || self.history_bytes == 0 {
            return bad("history-count and history-bytes must be > 0");
        }
        if self.heartbeat_ms == 0 {
            return bad("heartbeat-ms must be > 0");
        }
        if self.max_connections == 0 || self.replay_max_messages == 0 {
            return bad("max-connections and replay-max-messages must be > 0");
        }
        if self.frame_deadline_ms == 0 || self.write_stall_ms == 0 {
            return bad("frame-deadline-ms and write-stall-ms must be > 0");
        }
        if self.subscriber_queue_bytes < 64 * 1024 {
            return bad("subscriber-queue-bytes must be at least 64 KiB");
        }
        self.validate_replay()?;
        self.validate_peers()
    }

    fn validate_peers(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.peers.len() > MAX_PEERS {
            return bad(format!("at most {MAX_PEERS} peers"));
        }
        if self.hop_limit == 0 {
            return bad("hop-limit must be 1..=255".into());
        }
        if !(100..=3_600_000).contains(&self.peer_stall_ms) {
            return bad("peer-stall-ms must be 100..=3600000".into());
        }
        let mut labels = std::collections::HashSet::new();
        for p in &self.peers {
            if crate::endpoint::tcp_host_port(&p.publish).is_err() {
                return bad(format!("peer pub {:?} is not tcp://HOST:PORT", p.publish));
            }
            if let Some(r) = &p.replay {
                if crate::endpoint::tcp_host_port(r).is_err() {
                    return bad(format!("peer replay {r:?} is not tcp://HOST:PORT"));
                }
            }
            if matches!(p.max_payload, Some(0)) {
                return bad("peer max-payload must be > 0".into());
            }
            if !labels.insert(p.label()) {
                return bad(format!("two peers named {:?}", p.label()));
            }
        }
        Ok(())
    }

    /// Peer stall bound.
    pub(crate) fn peer_stall(&self) -> Duration {
        Duration::from_millis(self.peer_stall_ms)
    }

    fn validate_replay(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.replay_max_bytes == 0 || self.replay_inflight_bytes == 0 {
            return bad("replay-max-bytes and replay-inflight-bytes must be > 0");
        }
        if !(1..=1 << 20).contains(&self.replay_scan_entries)
            || !(1..=1 << 30).contains(&self.replay_scan_matches)
        {
            return bad("replay-scan-entries must be 1..=1048576, replay-scan-matches 1..=2^30");
        }
        if !(1..=10_000).contains(&self.replay_scan_ms) {
            return bad("replay-scan-ms must be 1..=10000");
        }
        if !(1..=256).contains(&self.replay_workers) {
            return bad("replay-workers must be 1..=256");
        }
        if !(1..=3_600_000).contains(&self.replay_write_timeout_ms) {
            return bad("replay-write-timeout-ms must be 1..=3600000");
        }
        Ok(())
    }

    /// History age bound.
    pub(crate) fn history_age(&self) -> Duration {
        Duration::from_secs(self.history_age_secs)
    }

    /// Heartbeat interval.
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Graceful shutdown budget.
    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// Replay time budget per reply.
    pub(crate) fn replay_scan_time(&self) -> Duration {
        Duration::from_millis(self.replay_scan_ms)
    }

    /// Replay per-write deadline.
    pub(crate) fn replay_write_timeout(&self) -> Duration {
        Duration::from_millis(self.replay_write_timeout_ms)
    }

    /// Connection timeouts, as durations.
    pub(crate) fn timeouts(&self) -> crate::zmtp::Timeouts {
        crate::zmtp::Timeouts {
            frame: Duration::from_millis(self.frame_deadline_ms),
            idle: (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms)),
        }
    }

    /// Subscriber write stall bound.
    pub(crate) fn write_stall(&self) -> Duration {
        Duration::from_millis(self.write_stall_ms)
    }

    /// Least idle time of an evictable peer.
    pub(crate) fn evict_idle(&self) -> Duration {
        Duration::from_millis(self.evict_idle_ms)
    }

    /// Largest ingress frame: the payload limit plus room for topic and meta.
    pub(crate) fn max_ingress_frame(&self) -> usize {
        self.max_payload + 4096
    }
}

/// The host name, cleaned to the origin-id alphabet, or `broadcaster`.
fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let clean: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "broadcaster".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_and_defaults() {
        let c: Config =
            toml::from_str("pub = \"tcp://127.0.0.1:0\"\nid = \"b1\"\nhistory-count = 10\n")
                .unwrap();
        assert_eq!(c.publish, "tcp://127.0.0.1:0");
        assert_eq!(c.history_count, 10);
        assert_eq!(c.pull, Config::default().pull);
        c.validate().unwrap();
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
        let bad = Config {
            id: "a b".into(),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        Config::default().validate().unwrap();
        let c: Config = toml::from_str(
            "replay-scan-entries = 100\nreplay-workers = 1\nreplay-write-timeout-ms = 500\n",
        )
        .unwrap();
        assert_eq!((c.replay_scan_entries, c.replay_workers), (100, 1));
        c.validate().unwrap();
        for bad in [
            "replay-workers = 0",
            "replay-scan-entries = 0",
            "replay-scan-ms = 0",
            "replay-inflight-bytes = 0",
            "replay-write-timeout-ms = 0",
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_tables() {
        let c: Config = toml::from_str(
            "hop-limit = 3\n[[peer]]\npub = \"tcp://10.0.0.2:5558\"\nreplay = \"tcp://10.0.0.2:5559\"\nname = \"b2\"\n\n[[peer]]\npub = \"tcp://10.0.0.3:5558\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.hop_limit, 3);
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[0].label(), "b2");
        assert_eq!(c.peers[1].label(), "tcp://10.0.0.3:5558");
        assert_eq!(c.peers[1].replay, None);
        for bad in [
            "[[peer]]\npub = \"nonsense\"",
            "hop-limit = 0",
            "[[peer]]\npub = \"tcp://a:1\"\n[[peer]]\npub = \"tcp://a:1\"",
            "[[peer]]\npub = \"tcp://a:1\"\nwhat = 1",
        ] {
            let r = toml::from_str::<Config>(bad).map(|c| c.validate());
            assert!(!matches!(r, Ok(Ok(()))), "{bad}");
        }
    }
}
