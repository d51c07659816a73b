//! What one benchmark run measures, from defaults and `FANFARE_BENCH_*` variables.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

/// A forwarder under test: one column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// libzmq's own `zmq_proxy`, PULL -> PUB: the reference.
    ZmqProxy,
    /// A naive zmq.rs loop: `recv` on PULL, `send` on PUB.
    NaiveZmqRs,
    /// The Fanfare broadcaster, seen by a raw libzmq SUB.
    Broadcaster,
    /// The Fanfare broadcaster, seen through fanfare-client after gap repair.
    FanfareClient,
    /// Another broadcaster binary (`FANFARE_BENCH_BEFORE_BIN`, e.g. a build of
    /// main kept aside), seen by a raw libzmq SUB: before/after in one run.
    BroadcasterBefore,
    /// That other binary, seen through fanfare-client (the bench's own build).
    ClientBefore,
}

impl Column {
    /// Every column, in table order.
    pub const ALL: [Column; 6] = [
        Column::ZmqProxy,
        Column::NaiveZmqRs,
        Column::Broadcaster,
        Column::FanfareClient,
        Column::BroadcasterBefore,
        Column::ClientBefore,
    ];

    /// The columns run by default: the two "before" ones only with a before binary.
    fn defaults(before: bool) -> Vec<Column> {
        let n = if before { 6 } else { 4 };
        Column::ALL[..n].to_vec()
    }

    /// Whether this column runs a broadcaster binary.
    pub fn runs_broadcaster(self) -> bool {
        !matches!(self, Column::ZmqProxy | Column::NaiveZmqRs)
    }

    /// Whether its subscribers are fanfare-client ones (else raw libzmq SUBs).
    pub fn through_client(self) -> bool {
        matches!(self, Column::FanfareClient | Column::ClientBefore)
    }

    /// Whether it runs the before binary.
    pub fn before(self) -> bool {
        matches!(self, Column::BroadcasterBefore | Column::ClientBefore)
    }

    /// The column this one is the "before" of.
    pub fn after(self) -> Column {
        match self {
            Column::BroadcasterBefore => Column::Broadcaster,
            Column::ClientBefore => Column::FanfareClient,
            other => other,
        }
    }

    /// The short name used in `FANFARE_BENCH_COLUMNS`.
    pub fn key(self) -> &'static str {
        match self {
            Column::ZmqProxy => "proxy",
            Column::NaiveZmqRs => "naive",
            Column::Broadcaster => "broadcaster",
            Column::FanfareClient => "client",
            Column::BroadcasterBefore => "before",
            Column::ClientBefore => "client-before",
        }
    }

    /// The table heading.
    pub fn title(self) -> &'static str {
        match self {
            Column::ZmqProxy => "libzmq zmq_proxy",
            Column::NaiveZmqRs => "naive zmq.rs loop",
            Column::Broadcaster => "broadcaster (raw SUB)",
            Column::FanfareClient => "broadcaster via fanfare-client",
            Column::BroadcasterBefore => "before: broadcaster (raw SUB)",
            Column::ClientBefore => "before: via fanfare-client",
        }
    }
}

/// The benchmark's parameters.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Messages the load generator sends per run (`FANFARE_BENCH_MESSAGES`).
    pub messages: u64,
    /// Runs per cell; the table shows medians (`FANFARE_BENCH_RUNS`).
    pub runs: usize,
    /// Subscriber counts, one table row group each (`FANFARE_BENCH_SUBSCRIBERS`, e.g. `1,4`).
    pub subscribers: Vec<usize>,
    /// Payload sizes in bytes (`FANFARE_BENCH_PAYLOADS`, e.g. `16,100,1000`).
    pub payloads: Vec<usize>,
    /// Forwarders under test (`FANFARE_BENCH_COLUMNS`, e.g. `proxy,naive,broadcaster,client`).
    pub columns: Vec<Column>,
    /// Load generator pace in msg/s, 0 = full speed (`FANFARE_BENCH_RATE`).
    pub rate: f64,
    /// libzmq high-water mark for the load generator, zmq_proxy and raw SUBs (`FANFARE_BENCH_HWM`).
    pub hwm: u32,
    /// A subscriber that saw data and then nothing for this long stops (`FANFARE_BENCH_QUIET_MS`).
    pub quiet_ms: u64,
    /// The broadcaster binary (`FANFARE_BROADCASTER_BIN`; default `<target>/release/broadcaster`).
    pub broadcaster_bin: PathBuf,
    /// The binary of the "before" columns (`FANFARE_BENCH_BEFORE_BIN`), if any.
    pub before_bin: Option<PathBuf>,
    /// The fanfare-client subscribers of the `client-before` column: another
    /// build of this bench (`FANFARE_BENCH_BEFORE_CLIENT`, e.g. main's, kept
    /// aside); default this one.
    pub before_client: Option<PathBuf>,
}

impl BenchConfig {
    /// Whether a column under test runs the broadcaster binary.
    pub fn uses_broadcaster(&self) -> bool {
        self.columns
            .iter()
            .any(|c| c.runs_broadcaster() && !c.before())
    }

    /// The broadcaster binary `column` runs.
    pub fn binary_for(&self, column: Column) -> Option<&std::path::Path> {
        match (column.runs_broadcaster(), column.before()) {
            (false, _) => None,
            (true, false) => Some(&self.broadcaster_bin),
            (true, true) => self.before_bin.as_deref(),
        }
    }

    /// Defaults overridden by the environment; `target_dir` is the Cargo target directory.
    pub fn from_env(target_dir: &std::path::Path) -> Result<BenchConfig> {
        let before_bin = std::env::var_os("FANFARE_BENCH_BEFORE_BIN").map(PathBuf::from);
        let columns = match std::env::var("FANFARE_BENCH_COLUMNS") {
            Ok(list) => list
                .split(',')
                .map(|key| match Column::ALL.iter().find(|c| c.key() == key.trim()) {
                    Some(column) => Ok(*column),
                    None => bail!("FANFARE_BENCH_COLUMNS: unknown column `{key}` (proxy, naive, broadcaster, client, before, client-before)"),
                })
                .collect::<Result<Vec<_>>>()?,
            Err(_) => Column::defaults(before_bin.is_some()),
        };
        let config = BenchConfig {
            messages: var("FANFARE_BENCH_MESSAGES", 500_000)?,
            runs: var("FANFARE_BENCH_RUNS", 3)?,
            subscribers: list("FANFARE_BENCH_SUBSCRIBERS", &[1, 2, 4])?,
            payloads: list("FANFARE_BENCH_PAYLOADS", &[16, 100, 1000])?,
            columns,
            rate: var("FANFARE_BENCH_RATE", 0.0)?,
            hwm: var("FANFARE_BENCH_HWM", 100_000)?,
            quiet_ms: var("FANFARE_BENCH_QUIET_MS", 3_000)?,
            broadcaster_bin: std::env::var_os("FANFARE_BROADCASTER_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| target_dir.join("release").join("broadcaster")),
            before_bin,
            before_client: std::env::var_os("FANFARE_BENCH_BEFORE_CLIENT").map(PathBuf::from),
        };
        if config.columns.iter().any(|c| c.before()) {
            match &config.before_bin {
                Some(bin) if bin.is_file() => {}
                Some(bin) => bail!("FANFARE_BENCH_BEFORE_BIN: no file at {}", bin.display()),
                None => bail!("the `before` columns need FANFARE_BENCH_BEFORE_BIN (a broadcaster binary to compare with)"),
            }
        }
        if config.runs == 0 || config.messages == 0 || config.columns.is_empty() {
            bail!("FANFARE_BENCH_RUNS, FANFARE_BENCH_MESSAGES and FANFARE_BENCH_COLUMNS must not be zero or empty");
        }
        if config.payloads.iter().any(|&p| p < 8) {
            bail!("FANFARE_BENCH_PAYLOADS: payloads carry an 8-byte index, so each must be at least 8");
        }
        Ok(config)
    }
}

fn var<T: FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .with_context(|| format!("{name}={value}")),
        Err(_) => Ok(default),
    }
}

fn list(name: &str, default: &[usize]) -> Result<Vec<usize>> {
    match std::env::var(name) {
        Ok(value) => value
            .split(',')
            .map(|item| {
                item.trim()
                    .parse()
                    .with_context(|| format!("{name}={value}"))
            })
            .collect(),
        Err(_) => Ok(default.to_vec()),
    }
}
