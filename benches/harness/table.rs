//! Medians over runs and the markdown report.

use std::fmt::Write as _;

use super::config::{BenchConfig, Column};
use super::run::{CpuPerMessage, RunResult};

/// Every run of one table cell (subscribers × payload × column).
pub struct Cell {
    /// Subscribers in this row.
    pub subscribers: usize,
    /// Payload bytes in this row.
    pub payload: usize,
    /// The forwarder under test.
    pub column: Column,
    /// Successful runs.
    pub runs: Vec<RunResult>,
    /// Failed runs, with the reason.
    pub errors: Vec<String>,
}

/// Medians of one cell.
struct Summary {
    /// Delivered msg/s per subscriber (mean over subscribers, median over runs).
    rate: f64,
    /// Loss in % of sent (mean over subscribers, median over runs).
    loss: f64,
    /// Load generator send rate, median over runs.
    ingest: f64,
    /// Runs where a subscriber ended on the quiet timeout or deadline, not the end marker.
    unmarked: usize,
    /// Subscriber-runs whose stamp-seq gaps are fewer than the payload-index loss
    /// (more is expected: end markers dropped in the tail count as stamp gaps too).
    stamp_mismatches: usize,
    /// Messages fanfare-client fetched from history per subscriber (median over runs).
    replayed: f64,
    /// Messages fanfare-client reported unrecoverable per subscriber (median over runs).
    unrecoverable: f64,
    /// Slow-consumer closes resumed with `subscribe_from`, over all runs.
    resumes: u64,
    /// The broadcaster's egress drops per run, median (NaN without counters).
    egress_dropped: f64,
    /// Messages the raw subscribers missed per run, all subscribers together, median.
    missed: f64,
    /// The broadcaster's rejected ingress messages, most in any run.
    rejected: f64,
    /// CPU µs per message sent of each process, medians over runs.
    cpu: CpuPerMessage,
}

impl Cell {
    fn summary(&self, messages: u64) -> Option<Summary> {
        if self.runs.is_empty() {
            return None;
        }
        let mean = |f: &dyn Fn(&super::run::SinkResult) -> f64, run: &RunResult| {
            run.sinks.iter().map(f).sum::<f64>() / run.sinks.len().max(1) as f64
        };
        let per_run = |f: &dyn Fn(&RunResult) -> f64| median(self.runs.iter().map(f).collect());
        Some(Summary {
            rate: per_run(&|run| mean(&|s| s.rate(), run)),
            loss: per_run(&|run| {
                mean(
                    &|s| (messages - s.unique.min(messages)) as f64 * 100.0 / messages as f64,
                    run,
                )
            }),
            ingest: per_run(&|run| run.ingest_rate),
            unmarked: self
                .runs
                .iter()
                .filter(|run| run.sinks.iter().any(|s| s.end != "marker"))
                .count(),
            stamp_mismatches: self
                .runs
                .iter()
                .flat_map(|run| &run.sinks)
                .filter(|s| s.stamp_missing < messages - s.unique.min(messages))
                .count(),
            replayed: per_run(&|run| mean(&|s| s.replayed as f64, run)),
            unrecoverable: per_run(&|run| mean(&|s| s.stamp_missing as f64, run)),
            egress_dropped: per_run(&|run| run.counters.map_or(f64::NAN, |c| c.egress_dropped)),
            missed: per_run(&|run| {
                run.sinks
                    .iter()
                    .map(|s| (messages - s.unique.min(messages)) as f64)
                    .sum()
            }),
            rejected: self
                .runs
                .iter()
                .filter_map(|run| run.counters.map(|c| c.rejected))
                .fold(0.0, f64::max),
            resumes: self
                .runs
                .iter()
                .flat_map(|run| &run.sinks)
                .map(|s| s.resumes)
                .sum(),
            cpu: CpuPerMessage {
                forwarder: per_run(&|run| run.cpu.forwarder),
                load: per_run(&|run| run.cpu.load),
                subscribers: per_run(&|run| run.cpu.subscribers),
            },
        })
    }
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn rate_text(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M/s", rate / 1e6)
    } else {
        format!("{:.0} k/s", rate / 1e3)
    }
}

/// Renders the report: the main table, the ingest table and notes on failures.
pub fn render(config: &BenchConfig, cells: &[Cell], header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    let _ = writeln!(
        out,
        "Delivered messages/s per subscriber (median of {} runs) · ratio vs zmq_proxy · loss seen by the subscriber \
         (raw libzmq SUB, counted by the load generator's index in each payload; on the broadcaster the stamp seq \
         agrees, give or take end markers dropped in the tail, unless a note says otherwise; for fanfare-client: after gap repair).\n",
        config.runs
    );
    let mut head = String::from("| subs | payload |");
    let mut rule = String::from("|---:|---:|");
    for column in &config.columns {
        let _ = write!(head, " {} |", column.title());
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    let mut notes = Vec::new();
    let mut ingest = String::new();
    let mut cpu = String::new();
    for &subs in &config.subscribers {
        for &payload in &config.payloads {
            let row: Vec<&Cell> = config
                .columns
                .iter()
                .filter_map(|c| {
                    cells
                        .iter()
                        .find(|x| x.subscribers == subs && x.payload == payload && x.column == *c)
                })
                .collect();
            let proxy = row
                .iter()
                .find(|c| c.column == Column::ZmqProxy)
                .and_then(|c| c.summary(config.messages));
            let reference = proxy.as_ref().map(|s| s.rate);
            let proxy_cpu = proxy.as_ref().map(|s| s.cpu.forwarder);
            let _ = write!(out, "| {subs} | {payload} B |");
            let _ = write!(ingest, "| {subs} | {payload} B |");
            let _ = write!(cpu, "| {subs} | {payload} B |");
            for cell in &row {
                for error in &cell.errors {
                    notes.push(format!(
                        "{subs} sub × {payload} B, {}: {error}",
                        cell.column.title()
                    ));
                }
                let Some(s) = cell.summary(config.messages) else {
                    let _ = write!(out, " failed |");
                    let _ = write!(ingest, " – |");
                    let _ = write!(cpu, " – |");
                    continue;
                };
                let ratio = reference
                    .map(|r| format!(" · {:.2}×", s.rate / r))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    " {}{ratio} · {:.2} % lost |",
                    rate_text(s.rate),
                    s.loss
                );
                let _ = write!(ingest, " {} |", rate_text(s.ingest));
                // Forwarder CPU relative to zmq_proxy's: > 1 means cheaper per message.
                let cheaper = proxy_cpu
                    .filter(|p| *p > 0.0 && s.cpu.forwarder > 0.0)
                    .map(|p| format!(" ({:.2}×)", p / s.cpu.forwarder))
                    .unwrap_or_default();
                let _ = write!(
                    cpu,
                    " {:.2}{cheaper} · {:.2} · {:.2} |",
                    s.cpu.forwarder, s.cpu.load, s.cpu.subscribers
                );
                if s.unmarked > 0 {
                    notes.push(format!(
                        "{subs} sub × {payload} B, {}: in {} run(s) a subscriber stopped on its quiet timeout, not the end marker",
                        cell.column.title(),
                        s.unmarked
                    ));
                }
                if cell.column.through_client() {
                    notes.push(format!(
                        "{subs} sub × {payload} B, {}: {:.0} messages repaired from history and \
                         {:.0} reported unrecoverable per subscriber, the PUB dropped {:.0} per run (medians); \
                         {} slow-consumer resume(s) in all runs",
                        cell.column.title(),
                        s.replayed,
                        s.unrecoverable,
                        s.egress_dropped,
                        s.resumes
                    ));
                }
                if cell.column.runs_broadcaster()
                    && !cell.column.through_client()
                    && !s.egress_dropped.is_nan()
                {
                    notes.push(format!(
                        "{subs} sub × {payload} B, {}: its own `fanfare_egress_dropped_total` says {:.0} \
                         per run, the raw subscribers missed {:.0} together (medians)",
                        cell.column.title(),
                        s.egress_dropped,
                        s.missed
                    ));
                }
                if s.rejected > 0.0 {
                    notes.push(format!(
                        "{subs} sub × {payload} B, {}: the broadcaster rejected up to {:.0} ingress messages in a run",
                        cell.column.title(),
                        s.rejected
                    ));
                }
                if cell.column.runs_broadcaster()
                    && !cell.column.through_client()
                    && s.stamp_mismatches > 0
                {
                    notes.push(format!(
                        "{subs} sub × {payload} B, {}: in {} subscriber-run(s) the stamp seq shows \
                         fewer messages missing than the payload index does",
                        cell.column.title(),
                        s.stamp_mismatches
                    ));
                }
            }
            for before in row.iter().filter(|c| c.column.before()) {
                let after = row.iter().find(|c| c.column == before.column.after());
                let rates = (
                    after.and_then(|c| c.summary(config.messages)),
                    before.summary(config.messages),
                );
                if let (Some(a), Some(b)) = rates {
                    notes.push(format!(
                        "{subs} sub × {payload} B: {} is {:.2}× {} (same run, alternating)",
                        before.column.after().title(),
                        a.rate / b.rate,
                        before.column.title()
                    ));
                }
            }
            out.push('\n');
            ingest.push('\n');
            cpu.push('\n');
        }
    }
    let _ = writeln!(out, "\nLoad generator send rate (what each forwarder took in; PUSH blocks when the forwarder falls behind):\n");
    let _ = writeln!(out, "{head}\n{rule}\n{ingest}");
    let _ = writeln!(
        out,
        "CPU time per message sent, µs (user + system from `go` to the last result, median over runs): \
         forwarder (in brackets: zmq_proxy's ÷ this one's, > 1 = cheaper) · load generator · all subscribers together:\n"
    );
    let _ = writeln!(out, "{head}\n{rule}\n{cpu}");
    let steals: Vec<f64> = cells
        .iter()
        .flat_map(|c| &c.runs)
        .map(|r| r.steal * 100.0)
        .collect();
    if let Some(most) = steals.iter().copied().reduce(f64::max) {
        let _ = writeln!(
            out,
            "CPU time stolen by the hypervisor during a run (a shared VM): median {:.1} %, most {:.1} %.\n",
            median(steals),
            most
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "Notes:\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}
