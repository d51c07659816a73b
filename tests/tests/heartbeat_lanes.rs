//! Heartbeats list the most recently active lanes, most recent first, and
//! stay bounded in bytes: after thousands of junk lanes (distinct first
//! words), a new lane's mark is in the next heartbeat.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use fanfare_protocol::heartbeat::{Heartbeat, MAX_HEARTBEAT_LANES, MAX_REPLAY_ENDPOINT};
use fanfare_protocol::stamp::lane_of;
use fanfare_tests::process::BroadcasterProcess;
use fanfare_tests::sockets;
use fanfare_tests::RECV_TIMEOUT;

const JUNK_LANES: usize = 6_000;

#[tokio::test]
async fn a_new_lane_shows_in_the_next_heartbeat_after_thousands_of_junk_lanes() -> Result<()> {
    let b = BroadcasterProcess::spawn(&["--id", "hb", "--heartbeat-ms", "100"]).await?;
    let mut hb = sockets::sub(&b.endpoints().publish, &["_fanfare.hb.", "fresh."]).await?;
    let mut push = sockets::push(&b.endpoints().pull).await?;
    sockets::recv_heartbeat(&mut hb, RECV_TIMEOUT).await?;
    for i in 0..JUNK_LANES {
        sockets::publish(&mut push, &format!("junk{i}.x"), Bytes::from_static(b"j")).await?;
    }
    sockets::publish(&mut push, "fresh.tail", Bytes::from_static(b"f")).await?;
    let fresh = loop {
        let m = sockets::recv_timeout(&mut hb, RECV_TIMEOUT).await?;
        let m = sockets::Broadcast::decode(&m.into_vec())?;
        if m.topic == "fresh.tail" {
            break m;
        }
    };
    let lane = lane_of(b"fresh.tail");
    // The first heartbeat stamped after the fresh message lists its lane first.
    let mut biggest = 0;
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let h = sockets::recv_heartbeat(&mut hb, RECV_TIMEOUT).await?;
            biggest = biggest.max(h.payload.len());
            let d = Heartbeat::decode(&h.payload).context("heartbeat payload")?;
            if h.seq >= fresh.seq {
                return anyhow::Ok(d);
            }
        }
    })
    .await
    .context("no heartbeat after the fresh message")??;
    eprintln!(
        "{JUNK_LANES} junk lanes: heartbeat lists {} lanes, largest payload {biggest} bytes",
        got.lanes.len()
    );
    ensure!(got.lanes.len() <= MAX_HEARTBEAT_LANES);
    ensure!(
        // Lanes, plus the optional replay-endpoint trailer (≤ 1 + 255 bytes).
        biggest <= 10 + MAX_HEARTBEAT_LANES * 18 + 1 + MAX_REPLAY_ENDPOINT,
        "heartbeat payload {biggest} bytes"
    );
    let first = got.lanes.first().context("no lanes listed")?;
    ensure!(
        first.lane == lane,
        "most recent lane not first: {:?}",
        &got.lanes[..3.min(got.lanes.len())]
    );
    ensure!(
        first.seq == fresh.seq && first.lane_seq == fresh.lane_seq,
        "{first:?} vs {fresh:?}"
    );
    Ok(())
}
