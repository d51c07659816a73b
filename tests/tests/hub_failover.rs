//! Hub resume across broadcasters, with in-process hubs whose clients know
//! two independent, real broadcasters: a browser that leaves a worker
//! attached to `a` first and resumes at a worker attached to `b` first gets
//! what it missed of both origins exactly once; when `a` is dead by then,
//! only what no reachable broadcaster holds (`a`'s range) is a `gap` with
//! `recovered:false`, and `b`'s range is still delivered once.

use std::time::Duration;

use anyhow::{ensure, Result};
use fanfare_client::hub::{Hub, HubOptions};
use fanfare_client::{Client, ClientOptions};
use fanfare_tests::client::{options, options_for};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::websocket::Ws;
use serde_json::{json, Value};

async fn broadcaster(id: &str) -> Result<BroadcasterProcess> {
    BroadcasterProcess::spawn(&["--id", id, "--heartbeat-ms", "100"]).await
}

fn quick(o: ClientOptions) -> ClientOptions {
    o.heartbeat_timeout(Duration::from_millis(600))
        .ack_timeout(Duration::from_millis(500))
        .replay_timeout(Duration::from_millis(500))
        .replay_attempts(1)
}

/// A hub (ring of 5 events) over a client of `opts`, served on port 0;
/// returns its websocket URL. It stops with the test's runtime.
async fn hub(worker: &str, opts: ClientOptions) -> Result<String> {
    let client = Client::connect(opts).await?;
    let hub = Hub::new(client, HubOptions::new(worker).ring(5, 1 << 20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, hub.router()).await });
    Ok(format!("ws://{addr}/ws"))
}

/// Merges `pos` marks (`origin:epoch:seq`) into a `since` string.
fn since(marks: &[String]) -> String {
    let mut best: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for m in marks {
        let mut p = m.rsplitn(3, ':');
        let (Some(seq), Some(epoch), Some(origin)) = (p.next(), p.next(), p.next()) else {
            continue;
        };
        let (Ok(epoch), Ok(seq)) = (epoch.parse::<u64>(), seq.parse::<u64>()) else {
            continue;
        };
        let e = best.entry(origin.to_owned()).or_insert((epoch, seq));
        *e = (*e).max((epoch, seq));
    }
    best.iter()
        .map(|(o, (e, s))| format!("{o}:{e}:{s}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// True when `ws` got warm-up events of both publishers (read until quiet
/// for 100 ms).
async fn heard_both(ws: &mut Ws) -> Result<bool> {
    let mut got = (false, false);
    while let Ok(v) = tokio::time::timeout(Duration::from_millis(100), ws.recv()).await {
        let v = v?;
        got.0 |= v["data"]["i"] == -1;
        got.1 |= v["data"]["i"] == -2;
    }
    Ok(got == (true, true))
}

/// Reads events until one with `data.i == last`; returns them.
async fn events_until(ws: &mut Ws, last: u64) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let v = ws.recv().await?;
        if v["op"] != "event" {
            continue;
        }
        let done = v["data"]["i"] == last;
        out.push(v);
        if done {
            return Ok(out);
        }
    }
}

struct Fabric {
    a: BroadcasterProcess,
    _b: BroadcasterProcess,
    _pub_a: Client,
    pub_b: Client,
    resume_url: String,
    pos: String,
}

/// Two broadcasters; worker 1 (a first) and worker 2 (b first); a browser
/// on worker 1 reads 10 events of each origin and leaves; then 20 of a and
/// 20 of b are published (b's last, so the small rings hold only b's).
async fn fabric(tag: &str) -> Result<Fabric> {
    let a = broadcaster(&format!("{tag}-a")).await?;
    let b = broadcaster(&format!("{tag}-b")).await?;
    let w1 = hub("w1", quick(options_for(&[&a, &b]))).await?;
    let w2 = hub("w2", quick(options_for(&[&b, &a]))).await?;
    let pub_a = Client::connect(options(&a)).await?;
    let pub_b = Client::connect(options(&b)).await?;
    let mut browser = Ws::connect(&w1).await?;
    let mut watcher = Ws::connect(&w2).await?;
    browser.subscribe(&["room.#"], None).await?;
    watcher.subscribe(&["room.#"], None).await?;
    // Warm up until both hubs hear both publishers.
    for k in 0.. {
        ensure!(k < 200, "hubs never heard both publishers");
        pub_a.publish_json("room.warm", &json!({ "i": -1 })).await?;
        pub_b.publish_json("room.warm", &json!({ "i": -2 })).await?;
        if heard_both(&mut browser).await? & heard_both(&mut watcher).await? {
            break;
        }
    }
    let mut marks = Vec::new();
    for i in 0..10 {
        pub_a.publish_json("room.a", &json!({ "i": i })).await?;
        pub_b
            .publish_json("room.b", &json!({ "i": 100 + i }))
            .await?;
    }
    let mut seen = std::collections::HashSet::new();
    while !(seen.contains(&9) && seen.contains(&109)) {
        let v = browser.recv().await?;
        if v["op"] == "event" {
            marks.push(v["pos"].as_str().unwrap_or_default().to_owned());
            seen.insert(v["data"]["i"].as_i64().unwrap_or(-9));
        }
    }
    drop(browser);
    for i in 10..30 {
        pub_a
            .publish_confirmed("room.a", json!({ "i": i }).to_string())
            .await?;
    }
    for i in 110..130 {
        pub_b
            .publish_confirmed("room.b", json!({ "i": i }).to_string())
            .await?;
    }
    events_until(&mut watcher, 129).await?; // worker 2 has them all
    Ok(Fabric {
        a,
        _b: b,
        _pub_a: pub_a,
        pub_b,
        resume_url: w2,
        pos: since(&marks),
    })
}

fn indices(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|v| v["data"]["i"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_at_a_worker_of_another_broadcaster_gets_both_origins_once() -> Result<()> {
    let f = fabric("hf1").await?;
    let mut ws = Ws::connect(&f.resume_url).await?;
    let (part, done) = ws.resume(&["room.#"], &f.pos, 1000).await?;
    ensure!(done["recovered"] == true, "{done} (since {})", f.pos);
    ensure!(
        part.iter().all(|v| v["op"] == "event"),
        "only events in the replayed part: {part:?}"
    );
    f.pub_b.publish_json("room.b", &json!({ "i": 130 })).await?;
    let mut got = indices(&part);
    got.extend(indices(&events_until(&mut ws, 130).await?));
    let a: Vec<i64> = got.iter().copied().filter(|i| *i < 100).collect();
    let b: Vec<i64> = got.iter().copied().filter(|i| *i >= 100).collect();
    ensure!(
        b == (110..131).collect::<Vec<_>>(),
        "b once, in order: {b:?}"
    );
    // a's events are older than worker 2's ring: they come from a's
    // history: worker 2's client lists b first, yet asks a, which
    // delivered that origin.
    ensure!(a == (10..30).collect::<Vec<_>>(), "a once, in order: {a:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_other_broadcaster_dead_only_its_range_is_a_gap() -> Result<()> {
    let mut f = fabric("hf2").await?;
    f.a.sigkill()?;
    let mut ws = Ws::connect(&f.resume_url).await?;
    let (part, done) = ws.resume(&["room.#"], &f.pos, 1000).await?;
    ensure!(
        done["recovered"] == false,
        "a's range cannot be recovered: {done}"
    );
    let gaps: Vec<&Value> = part.iter().filter(|v| v["op"] == "gap").collect();
    ensure!(gaps.len() == 1, "one gap: {part:?}");
    ensure!(
        gaps[0]["origin"]
            .as_str()
            .is_some_and(|o| o.ends_with("-a")),
        "the gap is a's: {}",
        gaps[0]
    );
    f.pub_b.publish_json("room.b", &json!({ "i": 130 })).await?;
    let mut got = indices(&part);
    got.extend(indices(&events_until(&mut ws, 130).await?));
    ensure!(
        got == (110..131).collect::<Vec<_>>(),
        "b once, in order: {got:?}"
    );
    Ok(())
}
