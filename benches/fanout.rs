//! End-to-end fan-out, side by side: one open-loop publisher at a fixed rate
//! → (A) Fanfare: broadcaster → W demo workers; (B) W Socket.IO 4 servers
//! with the Redis adapter, published through redis-emitter; (C) the floor, a
//! one-thread writer of pre-encoded frames → C websocket clients of one Rust
//! load generator. Sweeps the rate to find each side's saturation, then
//! measures every side at 10 / 50 / 90 % of Fanfare's. See benches/README.md.

#[path = "fanout/event.rs"]
mod event;
#[path = "fanout/floor.rs"]
mod floor;
#[path = "fanout/hist.rs"]
mod hist;
#[path = "fanout/load.rs"]
mod load;
#[allow(dead_code)] // shared with the forwarding bench, which uses all of it
#[path = "harness/procs.rs"]
mod procs;
#[path = "fanout/publisher.rs"]
mod publisher;
#[path = "fanout/report.rs"]
mod report;
#[path = "fanout/rooms.rs"]
mod rooms;
#[path = "fanout/sides.rs"]
mod sides;
#[path = "fanout/sweep.rs"]
mod sweep;
#[path = "harness/ws.rs"]
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use sides::{Kind, Side, SideConfig, Tools};
use sweep::{Bench, Level, Settings};

/// Set to the role a child process of the bench plays.
pub const ROLE_VAR: &str = "FANFARE_BENCH_ROLE";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fanout benchmark: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(role) = std::env::var(ROLE_VAR) {
        return match role.as_str() {
            "floor" => floor::run(&args),
            "fanout-publisher" => publisher::run(&args),
            other => bail!("unknown {ROLE_VAR}={other}"),
        };
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("fanout: a benchmark, not a test; run it with `cargo bench -p fanfare-benches --bench fanout`");
        return Ok(());
    }
    let settings = Settings::from_env()?;
    let target = target_dir()?;
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tools = Tools {
        broadcaster: std::env::var_os("FANFARE_BROADCASTER_BIN")
            .map_or_else(|| target.join("release/broadcaster"), PathBuf::from),
        demo: std::env::var_os("FANFARE_DEMO_BIN")
            .map_or_else(|| target.join("release/fanfare-demo-web"), PathBuf::from),
        socketio_dir: manifest.join("socketio"),
    };
    sides::prepare(&settings.sides, &tools)?;
    let default_out = if settings.rooms > 0 {
        manifest.join("results/rooms")
    } else {
        manifest.join("results")
    };
    let out_dir = std::env::var_os("FANFARE_FANOUT_OUT").map_or(default_out, PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.load_threads.max(1))
        .thread_name("ws-load")
        .enable_all()
        .build()?;
    let cfg = SideConfig {
        workers: settings.workers,
        threads: settings.threads,
        pad: settings.pad,
        floor_threads: settings.floor_threads,
        rooms: settings.rooms,
    };
    let header = report::header(&settings);
    eprintln!("{header}");
    let mut levels: Vec<Level> = Vec::new();
    let mut next_run = 1;
    for rep in 0..settings.reps {
        for &clients in &settings.clients {
            let mut fanfare_sat: Option<f64> = None;
            for &kind in &settings.sides {
                eprintln!("rep {} · C={clients} · {}", rep + 1, kind.title());
                // Start near the last repetition's saturation of this side.
                let prev = levels
                    .iter()
                    .filter(|l| {
                        l.side == kind && l.clients == clients && l.phase == "sweep" && l.pass
                    })
                    .map(|l| l.achieved)
                    .fold(0.0, f64::max);
                let start = if prev > 0.0 {
                    (prev / 2.0).max(settings.start)
                } else {
                    settings.start
                };
                let side = Side::start(kind, &tools, &cfg)?;
                let mut bench = Bench {
                    settings: &settings,
                    rt: &rt,
                    side,
                    load: None,
                    next_run,
                };
                bench.connect(clients)?;
                let sat = sweep_side(&mut bench, rep, start, &tools, &cfg, &mut levels)?;
                if kind == Kind::Fanfare {
                    fanfare_sat = Some(sat);
                }
                let reference = fanfare_sat.unwrap_or(sat);
                if reference > 0.0 {
                    for &pct in &settings.points {
                        let level =
                            bench.level(rep, &format!("p{pct}"), reference * pct as f64 / 100.0)?;
                        levels.push(level);
                        bench.heal(|| Side::start(kind, &tools, &cfg))?;
                    }
                }
                next_run = bench.next_run;
                bench.disconnect();
            }
        }
        // Write what is measured so far (a long run interrupted keeps it).
        report::write(&settings, &levels, &out_dir, &header)?;
    }
    let md = report::write(&settings, &levels, &out_dir, &header)?;
    println!("{md}");
    eprintln!("fanout: results in {}", out_dir.display());
    Ok(())
}

/// Coarse steps up from `start` until a level fails, then bisection;
/// returns the best sustained deliveries/s (0 when none passed).
fn sweep_side(
    bench: &mut Bench<'_>,
    rep: usize,
    start: f64,
    tools: &Tools,
    cfg: &SideConfig,
    levels: &mut Vec<Level>,
) -> Result<f64> {
    let s = bench.settings;
    let kind = bench.side.kind;
    let mut pass_rate = 0.0f64;
    let mut best = 0.0f64;
    let mut fail_rate = f64::INFINITY;
    let mut rate = start;
    while rate <= s.max_rate {
        let level = bench.level(rep, "sweep", rate)?;
        let ok = level.pass;
        if ok {
            best = best.max(level.achieved);
        }
        levels.push(level);
        bench.heal(|| Side::start(kind, tools, cfg))?;
        if ok {
            pass_rate = rate;
            rate *= s.step;
        } else {
            fail_rate = rate;
            break;
        }
    }
    if fail_rate.is_finite() && pass_rate == 0.0 {
        // Even the first level failed: step down once, by the step factor.
        let mut rate = start / s.step;
        while rate >= 1000.0 {
            let level = bench.level(rep, "sweep", rate)?;
            let ok = level.pass;
            if ok {
                best = best.max(level.achieved);
            }
            levels.push(level);
            bench.heal(|| Side::start(kind, tools, cfg))?;
            if ok {
                pass_rate = rate;
                break;
            }
            fail_rate = rate;
            rate /= s.step;
        }
    }
    if pass_rate > 0.0 && fail_rate.is_finite() {
        for _ in 0..s.refine {
            let mid = (pass_rate * fail_rate).sqrt();
            let level = bench.level(rep, "sweep", mid)?;
            let ok = level.pass;
            if ok {
                best = best.max(level.achieved);
                pass_rate = mid;
            } else {
                fail_rate = mid;
            }
            levels.push(level);
            bench.heal(|| Side::start(kind, tools, cfg))?;
        }
    }
    eprintln!(
        "  → {} saturation at C={}: {best:.0} deliveries/s",
        kind.key(),
        bench.load.as_ref().map_or(0, |l| l.conns.len())
    );
    Ok(best)
}

/// The Cargo target directory this bench binary runs from.
fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locate the bench binary")?;
    // <target>/release/deps/fanout-…
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .context("bench binary is not under <target>/<profile>/deps")
}
