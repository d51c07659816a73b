//! Finding a Python interpreter with pyzmq (real libzmq) for interop tests.
//!
//! Looks at `FANFARE_PYTHON`, then `.venv/bin/python` at the workspace root
//! (what `.ci/run` creates). When none has pyzmq: under CI (any non-empty
//! `CI`) the test fails loudly; elsewhere it is skipped with a SKIPPED line
//! that `cargo test` shows (see [`crate::skip`]).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::binary::workspace_root;

/// A Python with `import zmq` working, or `None` (test should return early).
///
/// # Panics
/// Under CI (any non-empty `CI`) when no such Python is found.
pub fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("FANFARE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace_root().join(".venv/bin/python")])
        .collect();
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import zmq"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(p.clone());
        }
    }
    let msg = format!(
        "no Python with pyzmq found (tried {candidates:?}); \
         create it with `python3 -m venv .venv && .venv/bin/pip install pyzmq` \
         at the workspace root or set FANFARE_PYTHON"
    );
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a pyzmq test");
    if let Err(e) = crate::skip::skip(test, &msg) {
        panic!("{e}");
    }
    None
}

/// Path of a script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    crate::binary::package_dir().join("python").join(name)
}

/// Runs `tests/python/<name>` with `args` under `py`, at most `timeout`;
/// fails (with both output streams) unless it exits 0. Returns stdout.
pub async fn run_script(
    py: &std::path::Path,
    name: &str,
    args: &[&str],
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(script(name)).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .with_context(|| format!("{name} did not finish within {timeout:?}"))?
        .with_context(|| format!("running {name}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        anyhow::bail!(
            "{name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}
