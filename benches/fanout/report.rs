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
    let note = std::env::var("FANFARE_FANOUT_NOTE")
        .map(|n| format!("\nnote: {n}"))
        .unwrap_or_default();
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
    let _ = writeln!(
        md,
        "# Fanout: Fanfare vs Socket.IO + Redis vs the floor\n\n{header}\n"
    );
    let _ = writeln!(md, "Medians over {reps} repetition(s), sides alternated A B C within each. Saturation = the highest deliveries/s \
        of a sweep level with < {} % loss, p99 ≤ {} ms, the publisher on time and no growing backlog (p50 of the last third ≤ 2 × the first third's + 50 ms).\n",
        s.max_loss * 100.0, s.max_p99_ms);
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
    std::fs::write(dir.join("fanout-levels.csv"), csv(levels))?;
    for &c in &s.clients {
        plot(levels, c, &dir.join(format!("fanout-c{c}.svg")))?;
    }
    Ok(md)
}

fn csv(levels: &[Level]) -> String {
    let mut out = String::from("rep,clients,side,phase,offered,achieved,sent,expected,received,loss,gaps,dups,p50_ms,p99_ms,early_p50_ms,late_p50_ms,max_ms,publisher_lag,closed,server_cpu_us_per_delivery,other_cpu_us_per_delivery,load_generator_cpu_us_per_delivery,pass,why\n");
    for l in levels {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.0},{:.0},{},{},{},{:.6},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{:.3},{:.3},{:.3},{},\"{}\"",
            l.rep + 1, l.clients, l.side.key(), l.phase, l.offered, l.achieved, l.sent, l.expected, l.received,
            l.loss(), l.gaps, l.dups, l.p50, l.p99, l.early_p50, l.late_p50, l.max, l.publisher_lag, l.closed,
            l.server_cpu_per_delivery, l.other_cpu_per_delivery, l.load_cpu_per_delivery, l.pass, l.why.replace('"', "'")
        );
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
