//! The replay (history) endpoint through a zmq.rs DEALER, and heartbeats:
//! ranges in order with original stamps, pattern and lane filters, the reply
//! limit and `next`, the unrecoverable part of a range once history evicted
//! it (`--history-count`), `unknown_origin` / `unknown_epoch` /
//! `bad_request`, a new epoch after a restart, and heartbeat contents.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_protocol::heartbeat::Heartbeat;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status};
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::sockets::{self, Broadcast};
use fanfare_tests::RECV_TIMEOUT;
use zeromq::{DealerSocket, PushSocket, SubSocket};

fn range(origin: &str, epoch: u64, from: u64, to: u64) -> ReplayRequest {
    ReplayRequest {
        req_id: Bytes::from_static(b"req"),
        origin: origin.into(),
        epoch,
        from,
        to,
        lane: None,
        patterns: vec![],
    }
}

async fn ask(d: &mut DealerSocket, r: &ReplayRequest) -> Result<(ReplyHeader, Vec<Broadcast>)> {
    sockets::send_timeout(d, r.to_frames(), RECV_TIMEOUT).await?;
    let frames = sockets::recv_timeout(d, RECV_TIMEOUT).await?.into_vec();
    ensure!(frames[0] == r.req_id, "req id echoed");
    let head = ReplyHeader::from_frames(&frames).context("reply header")?;
    let msgs = frames[6..]
        .chunks(3)
        .map(Broadcast::decode)
        .collect::<Result<Vec<_>>>()?;
    Ok((head, msgs))
}

/// Publishes `n` messages on `topic_of(i)` and returns them as received live.
async fn publish_n(
    push: &mut PushSocket,
    sub: &mut SubSocket,
    n: usize,
    topic_of: impl Fn(usize) -> String,
) -> Result<Vec<Broadcast>> {
    for i in 0..n {
        sockets::publish(push, &topic_of(i), Bytes::from(format!("m{i}"))).await?;
    }
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(sockets::recv_broadcast(sub, RECV_TIMEOUT).await?);
    }
    Ok(got)
}

async fn setup(args: &[&str]) -> Result<(BroadcasterProcess, PushSocket, SubSocket, DealerSocket)> {
    let b = BroadcasterProcess::spawn(args).await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["a.", "b."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "a").await?;
    let dealer = sockets::dealer(&b.endpoints().replay).await?;
    Ok((b, push, sub, dealer))
}

#[tokio::test]
async fn ranges_filters_and_limits() -> Result<()> {
    let (_b, mut push, mut sub, mut d) =
        setup(&["--id", "replay-1", "--heartbeat-ms", "60000"]).await?;
    let live = publish_n(&mut push, &mut sub, 300, |i| {
        if i % 2 == 0 {
            format!("a.x{i}")
        } else {
            format!("b.y{i}")
        }
    })
    .await?;
    let (first, last) = (live[0].seq, live[299].seq);

    // Whole range, original stamps.
    let (h, msgs) = ask(&mut d, &range("", 0, first, last)).await?;
    ensure!(h.status == Status::Ok && h.epoch == live[0].epoch, "{h:?}");
    ensure!(h.next == last + 1 && h.newest >= last, "{h:?}");
    ensure!(msgs == live, "replayed == live, byte for byte");

    // Pattern filter.
    let mut r = range("replay-1", live[0].epoch, first, u64::MAX);
    r.patterns = vec![Pattern::parse("b.#")?];
    let (h, msgs) = ask(&mut d, &r).await?;
    ensure!(h.status == Status::Ok, "{h:?}");
    let want: Vec<&Broadcast> = live.iter().filter(|m| m.topic.starts_with("b.")).collect();
    ensure!(msgs.iter().collect::<Vec<_>>() == want, "pattern filter");

    // Lane filter.
    let mut r = range("", 0, first, last);
    r.lane = Some(live[0].lane);
    let (_, msgs) = ask(&mut d, &r).await?;
    ensure!(
        msgs.iter().all(|m| m.lane == live[0].lane) && msgs.len() >= 150,
        "lane filter"
    );

    // State only.
    let (h, msgs) = ask(&mut d, &range("", 0, 0, 0)).await?;
    ensure!(
        h.status == Status::Ok && msgs.is_empty() && h.newest >= last,
        "state {h:?}"
    );

    // Unknown origin / epoch / malformed.
    let (h, _) = ask(&mut d, &range("nobody", 0, 1, 5)).await?;
    ensure!(h.status == Status::UnknownOrigin, "{h:?}");
    let (h, _) = ask(&mut d, &range("replay-1", 12345, 1, 5)).await?;
    ensure!(
        h.status == Status::UnknownEpoch && h.epoch == live[0].epoch,
        "{h:?}"
    );
    sockets::send_timeout(
        &mut d,
        vec![Bytes::from_static(b"bad"), Bytes::from_static(b"range")],
        RECV_TIMEOUT,
    )
    .await?;
    let frames = sockets::recv_timeout(&mut d, RECV_TIMEOUT)
        .await?
        .into_vec();
    ensure!(
        frames[0] == "bad" && frames.get(1).map(|f| &f[..]) == Some(b"bad_request"),
        "{frames:?}"
    );
    Ok(())
}

#[tokio::test]
async fn reply_limit_is_resumable_from_next() -> Result<()> {
    let (_b, mut push, _sub, mut d) =
        setup(&["--id", "replay-2", "--heartbeat-ms", "60000"]).await?;
    // Where the history ends now: our 300 messages come right after.
    let (h, _) = ask(&mut d, &range("", 0, 0, 0)).await?;
    let first = h.newest + 1;
    // Payloads of 64 KiB: the 8 MiB reply limit cuts a 300-message range.
    for i in 0..300u32 {
        let mut p = vec![0u8; 64 * 1024];
        p[..4].copy_from_slice(&i.to_be_bytes());
        sockets::publish(&mut push, "a.big", p).await?;
    }
    let last = first + 299;
    // Poll the state until the broadcaster has stamped all 300.
    let deadline = std::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let (h, _) = ask(&mut d, &range("", 0, 0, 0)).await?;
        if h.newest >= last {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "only {} of 300 stamped",
            h.newest
        );
        tokio::time::sleep(fanfare_tests::wait::POLL).await;
    }
    let mut from = first;
    let mut collected = Vec::new();
    for round in 0.. {
        ensure!(round < 100, "range never completed");
        let (h, msgs) = ask(&mut d, &range("", 0, from, last)).await?;
        ensure!(h.status == Status::Ok, "{h:?}");
        ensure!(
            !msgs.is_empty() || h.next > last,
            "progress at {from}: {h:?}"
        );
        if round == 0 {
            // 300 × 64 KiB is past the reply limit: the first reply is cut,
            // and `next` says where the rest starts.
            ensure!(
                h.next <= last.min(h.newest) && h.next > from,
                "the first reply must be cut by the limit: {h:?}, range {from}..={last}"
            );
        }
        collected.extend(msgs);
        if h.next > last {
            break;
        }
        ensure!(h.next > from, "next advances");
        from = h.next;
    }
    ensure!(collected.len() == 300, "got {} of 300", collected.len());
    for (i, m) in collected.iter().enumerate() {
        ensure!(
            m.seq == first + i as u64 && m.payload[..4] == (i as u32).to_be_bytes(),
            "order"
        );
    }
    Ok(())
}

#[tokio::test]
async fn evicted_history_is_reported_unrecoverable() -> Result<()> {
    let (_b, mut push, mut sub, mut d) = setup(&[
        "--id",
        "replay-3",
        "--history-count",
        "10",
        "--heartbeat-ms",
        "60000",
    ])
    .await?;
    let live = publish_n(&mut push, &mut sub, 30, |i| format!("a.m{i}")).await?;
    let (first, last) = (live[0].seq, live[29].seq);
    let (h, msgs) = ask(&mut d, &range("", 0, first, last)).await?;
    ensure!(h.status == Status::Ok, "{h:?}");
    ensure!(h.oldest == last - 9, "oldest held is newest - 9: {h:?}");
    ensure!(msgs == live[20..], "only the 10 held messages come back");
    ensure!(h.next == last + 1, "{h:?}");
    Ok(())
}

#[tokio::test]
async fn restart_gives_a_new_epoch_and_forgets_the_old_one() -> Result<()> {
    let (mut b, mut push, mut sub, _d) =
        setup(&["--id", "replay-4", "--heartbeat-ms", "60000"]).await?;
    let before = publish_n(&mut push, &mut sub, 5, |i| format!("a.m{i}")).await?;
    b.restart().await?;
    let mut sub = sockets::sub(&b.endpoints().publish, &["a."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::sync_subscription(&mut push, &mut sub, "a").await?;
    let after = publish_n(&mut push, &mut sub, 5, |i| format!("a.n{i}")).await?;
    ensure!(
        after[0].epoch > before[0].epoch,
        "epoch grows across a restart"
    );
    let mut d = sockets::dealer(&b.endpoints().replay).await?;
    let (h, _) = ask(&mut d, &range("replay-4", before[0].epoch, 1, 5)).await?;
    ensure!(
        h.status == Status::UnknownEpoch && h.epoch == after[0].epoch,
        "{h:?}"
    );
    Ok(())
}

#[tokio::test]
async fn heartbeats_carry_epoch_last_seq_and_lanes() -> Result<()> {
    let (_b, mut push, mut sub, _d) = setup(&["--id", "hb-1", "--heartbeat-ms", "100"]).await?;
    let live = publish_n(&mut push, &mut sub, 20, |i| format!("a.m{i}")).await?;
    let last = live[19].clone();
    let mut hb_sub = sockets::sub(&_b.endpoints().publish, &["_fanfare.hb."]).await?;
    // The first heartbeat may predate the last message; wait for one after it.
    let deadline = std::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        ensure!(
            left > Duration::ZERO,
            "no heartbeat reached seq {}",
            last.seq
        );
        let hb = sockets::recv_heartbeat(&mut hb_sub, left).await?;
        ensure!(
            hb.topic == "_fanfare.hb.hb-1" && hb.origin == "hb-1",
            "{hb:?}"
        );
        ensure!(hb.flags & 1 == 1 && hb.epoch == last.epoch, "{hb:?}");
        if hb.seq < last.seq {
            continue;
        }
        ensure!(
            hb.seq == last.seq,
            "heartbeat seq is the last stamped: {hb:?}"
        );
        let body = Heartbeat::decode(&hb.payload).context("heartbeat payload")?;
        ensure!(body.oldest >= 1 && body.oldest <= live[0].seq, "{body:?}");
        let lane = body
            .lanes
            .iter()
            .find(|l| l.lane == last.lane)
            .context("heartbeat lists the active lane")?;
        ensure!(
            lane.lane_seq == last.lane_seq && lane.seq == last.seq,
            "{lane:?}"
        );
        return Ok(());
    }
}
