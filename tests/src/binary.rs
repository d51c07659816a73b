//! Where the `broadcaster` binary, the workspace and the log folder are.
//!
//! Integration tests of this package do not get the binary of another
//! package built for them, so [`broadcaster_binary`] looks next to the test
//! executable (`target/<profile>/broadcaster`) and, when it is missing or
//! older than the sources, builds it once per test process with
//! `cargo build -p fanfare-broadcaster --bin broadcaster`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

/// This package's folder (`tests/`): `CARGO_MANIFEST_DIR` as cargo and
/// nextest set it when they *run* the test (right even when the executable
/// was built from another checkout sharing the target dir), else as it was
/// at build time.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    package_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The profile folder of the running test executable (`target/debug`).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    // target/<profile>/deps/<test-exe>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("test executable has no target/<profile>/deps parent")
}

/// `target/test-logs`, created on demand; child process logs go there.
pub fn log_dir() -> PathBuf {
    let dir = profile_dir()
        .ok()
        .and_then(|p| p.parent().map(|t| t.join("test-logs")))
        .unwrap_or_else(|| std::env::temp_dir().join("fanfare-test-logs"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Path of the `broadcaster` binary, built once per process if missing or stale.
pub fn broadcaster_binary() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locate_or_build() -> Result<PathBuf> {
    let profile = profile_dir()?;
    let bin = profile.join("broadcaster");
    if bin.is_file() && !is_stale(&bin) {
        return Ok(bin);
    }
    let target = profile
        .parent()
        .context("profile dir has no target parent")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "fanfare-broadcaster", "--bin", "broadcaster"])
        .env("CARGO_TARGET_DIR", target);
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    eprintln!("fanfare-tests: building the broadcaster binary: {cmd:?}");
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the broadcaster failed: {status}");
    }
    if !bin.is_file() {
        bail!("cargo build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// True when a source file of the broadcaster or the protocol is newer than `bin`.
fn is_stale(bin: &Path) -> bool {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    let root = workspace_root();
    ["broadcaster", "protocol"]
        .iter()
        .any(|c| newest_mtime(&root.join(c)).is_some_and(|t| t > built))
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}
