//! The binaries the tests run (`broadcaster`, `fanfare-demo-web`), built on
//! first use; and where the workspace and the log folder are.
//!
//! Cargo builds a package's own binaries for its integration tests
//! (`CARGO_BIN_EXE_*`), never another package's. So the first time a test
//! process asks for a binary, [`broadcaster_binary`] or [`demo_binary`] runs
//! `cargo build -p <package> --bin <name>` with the test executable's target
//! dir and profile, and takes the path cargo reports for the artifact. Cargo
//! decides what is stale (a fresh binary costs a no-op build); its lock on the
//! target dir serialises test processes building at once, and a `OnceLock`
//! per binary makes one process build it once however many tests ask.
//! `FANFARE_BROADCASTER_BIN` / `FANFARE_DEMO_BIN` name a prebuilt binary
//! instead (no build).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

/// A binary of a workspace package that tests run as a child process.
struct Binary {
    /// Cargo package (`-p`).
    package: &'static str,
    /// Binary target (`--bin`).
    name: &'static str,
    /// Environment variable naming a prebuilt binary instead.
    env: &'static str,
}

/// Path of the `broadcaster` binary, built (if stale) once per process.
pub fn broadcaster_binary() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(
        &BIN,
        &Binary {
            package: "fanfare-broadcaster",
            name: "broadcaster",
            env: "FANFARE_BROADCASTER_BIN",
        },
    )
}

/// Path of the `fanfare-demo-web` binary, built (if stale) once per process.
pub fn demo_binary() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(
        &BIN,
        &Binary {
            package: "fanfare-demo-web",
            name: "fanfare-demo-web",
            env: "FANFARE_DEMO_BIN",
        },
    )
}

/// The first caller builds; concurrent callers wait for it; later ones get
/// the same answer (a failed build is not retried).
fn once(cell: &OnceLock<Result<PathBuf, String>>, bin: &Binary) -> Result<PathBuf> {
    cell.get_or_init(|| locate_or_build(bin).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locate_or_build(bin: &Binary) -> Result<PathBuf> {
    if let Some(prebuilt) = std::env::var_os(bin.env) {
        return Ok(PathBuf::from(prebuilt));
    }
    let profile = profile_dir()?;
    let target = profile
        .parent()
        .context("profile dir has no target parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .args(["-p", bin.package, "--bin", bin.name])
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // target/debug is the dev (and test) profile; other folders are named
    // after their profile (bench builds land in target/release).
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exe = stdout
        .lines()
        .find_map(|line| executable_of(line, bin.name))
        .with_context(|| format!("{cmd:?} reported no executable for {}", bin.name))?;
    if !exe.is_file() {
        bail!("cargo built {} but it is missing", exe.display());
    }
    Ok(exe)
}

/// The `executable` of a `compiler-artifact` message for binary `name`
/// (one line of `cargo build --message-format=json`).
fn executable_of(line: &str, name: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    let target = &msg["target"];
    let is_bin = target["kind"]
        .as_array()
        .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
    (msg["reason"] == "compiler-artifact" && target["name"] == name && is_bin)
        .then(|| msg["executable"].as_str().map(PathBuf::from))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"broadcaster"},"executable":"/t/debug/broadcaster","fresh":true}"#;
        assert_eq!(
            executable_of(line, "broadcaster"),
            Some(PathBuf::from("/t/debug/broadcaster"))
        );
        assert_eq!(executable_of(line, "other"), None);
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"broadcaster"},"executable":null}"#;
        assert_eq!(executable_of(lib, "broadcaster"), None);
        assert_eq!(executable_of("not json", "broadcaster"), None);
    }
}
