//! The hub's feed follows its browsers' interest (the real demo, one
//! broadcaster): a worker takes in only the rooms its browsers subscribe
//! to, with no wait on the seqs it filters; a room new to a worker misses
//! nothing published after `subscribed`; and a resume of a room the worker
//! did not carry comes from the broadcaster's history, not from a ring
//! that never held it. With federation (no watermarks for relayed
//! origins), the feed turns back to everything without a false gap,
//! whether the link is up from the start or comes up while it follows.

use std::time::Duration;

use fanfare_client::{Client, ClientOptions};
use fanfare_tests::demo::{metric, Demo};
use fanfare_tests::fabric::Fabric;
use fanfare_tests::websocket::Ws;
use serde_json::json;

/// The hub's reorder waits 8 s for a hole before calling it lost: every
/// event here must come well within that, or the feed waited on a seq it
/// had filtered.
const PROMPT: Duration = Duration::from_secs(4);

async fn recv_within(c: &mut Ws, within: Duration) -> anyhow::Result<serde_json::Value> {
    tokio::time::timeout(within, c.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no frame within {within:?}"))?
}

async fn counter(demo: &Demo, worker: &str, name: &str) -> anyhow::Result<u64> {
    let text = demo.metrics_of(worker).await?;
    metric(&text, &format!("{name}{{")).ok_or_else(|| anyhow::anyhow!("no {name} in {text}"))
}

#[tokio::test]
async fn a_worker_takes_in_only_what_its_browsers_subscribe_to() -> anyhow::Result<()> {
    const ROOMS: u64 = 10;
    const ROUNDS: u64 = 30;
    let demo = Demo::start(&["--workers", "2", "--publish-rate", "10000"]).await?;
    let mut clients = demo.one_per_worker(2).await?;
    let mut publisher = demo.connect_where(|_| true).await?;
    clients[0].subscribe(&["room.1"], None).await?;
    clients[1].subscribe(&["room.2"], None).await?;
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for c in &clients {
            v.push(counter(&demo, &c.worker, "fanfare_hub_events_in_total").await?);
        }
        v
    };
    for round in 0..ROUNDS {
        for room in 0..ROOMS {
            publisher
                .publish(&format!("room.{room}"), json!({ "i": round }))
                .await?;
        }
    }
    for (c, room) in clients.iter_mut().zip(["room.1", "room.2"]) {
        for i in 0..ROUNDS {
            let ev = recv_within(c, PROMPT).await?;
            assert_eq!(ev["op"], "event", "{ev}");
            assert_eq!(ev["topic"], room, "{ev}");
            assert_eq!(ev["data"]["i"], i, "{ev}");
        }
    }
    for (c, b) in clients.iter().zip(before) {
        let taken = counter(&demo, &c.worker, "fanfare_hub_events_in_total").await? - b;
        eprintln!(
            "FIGURE interest: worker {} took in {taken} of {} events ({ROUNDS} for its room)",
            c.worker,
            ROOMS * ROUNDS
        );
        // Its own room's events and perhaps a few published before the
        // feed narrowed; never the other rooms' (ROOMS × as many).
        assert!(
            taken < 2 * ROUNDS,
            "worker {} took in {taken} events for {ROUNDS} wanted",
            c.worker
        );
        assert!(counter(&demo, &c.worker, "fanfare_hub_feed_changes_total").await? >= 1);
    }
    Ok(())
}

/// Each room is new to the worker, so each `subscribe` changes the feed:
/// the event published right after `subscribed` must come. (That the
/// answer waits for the broadcaster is checked where a race cannot hide
/// it: `client_sessions`' `set_patterns_takes_effect_once_it_resolves`,
/// and the resume test below, which fails without the wait.)
#[tokio::test]
async fn a_room_new_to_the_worker_misses_nothing_after_subscribed() -> anyhow::Result<()> {
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "10000"]).await?;
    let mut publisher = demo.connect_where(|_| true).await?;
    let mut watcher = demo.connect_where(|_| true).await?;
    for k in 0..20 {
        let room = format!("fresh.{k}");
        let v = watcher.subscribe(&[room.as_str()], None).await?;
        assert_eq!(v["op"], "subscribed", "{v}");
        publisher.publish(&room, json!({ "k": k })).await?;
        let ev = recv_within(&mut watcher, PROMPT).await?;
        assert_eq!(
            (ev["op"].as_str(), ev["topic"].as_str()),
            (Some("event"), Some(room.as_str())),
            "{ev}"
        );
        assert_eq!(ev["data"]["k"], k, "{ev}");
    }
    Ok(())
}

#[tokio::test]
async fn a_resume_of_a_room_the_worker_did_not_carry_comes_from_history() -> anyhow::Result<()> {
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "10000"]).await?;
    let mut publisher = demo.connect_where(|_| true).await?;
    let mut a = demo.connect_where(|_| true).await?;
    a.subscribe(&["room.a"], None).await?;
    publisher.publish("room.a", json!({ "i": 0 })).await?;
    let ev = recv_within(&mut a, PROMPT).await?;
    let pos = ev["pos"].as_str().unwrap_or_default().to_owned();
    assert!(!pos.is_empty(), "{ev}");
    // Nobody on this worker wants room.b: the feed does not carry it, and
    // the ring never holds these.
    for i in 0..5 {
        publisher.publish("room.b", json!({ "i": i })).await?;
    }
    publisher.publish("room.a", json!({ "i": 1 })).await?;
    let ev = recv_within(&mut a, PROMPT).await?;
    assert_eq!(ev["data"]["i"], 1, "{ev}");
    let mut b = demo.connect_where(|_| true).await?;
    let (part, v) = b.resume(&["room.b"], &pos, 100).await?;
    let got: Vec<_> = part.iter().map(|e| e["data"]["i"].clone()).collect();
    assert_eq!(
        got,
        (0..5).map(|i| json!(i)).collect::<Vec<_>>(),
        "{part:?}"
    );
    assert_eq!(v["recovered"], true, "{v}");
    Ok(())
}

/// A `subscribe` refused for a bad `since` holds nothing: its patterns
/// never reach the feed. (They did: the interest was held before `since`
/// was parsed and never released, so requests that were all refused could
/// widen a worker's feed without bound, past the hub's pattern caps.)
#[tokio::test]
async fn a_refused_subscribe_leaves_the_feed_as_it_was() -> anyhow::Result<()> {
    const N: u64 = 30;
    let demo = Demo::start(&["--workers", "1", "--publish-rate", "10000"]).await?;
    let mut publisher = demo.connect_where(|_| true).await?;
    let mut watcher = demo.connect_where(|_| true).await?;
    watcher.subscribe(&["probe.w"], None).await?;
    let mut refused = demo.connect_where(|_| true).await?;
    refused
        .send(&json!({"op": "subscribe", "topics": ["leak.a", "leak.b"], "since": "nonsense"}))
        .await?;
    let v = recv_within(&mut refused, PROMPT).await?;
    assert_eq!(
        (v["op"].as_str(), v["code"].as_str()),
        (Some("error"), Some("bad_since")),
        "{v}"
    );
    let worker = watcher.worker.clone();
    let before = counter(&demo, &worker, "fanfare_hub_events_in_total").await?;
    for i in 0..N {
        publisher.publish("leak.a", json!({ "i": i })).await?;
    }
    publisher.publish("probe.w", json!({})).await?;
    let ev = recv_within(&mut watcher, PROMPT).await?;
    assert_eq!(ev["topic"], "probe.w", "{ev}");
    let taken = counter(&demo, &worker, "fanfare_hub_events_in_total").await? - before;
    assert!(
        taken < N,
        "the worker took in {taken} events of a pattern only a refused request named"
    );
    Ok(())
}

/// A one-worker demo on broadcaster `node` of `f`, and a client on each of
/// the two broadcasters: (the far one, the near one).
async fn demo_on_fabric(f: &Fabric, node: usize) -> anyhow::Result<(Demo, Client, Client)> {
    let e = f.nodes[node].endpoints();
    let spec = format!(
        "pull={},pub={},replay={},admin={}",
        e.pull,
        e.publish,
        e.replay,
        e.admin_addr()?
    );
    let demo = Demo::start(&[
        "--workers",
        "1",
        "--broadcaster",
        &spec,
        "--publish-rate",
        "10000",
    ])
    .await?;
    let client_of = |i: usize| {
        let e = f.nodes[i].endpoints();
        ClientOptions::new(e.pull.clone(), e.publish.clone(), e.replay.clone())
    };
    let far = Client::connect(client_of(1 - node)).await?;
    let near = Client::connect(client_of(node)).await?;
    Ok((demo, far, near))
}

/// With `ws` subscribed to `fed.#` on the near broadcaster: once the far
/// origin's events reach the worker, N events of each origin interleaved
/// with events of other rooms (holes in both origins' seqs) all come,
/// promptly and in order, with no gap told then or later.
async fn both_origins_come_in_order(
    far: &Client,
    near: &Client,
    ws: &mut Ws,
) -> anyhow::Result<()> {
    const N: u64 = 50;
    // Until the far origin's interest reached it: warm up.
    let mut heard = false;
    for _ in 0..100 {
        far.publish("fed.warm", "{\"i\":-1}").await?;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(100), ws.recv()).await {
            let v = v?;
            assert_ne!(v["op"], "gap", "{v}");
            heard |= v["topic"] == "fed.warm";
        }
        if heard {
            break;
        }
    }
    anyhow::ensure!(heard, "the relayed origin never reached the worker");
    for i in 0..N {
        far.publish("fed.far", format!("{{\"i\":{i}}}")).await?;
        // Seqs of the relayed origin the feed does not want: holes.
        far.publish("other.y", "{}").await?;
        near.publish("other.x", "{}").await?;
        near.publish("fed.near", format!("{{\"i\":{i}}}")).await?;
    }
    let (mut far_next, mut near_next) = (0, 0);
    while far_next < N || near_next < N {
        let v = recv_within(ws, PROMPT).await?;
        assert_ne!(v["op"], "gap", "a false gap: {v}");
        match v["topic"].as_str() {
            Some("fed.warm") => {}
            Some("fed.far") => {
                assert_eq!(v["data"]["i"], far_next, "{v}");
                far_next += 1;
            }
            Some("fed.near") => {
                assert_eq!(v["data"]["i"], near_next, "{v}");
                near_next += 1;
            }
            _ => anyhow::bail!("unexpected {v}"),
        }
    }
    // Nothing late: a gap would come within the reorder's wait.
    while let Ok(v) = tokio::time::timeout(Duration::from_secs(9), ws.recv()).await {
        let v = v?;
        assert!(
            v["op"] != "gap" && v["topic"] == "fed.warm",
            "after the run: {v}"
        );
    }
    Ok(())
}

/// A worker whose one broadcaster relays another's origin (federation):
/// the feed has no watermarks for that origin, so on its first message the
/// feed goes back to carrying everything. Every event of both origins
/// comes, promptly and in order, and no seq of the relayed origin that the
/// feed had filtered is told lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_origin_turns_the_feed_back_to_everything_without_a_false_gap(
) -> anyhow::Result<()> {
    let f = Fabric::start(2, &[(0, 1), (1, 0)], &[]).await?;
    f.wait_links_up(Duration::from_secs(20)).await?;
    let (demo, far, near) = demo_on_fabric(&f, 1).await?;
    let mut ws = demo.connect_where(|_| true).await?;
    ws.subscribe(&["fed.#"], None).await?;
    // Other rooms of the local origin, filtered by the feed meanwhile.
    for i in 0..20 {
        near.publish("other.x", format!("{{\"i\":{i}}}")).await?;
    }
    both_origins_come_in_order(&far, &near, &mut ws).await
}

/// The same when the federation link comes up only after the feed has
/// narrowed to the browsers' interest: the hub is following (it took in
/// none of the other rooms), then the far origin's first relayed heartbeat
/// or message turns it back, with the far origin's filtered seqs already
/// in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_comes_up_while_the_feed_follows_interest_tells_no_false_gap(
) -> anyhow::Result<()> {
    // b1 --peer b0, the link cut before any demo exists.
    let f = Fabric::start(2, &[(1, 0)], &[]).await?;
    f.links[0].proxy.cut();
    let (demo, far, near) = demo_on_fabric(&f, 1).await?;
    let mut ws = demo.connect_where(|_| true).await?;
    ws.subscribe(&["fed.#"], None).await?;
    let worker = ws.worker.clone();
    let changes = counter(&demo, &worker, "fanfare_hub_feed_changes_total").await?;
    anyhow::ensure!(changes >= 1, "the feed never narrowed");
    let taken_before = counter(&demo, &worker, "fanfare_hub_events_in_total").await?;
    for i in 0..20 {
        near.publish("other.x", format!("{{\"i\":{i}}}")).await?;
    }
    near.publish("fed.probe", "{}").await?;
    let v = recv_within(&mut ws, PROMPT).await?;
    assert_eq!(v["topic"], "fed.probe", "{v}");
    let taken = counter(&demo, &worker, "fanfare_hub_events_in_total").await? - taken_before;
    anyhow::ensure!(
        taken < 20,
        "the feed was not following interest: it took in {taken} events for 1 wanted"
    );
    f.links[0].proxy.restore();
    f.wait_links_up(Duration::from_secs(20)).await?;
    both_origins_come_in_order(&far, &near, &mut ws).await?;
    let turned = counter(&demo, &worker, "fanfare_hub_feed_changes_total").await?;
    anyhow::ensure!(
        turned > changes,
        "the feed never turned back to everything ({turned} changes)"
    );
    Ok(())
}
