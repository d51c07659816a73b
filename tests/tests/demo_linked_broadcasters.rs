//! `fanfare-demo-web --broadcaster A --broadcaster B` with two running
//! broadcasters already linked both ways by their own `--peer`: every
//! worker's client gets both (its preferred one first, spread over the
//! workers), the Fabric view's numbers cover both broadcasters and their
//! links, and when the broadcaster one worker prefers is SIGKILLed
//! mid-stream, websockets on both workers keep receiving every event
//! exactly once, in order.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fanfare_tests::demo::Demo;
use fanfare_tests::fabric::Fabric;
use fanfare_tests::websocket::Ws;
use serde_json::{json, Value};

const N: i64 = 60;

/// `/api/info` of every worker (retries until the kernel picked each).
async fn infos(demo: &Demo, workers: usize) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for _ in 0..300 {
        let r = demo.get("/api/info").await?;
        let body = r.split("\r\n\r\n").nth(1).context("no body")?;
        let v: Value = serde_json::from_str(body)?;
        out.insert(v["worker"].as_str().context("worker")?.to_owned(), v);
        if out.len() == workers {
            return Ok(out);
        }
    }
    bail!("reached only {:?}", out.keys())
}

/// Reads `ws` until an event with `data.i == last`; the `i`s of `t.*`
/// events in arrival order. A `gap` fails: nothing is lost in a failover
/// (a re-sent copy is no hole either).
async fn indices_until(ws: &mut Ws, last: i64) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    loop {
        let v = ws.recv().await?;
        anyhow::ensure!(v["op"] != "gap", "a gap during the failover: {v}");
        if v["op"] != "event" {
            continue;
        }
        let Some(i) = v["data"]["i"].as_i64() else {
            continue;
        };
        if i >= 0 {
            out.push(i);
        }
        if i == last {
            return Ok(out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_gets_every_linked_broadcaster_and_survives_a_kill() -> Result<()> {
    let mut f = Fabric::start(2, &[(0, 1), (1, 0)], &[]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    let spec = |i: usize| -> Result<String> {
        let e = f.nodes[i].endpoints();
        Ok(format!(
            "pull={},pub={},replay={},admin={}",
            e.pull,
            e.publish,
            e.replay,
            e.admin_addr()?
        ))
    };
    let (s0, s1) = (spec(0)?, spec(1)?);
    let demo = Demo::start(&[
        "--workers",
        "2",
        "--broadcaster",
        &s0,
        "--broadcaster",
        &s1,
        "--publish-rate",
        "500",
    ])
    .await?;
    let pub0 = f.nodes[0].endpoints().publish.clone();
    let pub1 = f.nodes[1].endpoints().publish.clone();
    let info = infos(&demo, 2).await?;
    ensure!(
        info["w1"]["broadcasters"] == json!([pub0, pub1]),
        "w1 gets both, b0 first: {}",
        info["w1"]
    );
    ensure!(
        info["w2"]["broadcasters"] == json!([pub1, pub0]),
        "w2 gets both, b1 first: {}",
        info["w2"]
    );

    // The Fabric view's numbers: both broadcasters, with their links up.
    let mut dash = Ws::connect(&demo.ws_url()).await?;
    dash.subscribe(&["metrics.broadcaster.*"], None).await?;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        ensure!(Instant::now() < deadline, "dashboard saw only {seen:?}");
        let v = dash.recv().await?;
        let d = &v["data"];
        if v["op"] == "event" && d["up"] == true && d["links"][0]["state"] == "up" {
            seen.insert(d["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    drop(dash);

    let mut wss = demo.one_per_worker(2).await?;
    wss.sort_by(|a, b| a.worker.cmp(&b.worker));
    for ws in &mut wss {
        ws.subscribe(&["lk.#"], None).await?;
    }
    // Warm-up: both hear what w1 publishes.
    let mut heard = [false, false];
    for _ in 0..50 {
        wss[0].publish("lk.x", json!({"i": -1})).await?;
        for (k, ws) in wss.iter_mut().enumerate() {
            while let Ok(v) = tokio::time::timeout(Duration::from_millis(100), ws.recv()).await {
                heard[k] |= v?["data"]["i"] == -1;
            }
        }
        if heard == [true, true] {
            break;
        }
    }
    ensure!(heard == [true, true], "warm-up: {heard:?}");

    // w1 (preferring b0) publishes; b0 is SIGKILLed half-way.
    for i in 0..N / 2 {
        wss[0].publish("lk.x", json!({"i": i})).await?;
    }
    f.nodes[0].sigkill()?;
    let killed = Instant::now();
    for i in N / 2..N {
        wss[0].publish("lk.x", json!({"i": i})).await?;
        tokio::time::sleep(Duration::from_millis(20)).await; // a paced stream
    }
    for ws in &mut wss {
        let got = indices_until(ws, N - 1).await?;
        let want: Vec<i64> = (0..N).collect();
        ensure!(
            got == want,
            "{}: every event once, in order; got {got:?}",
            ws.worker
        );
    }
    eprintln!(
        "--broadcaster ×2: b0 SIGKILLed after {} of {N} events; both workers delivered all {N} once, in order, {:?} after the kill",
        N / 2,
        killed.elapsed()
    );
    Ok(())
}
