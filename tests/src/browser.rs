//! The real-browser tests' common part: what they need (Debian's Chromium,
//! node, playwright-core from `npm ci` in `tests/browser`) and where the
//! scripts live. Each test runs one script of `tests/browser` with node.

use std::path::{Path, PathBuf};

/// `tests/browser`, where the scripts and their `node_modules` are.
pub fn browser_dir() -> PathBuf {
    crate::binary::workspace_root().join("tests/browser")
}

/// Why the browser tests cannot run here, if they cannot (for
/// [`crate::skip::skip`]).
pub fn missing_prerequisite(browser_dir: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} not found (apt-get install chromium)"));
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        return Some("tests/browser/node_modules missing (npm ci in tests/browser)".into());
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node not found".into());
    }
    None
}
