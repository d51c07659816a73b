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
    let stats = eventually(RECV_TIMEOUT, "21 messages taken or refused", || {
        let admin = admin.clone();
        async move {
            let text = http_get_ok(&admin, "/stats").await.ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            let rejected: u64 = v["ingress"]["rejected"]
                .as_object()?
                .values()
                .filter_map(serde_json::Value::as_u64)
                .sum();
            (v["ingress"]["messages"].as_u64()? + rejected >= 21).then_some(v)
        }
    })
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
