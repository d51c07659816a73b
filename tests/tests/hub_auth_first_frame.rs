//! `auth_in_first_frame` against the real demo (`--auth-token`,
//! `--auth-in-first-frame`): websockets that open without a token and never
//! send `auth` are closed with a readable 4003 within the deadline and are
//! no longer counted; one that authenticates works and stays; a wrong token
//! gets `forbidden` then 4003.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fanfare_tests::demo::{metric, Demo};
use fanfare_tests::websocket::Ws;
use serde_json::json;

const DEADLINE: Duration = Duration::from_millis(1500);

async fn open_connections(demo: &Demo, worker: &str) -> Result<u64> {
    let label = format!("fanfare_hub_connections_open{{worker=\"{worker}\"}}");
    metric(&demo.metrics_of(worker).await?, &label).context("no connections_open")
}

#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed_with_4003_in_time() -> Result<()> {
    let demo = Demo::start(&[
        "--workers",
        "1",
        "--auth-token",
        "s3cret",
        "--auth-in-first-frame",
        "--auth-timeout-ms",
        "1500",
    ])
    .await?;
    // A token in the upgrade is checked there: a wrong one is refused (401).
    let refused = Ws::connect(&format!("{}?token=nope", demo.ws_url())).await;
    assert!(refused.is_err(), "a wrong upgrade token was accepted");

    // One that authenticates in its first frame works, and stays past the deadline.
    let mut good = Ws::connect(&demo.ws_url()).await?;
    let worker = good.worker.clone();
    good.send(&json!({"op": "auth", "token": "s3cret", "ref": 1}))
        .await?;
    let v = good.recv().await?;
    assert_eq!(
        (&v["op"], &v["ref"]),
        (&json!("authorized"), &json!(1)),
        "{v}"
    );
    good.subscribe(&["auth.#"], None).await?;
    let base = open_connections(&demo, &worker).await?;

    // 20 that never authenticate (each subscribes: refused until it does).
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..20 {
        let mut ws = Ws::connect(&demo.ws_url()).await?;
        ws.send(&json!({"op": "subscribe", "topics": ["auth.#"]}))
            .await?;
        let v = ws.recv().await?;
        assert_eq!(
            (&v["op"], &v["code"]),
            (&json!("error"), &json!("forbidden")),
            "{v}"
        );
        silent.push(ws);
    }
    let during = open_connections(&demo, &worker).await?;
    assert_eq!(during, base + 20, "the silent ones are counted while open");
    let mut cut = Vec::new();
    for ws in &mut silent {
        let close = ws
            .close_code(Duration::from_secs(5))
            .await?
            .context("no close frame")?;
        assert_eq!(u16::from(close.code), 4003, "{close:?}");
        cut.push(opened.elapsed());
    }
    let (first, last) = (cut[0], cut[cut.len() - 1]);
    // Each is cut after the deadline, not before, and soon after it (the
    // last one was opened up to the setup time after the first).
    assert!(first >= DEADLINE, "cut after {first:?}");
    assert!(
        last < DEADLINE + Duration::from_secs(2),
        "cut after {last:?}"
    );
    // No longer counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let n = open_connections(&demo, &worker).await?;
        if n <= base || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after, base, "the silent ones are no longer counted");

    // The authenticated one still works.
    let mut p = Ws::connect(&demo.ws_url()).await?;
    p.send(&json!({"op": "auth", "token": "s3cret"})).await?;
    assert_eq!(p.recv().await?["op"], "authorized");
    let rtt = p.round_trip(&mut good, "auth.x", 1).await?;

    // A wrong token in the first frame: `forbidden`, then 4003.
    let mut bad = Ws::connect(&demo.ws_url()).await?;
    bad.send(&json!({"op": "auth", "token": "guess"})).await?;
    let v = bad.recv().await?;
    assert_eq!(
        (&v["op"], &v["code"]),
        (&json!("error"), &json!("forbidden")),
        "{v}"
    );
    let close = bad
        .close_code(Duration::from_secs(5))
        .await?
        .context("no close frame")?;
    assert_eq!(u16::from(close.code), 4003, "{close:?}");
    eprintln!(
        "FIGURE auth in first frame: 20 silent connections cut with 4003 between {first:?} and \
         {last:?} after opening (deadline {DEADLINE:?}); open {base} → {during} → {after}; \
         authenticated round trip {rtt:?}"
    );
    Ok(())
}
