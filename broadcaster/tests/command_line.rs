//! The binary's command line: help, and refusing bad settings with a clear
//! message.

use std::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn broadcaster(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_broadcaster"))
        .args(args)
        .env_remove("FANFARE_CONFIG")
        .output()
}

#[test]
fn help_lists_the_tools_and_flags() -> TestResult {
    let out = broadcaster(&["--help"])?;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "pub", "tail", "stats", "--pull", "--pub", "--replay", "--admin", "--id", "--config",
    ] {
        assert!(text.contains(word), "help lacks {word}: {text}");
    }
    Ok(())
}

#[test]
fn a_bad_origin_id_is_refused_before_binding() -> TestResult {
    let out = broadcaster(&["--id", "not valid", "--pull", "tcp://127.0.0.1:0"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("id must be"), "{err}");
    assert!(out.stdout.is_empty(), "no ready line for a refused config");
    Ok(())
}

#[test]
fn a_config_file_with_an_unknown_key_names_the_file() -> TestResult {
    let dir = std::env::temp_dir().join(format!("fanfare-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bad.toml");
    std::fs::write(&file, "histroy-count = 5\n")?;
    let out = broadcaster(&["--config", &file.to_string_lossy()])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("histroy-count"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn a_non_tcp_endpoint_is_refused() -> TestResult {
    let out = broadcaster(&["--pull", "ipc:///tmp/x"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only TCP"));
    Ok(())
}

#[test]
fn replay_budgets_are_flags_and_are_checked() -> TestResult {
    let out = broadcaster(&["--help"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--replay-max-messages",
        "--replay-scan-entries",
        "--replay-workers",
        "--replay-inflight-bytes",
        "--replay-write-timeout-ms",
    ] {
        assert!(text.contains(flag), "help lacks {flag}");
    }
    let out = broadcaster(&["--replay-workers", "0", "--pull", "tcp://127.0.0.1:0"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("replay-workers must be 1..=256"), "{err}");
    assert!(out.stdout.is_empty(), "no ready line for a refused config");
    Ok(())
}
