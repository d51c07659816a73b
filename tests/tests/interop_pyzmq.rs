//! Interop with real libzmq through pyzmq (`tests/python/interop.py`): a
//! PUSH publishes two-frame messages, a SUB subscribes by prefix and checks
//! `[topic, stamp, payload]` with the stamp decoded byte by byte as
//! PROTOCOL.md says (version, flags, hops, lane = FNV fold, epoch, seq,
//! lane seq, timestamp, origin); then a DEALER and a REQ ask the replay
//! endpoint and get the same messages byte for byte, plus the documented
//! `unknown_origin`, `unknown_epoch` and `bad_request` answers.
//!
//! Under CI (any non-empty `CI`) a missing Python/pyzmq fails the test;
//! elsewhere it skips with a SKIPPED line `cargo test` shows.

use std::time::Duration;

use anyhow::{ensure, Result};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::{python, sockets, RECV_TIMEOUT};

#[tokio::test]
async fn pyzmq_push_sub_and_replay_interoperate() -> Result<()> {
    let Some(py) = python::python() else {
        return Ok(());
    };
    let b = BroadcasterProcess::spawn(&["--id", "interop-1", "--heartbeat-ms", "100"]).await?;
    let e = b.endpoints().clone();
    let out = python::run_script(
        &py,
        "interop.py",
        &[&e.pull, &e.publish, &e.replay, "interop-1"],
        Duration::from_secs(120),
    )
    .await?;
    ensure!(out.contains("interop ok"), "script said: {out}");
    Ok(())
}

#[tokio::test]
async fn libzmq_publisher_reaches_a_zmq_rs_subscriber() -> Result<()> {
    // The other direction: what pyzmq pushes, a Rust SUB decodes.
    let Some(py) = python::python() else {
        return Ok(());
    };
    let b = BroadcasterProcess::spawn(&["--id", "interop-2"]).await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["py."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "py").await?;
    let pull = b.endpoints().pull.clone();
    python::run_script(
        &py,
        "push_lines.py",
        &[&pull, "py.lines", "50"],
        Duration::from_secs(60),
    )
    .await?;
    let mut last_seq = 0;
    for i in 0..50 {
        let m = sockets::recv_broadcast(&mut sub, RECV_TIMEOUT).await?;
        ensure!(m.topic == "py.lines", "topic {}", m.topic);
        ensure!(
            m.payload == format!("line {i}").as_bytes(),
            "payload {:?}",
            m.payload
        );
        ensure!(
            m.origin == "interop-2" && m.hops == 0 && m.meta.is_none(),
            "stamp {m:?}"
        );
        ensure!(m.seq > last_seq, "seq grows");
        last_seq = m.seq;
    }
    Ok(())
}

#[tokio::test]
async fn libzmq_zmtp_heartbeats_keep_idle_connections_up() -> Result<()> {
    // pyzmq peers with ZMQ_HEARTBEAT_IVL 50 ms / TIMEOUT 300 ms idle for 1 s
    // at a time; the broadcaster's own heartbeat is 60 s apart, so only its
    // PONGs keep them connected.
    let Some(py) = python::python() else {
        return Ok(());
    };
    let b = BroadcasterProcess::spawn(&["--id", "interop-3", "--heartbeat-ms", "60000"]).await?;
    let e = b.endpoints().clone();
    let out = match python::run_script(
        &py,
        "zmtp_heartbeat.py",
        &[&e.pull, &e.publish],
        Duration::from_secs(60),
    )
    .await
    {
        Ok(out) => out,
        Err(err) => {
            let m = match e.admin_addr() {
                Ok(addr) => fanfare_tests::metrics::fetch(addr)
                    .await
                    .unwrap_or_default(),
                Err(_) => String::new(),
            };
            let m: Vec<&str> = m.lines().filter(|l| !l.starts_with('#')).collect();
            return Err(err.context(format!("broadcaster metrics:\n{}", m.join("\n"))));
        }
    };
    ensure!(out.contains("heartbeat ok"), "script said: {out}");
    Ok(())
}
