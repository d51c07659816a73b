//! Where the broadcaster's settings come from, against the real binary:
//! a flag beats the environment, the environment beats the config file, and
//! the file beats the built-in default. One process, three keys:
//!
//! | key             | file      | env (`FANFARE_…`) | flag        | expected          |
//! |-----------------|-----------|-------------------|-------------|-------------------|
//! | `id`            | from-file | from-env          | `--id` flag | from-flag         |
//! | `history-count` | 5         | 7                 | —           | 7                 |
//! | `max-payload`   | 100       | —                 | —           | 100 (not 1 MiB)   |

use anyhow::{ensure, Result};
use bytes::Bytes;
use fanfare_tests::binary::log_dir;
use fanfare_tests::http::http_get_ok;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::wait::eventually;
use fanfare_tests::{sockets, RECV_TIMEOUT};

#[tokio::test]
async fn flag_beats_env_beats_file_beats_default() -> Result<()> {
    let dir = log_dir();
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("config-precedence-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "id = \"from-file\"\nhistory-count = 5\nmax-payload = 100\n",
    )?;
    let path = file.to_string_lossy().into_owned();
    let b = BroadcasterProcess::spawn_with_env(
        &["--config", &path, "--id", "from-flag"],
        &[("FANFARE_ID", "from-env"), ("FANFARE_HISTORY_COUNT", "7")],
    )
    .await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    for _ in 0..20 {
        sockets::publish(&mut push, "cfg.x", Bytes::from(vec![b'k'; 50])).await?;
    }
    sockets::publish(&mut push, "cfg.big", Bytes::from(vec![b'k'; 200])).await?;
    let admin = b.endpoints().admin_addr()?.to_owned();
    let stats = eventually(
        RECV_TIMEOUT,
        "21 messages taken or refused, 20 stamped",
        || {
            let admin = admin.clone();
            async move {
                let text = http_get_ok(&admin, "/stats").await.ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                let rejected: u64 = v["ingress"]["rejected"]
                    .as_object()?
                    .values()
                    .filter_map(serde_json::Value::as_u64)
                    .sum();
                // Taken by ingress is not yet stamped into history: wait for both.
                let stamped = v["last_seq"].as_u64()?;
                (v["ingress"]["messages"].as_u64()? + rejected >= 21 && stamped >= 20).then_some(v)
            }
        },
    )
    .await?;
    let _ = std::fs::remove_file(&file);
    ensure!(
        stats["id"] == "from-flag",
        "flag beats env and file: {stats}"
    );
    ensure!(
        stats["history"]["messages"] == 7,
        "env beats file (history-count 7, not 5): {stats}"
    );
    ensure!(
        stats["ingress"]["messages"] == 20,
        "file beats default (max-payload 100 refuses the 200-byte payload): {stats}"
    );
    Ok(())
}

/// Link names in `/stats`, in order.
async fn link_names(b: &BroadcasterProcess) -> Result<Vec<String>> {
    let text = http_get_ok(b.endpoints().admin_addr()?, "/stats").await?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(v["links"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Federation peers: `--peer` (repeatable) beats `FANFARE_PEERS` (a
/// comma-separated list), which beats the file's `[[peer]]` tables.
#[tokio::test]
async fn peers_flag_beats_env_beats_file() -> Result<()> {
    let dir = log_dir();
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("config-peers-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "hop-limit = 3\n[[peer]]\npub = \"tcp://127.0.0.1:9\"\nname = \"from-file\"\nreplay = \"tcp://127.0.0.1:10\"\n",
    )?;
    let path = file.to_string_lossy().into_owned();
    let env = [("FANFARE_PEERS", "tcp://127.0.0.1:11,tcp://127.0.0.1:12")];
    let from_file = BroadcasterProcess::spawn(&["--config", &path]).await?;
    ensure!(link_names(&from_file).await? == ["from-file"]);
    let from_env = BroadcasterProcess::spawn_with_env(&["--config", &path], &env).await?;
    ensure!(link_names(&from_env).await? == ["tcp://127.0.0.1:11", "tcp://127.0.0.1:12"]);
    let from_flag = BroadcasterProcess::spawn_with_env(
        &[
            "--config",
            &path,
            "--peer",
            "tcp://127.0.0.1:13",
            "--peer",
            "tcp://127.0.0.1:14",
        ],
        &env,
    )
    .await?;
    ensure!(link_names(&from_flag).await? == ["tcp://127.0.0.1:13", "tcp://127.0.0.1:14"]);
    let _ = std::fs::remove_file(&file);
    Ok(())
}
