//! A real browser (Debian's chromium, driven by playwright-core from
//! `tests/browser/`): two pages of the demo on two different workers, a
//! chat message sent in one appears in the other's DOM; the second page,
//! held offline while the first publishes, must get the messages by a real
//! resume (recovered, replayed), each once. Screenshots land in
//! target/test-artifacts/.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in `tests/browser`. Outside CI a
//! missing piece skips the test with a SKIPPED line that `cargo test` shows;
//! under CI (any non-empty `CI`) it fails.

use std::time::Duration;

use fanfare_tests::browser;
use fanfare_tests::demo::Demo;

#[tokio::test]
async fn two_pages_in_chromium_see_each_others_chat() -> anyhow::Result<()> {
    let root = fanfare_tests::binary::workspace_root();
    let browser_dir = browser::browser_dir();
    if let Some(why) = browser::missing_prerequisite(&browser_dir) {
        return fanfare_tests::skip::skip(
            "hub_browser::two_pages_in_chromium_see_each_others_chat",
            &why,
        );
    }
    let demo = Demo::start(&["--workers", "2"]).await?;
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("two_pages.mjs"))
        .arg(&demo.base)
        .env("ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("browser ok"),
        "browser script failed"
    );
    assert!(artifacts.join("browser-chat.png").exists());
    Ok(())
}
