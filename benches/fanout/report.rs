//! The fanout bench's results: a markdown report (saturation, latency at
//! fixed loads, worker CPU per delivery), a CSV of every level and one SVG
//! plot per client count (deliveries/s vs p99), under benches/results/.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::sides::Kind;
use super::sweep::{Level, Settings};

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// When, where and how: date, machine, load, settings.
pub fn header(s: &Settings) -> String {
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: u64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kb as f64 / 1048576.0))
        })
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let mut note = std::env::var("FANFARE_FANOUT_NOTE")
        .map(|n| format!("\nnote: {n}"))
        .unwrap_or_default();
    if s.rooms > 0 {
        note = format!(
            "\nrooms mode: {} rooms (`room.N`, {} subscribers each unless the clients are given), connection k in room k mod {}, events round-robin over the rooms with a per-room sequence; connections opened at ≤ {:.0}/s from {} loopback sources{note}",
            s.rooms, s.room_subs, s.rooms, s.connect_rate, super::rooms::SOURCES
        );
    }
    format!(
        "fanout bench, {} · commit {} · {} cores (`nproc` {}) {cpu} · {mem} · load average at start {} \n\
         settings: clients {:?}, sides {:?}, {} repetitions, {} s per level, start {:.0}/s × {} steps + {} bisections, \
         pass: loss < {} %, p99 ≤ {} ms, no growing backlog; {} workers/servers, worker threads {}, load generator threads {}, floor writer threads {}, pad {} B{note}",
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        sh("git", &["rev-parse", "--short", "HEAD"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sh("nproc", &[]),
        load.join(" "),
        s.clients,
        s.sides.iter().map(|k| k.key()).collect::<Vec<_>>(),
        s.reps,
        s.seconds,
        s.start,
        s.step,
        s.refine,
        s.max_loss * 100.0,
        s.max_p99_ms,
        s.workers,
        s.threads.map_or("demo default".to_owned(), |t| t.to_string()),
        s.load_threads,
        s.floor_threads,
        s.pad,
    )
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else {
        format!("{:.0} k/s", v / 1e3)
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("—".to_owned(), f)
}

/// The best passing sweep level of each repetition for (clients, side).
fn saturation_levels(levels: &[Level], clients: usize, side: Kind, reps: usize) -> Vec<&Level> {
    (0..reps)
        .filter_map(|rep| {
            levels
                .iter()
                .filter(|l| {
                    l.rep == rep
                        && l.clients == clients
                        && l.side == side
                        && l.phase == "sweep"
                        && l.pass
                })
                .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
        })
        .collect()
}

/// Writes fanout.md, fanout-levels.csv and fanout-c<C>.svg; returns the markdown.
pub fn write(s: &Settings, levels: &[Level], dir: &Path, header: &str) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let reps = levels.iter().map(|l| l.rep + 1).max().unwrap_or(0);
    let mut md = String::new();
    let title = if s.rooms > 0 {
        "Many rooms: Fanfare vs Socket.IO + Redis vs the floor"
    } else {
        "Fanout: Fanfare vs Socket.IO + Redis vs the floor"
    };
    let _ = writeln!(md, "# {title}\n\n{header}\n");
    let _ = writeln!(md, "Medians over {reps} repetition(s), sides alternated A B C within each. Saturation = the highest deliveries/s \
        of a sweep level with < {} % loss, p99 ≤ {} ms, the publisher on time and no growing backlog (p50 of the last third ≤ 2 × the first third's + 50 ms).\n",
        s.max_loss * 100.0, s.max_p99_ms);
    // On a shared VM the hypervisor may take part of the machine for a while;
    // the CSV has the share per level (`steal_pct`).
    let worst = levels.iter().max_by(|a, b| a.steal.total_cmp(&b.steal));
    if let Some(w) = worst {
        let _ = writeln!(
            md,
            "CPU time stolen by the hypervisor during a level: median {:.1} %, most {:.1} % \
            ({} C={} {} at {:.0}/s); `steal_pct` in the CSV gives every level's.\n",
            median(levels.iter().map(|l| l.steal * 100.0).collect()).unwrap_or(0.0),
            w.steal * 100.0,
            w.side.key(),
            w.clients,
            w.phase,
            w.offered
        );
    }
    let _ = writeln!(md, "## Saturation\n");
    let _ = writeln!(md, "| clients | Fanfare | Socket.IO + Redis | floor | Fanfare ÷ Socket.IO | Fanfare ÷ floor | CPU µs/delivery at saturation: Fanfare workers (+ broadcaster) | Socket.IO servers (+ redis) | floor |");
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &s.clients {
        let sat = |k: Kind| {
            median(
                saturation_levels(levels, c, k, reps)
                    .iter()
                    .map(|l| l.achieved)
                    .collect(),
            )
        };
        let cpu = |k: Kind| {
            let ls = saturation_levels(levels, c, k, reps);
            let a = median(ls.iter().map(|l| l.server_cpu_per_delivery).collect());
            let b = median(ls.iter().map(|l| l.other_cpu_per_delivery).collect());
            match (a, b) {
                (Some(a), Some(b)) if k != Kind::Floor => format!("{a:.2} (+ {b:.2})"),
                (Some(a), _) => format!("{a:.2}"),
                _ => "—".into(),
            }
        };
        let (f, sio, fl) = (sat(Kind::Fanfare), sat(Kind::SocketIo), sat(Kind::Floor));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "—".into(),
        };
        let _ = writeln!(
            md,
            "| {c} | {} | {} | {} | {} | {} | {} | {} | {} |",
            opt(f, rate),
            opt(sio, rate),
            opt(fl, rate),
            ratio(f, sio),
            ratio(f, fl),
            cpu(Kind::Fanfare),
            cpu(Kind::SocketIo),
            cpu(Kind::Floor)
        );
    }
    let _ = writeln!(
        md,
        "\n## Latency at fixed loads (% of Fanfare's saturation in the same repetition)\n"
    );
    let _ = writeln!(
        md,
        "p50 / p99 in ms (publisher wall clock → receipt), loss if any.\n"
    );
    let _ = writeln!(md, "| clients | load | deliveries/s | Fanfare | Socket.IO + Redis | floor | Fanfare p99 ÷ floor p99 | Socket.IO p99 ÷ Fanfare p99 |");
    let _ = writeln!(md, "|---:|---:|---:|---|---|---|---:|---:|");
    for &c in &s.clients {
        for &pct in &s.points {
            let phase = format!("p{pct}");
            let of = |k: Kind| -> Vec<&Level> {
                levels
                    .iter()
                    .filter(|l| l.clients == c && l.side == k && l.phase == phase)
                    .collect()
            };
            let offered = median(of(Kind::Fanfare).iter().map(|l| l.offered).collect());
            let p = |k: Kind, q: fn(&Level) -> f64| median(of(k).iter().map(|l| q(l)).collect());
            let cell = |k: Kind| {
                let ls = of(k);
                if ls.is_empty() {
                    return "—".to_owned();
                }
                let loss = median(ls.iter().map(|l| l.loss()).collect()).unwrap_or(0.0);
                let failed = ls.iter().filter(|l| !l.pass).count();
                format!(
                    "{} / {}{}{}",
                    opt(p(k, |l| l.p50), |v| format!("{v:.2}")),
                    opt(p(k, |l| l.p99), |v| format!("{v:.2}")),
                    if loss > 0.0 {
                        format!(" · {:.2} % lost", loss * 100.0)
                    } else {
                        String::new()
                    },
                    if failed > 0 {
                        format!(" · {failed}/{} not sustained", ls.len())
                    } else {
                        String::new()
                    }
                )
            };
            let r = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "—".into(),
            };
            let f99 = p(Kind::Fanfare, |l| l.p99);
            let _ = writeln!(
                md,
                "| {c} | {pct} % | {} | {} | {} | {} | {} | {} |",
                opt(offered, rate),
                cell(Kind::Fanfare),
                cell(Kind::SocketIo),
                cell(Kind::Floor),
                r(f99, p(Kind::Floor, |l| l.p99)),
                r(p(Kind::SocketIo, |l| l.p99), f99)
            );
        }
    }
    if s.rooms > 0 {
        rooms_table(&mut md, s, levels, reps);
    }
    let _ = writeln!(
        md,
        "\nEvery level is in `fanout-levels.csv`; plots: {}.",
        s.clients
            .iter()
            .map(|c| format!("`fanout-c{c}.svg`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(dir.join("fanout.md"), &md)?;
    std::fs::write(dir.join("fanout-levels.csv"), csv(levels, s.rooms > 0))?;
    for &c in &s.clients {
        plot(levels, c, &dir.join(format!("fanout-c{c}.svg")))?;
    }
    Ok(md)
}

/// The rooms mode's table: at each side's saturation level (medians over
/// repetitions), what the broadcaster or redis wrote and what the workers
/// took in against what their browsers wanted.
fn rooms_table(md: &mut String, s: &Settings, levels: &[Level], reps: usize) {
    let _ = writeln!(md, "\n## Rooms: egress and intake at saturation\n");
    let _ = writeln!(
        md,
        "Egress bytes = TCP payload bytes sent over the level on the broadcaster's PUB port (Fanfare: to the workers' \
         fanfare-clients) or on redis' port (Socket.IO: to the servers' subscriber connections, plus the replies to the emitter), \
         from `ss -tin` `bytes_sent` (the same way on both sides), ÷ deliveries. Egress messages = the broadcaster's \
         `fanfare_egress_messages_total` over the level ÷ deliveries. Intake = Σ over workers of `fanfare_hub_events_in_total` over \
         the level ÷ Σ over workers of the events of the rooms that worker has a connection in (1.0 = a worker receives only what \
         its browsers want).\n"
    );
    let _ = writeln!(md, "| clients | side | messages/s | deliveries/s | p50 / p99 ms | egress bytes per delivery | egress messages per delivery | intake ÷ wanted (all workers) | worst worker | serving CPU µs/delivery |");
    let _ = writeln!(md, "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|");
    for &c in &s.clients {
        for &k in &s.sides {
            let ls = saturation_levels(levels, c, k, reps);
            if ls.is_empty() {
                continue;
            }
            let rl = |f: &dyn Fn(&Level, &super::sweep::RoomLevel) -> Option<f64>| {
                median(
                    ls.iter()
                        .filter_map(|l| l.rooms.as_ref().and_then(|r| f(l, r)))
                        .collect(),
                )
            };
            let msgs = rl(&|_, r| Some(r.messages_per_s));
            let ach = median(ls.iter().map(|l| l.achieved).collect());
            let p50 = median(ls.iter().map(|l| l.p50).collect());
            let p99 = median(ls.iter().map(|l| l.p99).collect());
            let bytes = rl(&|l, r| r.egress_bytes.map(|b| b as f64 / l.received.max(1) as f64));
            let egress = rl(&|l, r| r.egress_messages.map(|e| e / l.received.max(1) as f64));
            let intake = rl(&|_, r| r.intake_ratio());
            let worst = rl(&|_, r| r.intake_ratio_max());
            let cpu = median(ls.iter().map(|l| l.server_cpu_per_delivery).collect());
            let f2 = |v: f64| format!("{v:.2}");
            let _ = writeln!(
                md,
                "| {c} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
                k.key(),
                opt(msgs, rate),
                opt(ach, rate),
                opt(p50, f2),
                opt(p99, f2),
                opt(bytes, |v| format!("{v:.1}")),
                opt(egress, |v| format!("{v:.3}")),
                opt(intake, |v| format!("{v:.3}")),
                opt(worst, |v| format!("{v:.3}")),
                opt(cpu, f2),
            );
        }
    }
}

fn csv(levels: &[Level], rooms: bool) -> String {
    let mut out = String::from("rep,clients,side,phase,offered,achieved,sent,expected,received,loss,gaps,dups,p50_ms,p99_ms,early_p50_ms,late_p50_ms,max_ms,publisher_lag,closed,server_cpu_us_per_delivery,other_cpu_us_per_delivery,load_generator_cpu_us_per_delivery,steal_pct,pass,why");
    if rooms {
        out.push_str(",messages_per_s,stray,egress_bytes,egress_messages,broadcaster_subscribers,intake_ratio,intake_ratio_worst_worker,intake_per_worker");
    }
    out.push('\n');
    for l in levels {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.0},{:.0},{},{},{},{:.6},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{:.3},{:.3},{:.3},{:.1},{},\"{}\"",
            l.rep + 1, l.clients, l.side.key(), l.phase, l.offered, l.achieved, l.sent, l.expected, l.received,
            l.loss(), l.gaps, l.dups, l.p50, l.p99, l.early_p50, l.late_p50, l.max, l.publisher_lag, l.closed,
            l.server_cpu_per_delivery, l.other_cpu_per_delivery, l.load_cpu_per_delivery, l.steal * 100.0, l.pass, l.why.replace('"', "'")
        );
        if let (true, Some(r)) = (rooms, l.rooms.as_ref()) {
            out.pop(); // the newline
            let per_worker: Vec<String> = r
                .intake
                .iter()
                .map(|(w, got, wanted)| format!("{w}={got:.0}/{wanted}"))
                .collect();
            let _ = writeln!(
                out,
                ",{:.0},{},{},{},{},{},{},\"{}\"",
                r.messages_per_s,
                r.stray,
                r.egress_bytes.map_or(String::new(), |b| b.to_string()),
                r.egress_messages
                    .map_or(String::new(), |e| format!("{e:.0}")),
                r.subscribers.map_or(String::new(), |v| format!("{v:.0}")),
                r.intake_ratio()
                    .map_or(String::new(), |v| format!("{v:.4}")),
                r.intake_ratio_max()
                    .map_or(String::new(), |v| format!("{v:.4}")),
                per_worker.join(" ")
            );
        }
    }
    out
}

fn color(k: Kind) -> RGBColor {
    match k {
        Kind::Fanfare => RGBColor(0x1f, 0x77, 0xb4),
        Kind::SocketIo => RGBColor(0xd6, 0x27, 0x28),
        Kind::Floor => RGBColor(0x55, 0x55, 0x55),
    }
}

fn plot(levels: &[Level], clients: usize, path: &Path) -> Result<()> {
    let mine: Vec<&Level> = levels
        .iter()
        .filter(|l| l.clients == clients && l.p99.is_finite() && l.p99 > 0.0)
        .collect();
    let xmax = mine.iter().map(|l| l.achieved).fold(1e5, f64::max) * 1.05;
    let ymax = mine.iter().map(|l| l.p99).fold(10.0, f64::max) * 2.0;
    let ymin = mine
        .iter()
        .map(|l| l.p99)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.01, 1e6)
        / 2.0;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{clients} websocket clients: p99 latency vs deliveries/s (● sustained, × not)"
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..xmax, (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("deliveries/s received")
        .y_desc("p99 latency, ms (log)")
        .x_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()?;
    for kind in Kind::ALL {
        let c = color(kind);
        let of: Vec<&&Level> = mine.iter().filter(|l| l.side == kind).collect();
        if of.is_empty() {
            continue;
        }
        let reps = of.iter().map(|l| l.rep).max().unwrap_or(0);
        for rep in 0..=reps {
            let mut line: Vec<(f64, f64)> = of
                .iter()
                .filter(|l| l.rep == rep && l.pass)
                .map(|l| (l.achieved, l.p99))
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            let series = chart.draw_series(LineSeries::new(line, c.stroke_width(2)))?;
            if rep == 0 {
                series.label(kind.title()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            }
        }
        chart.draw_series(
            of.iter()
                .filter(|l| l.pass)
                .map(|l| Circle::new((l.achieved, l.p99), 3, c.filled())),
        )?;
        chart.draw_series(
            of.iter()
                .filter(|l| !l.pass)
                .map(|l| Cross::new((l.achieved, l.p99), 5, c.stroke_width(2))),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
