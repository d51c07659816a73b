//! `broadcaster tail PATTERN [--since SEQ]`: print matching messages as they
//! come, after replaying history from `--since` if given.

use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::replay::{ReplayRequest, ReplyHeader, Status, REPLY_HEADER_FRAMES};
use fanfare_protocol::stamp::StampRef;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// Arguments of `tail`.
#[derive(Debug, Args)]
pub(super) struct TailArgs {
    /// Pattern, e.g. `chat.#` (`*` one word, `#` any number).
    pattern: String,
    /// Replay from this seq of the broadcaster's current epoch first.
    #[arg(long)]
    since: Option<u64>,
    /// Exit after printing this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Broadcaster egress endpoint.
    #[arg(long = "pub", env = "FANFARE_PUB", default_value = super::DEFAULT_PUB)]
    publish: String,
    /// Broadcaster replay endpoint.
    #[arg(long, env = "FANFARE_REPLAY", default_value = super::DEFAULT_REPLAY)]
    replay: String,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `tail`.
pub(super) async fn run(a: TailArgs) -> anyhow::Result<()> {
    let pattern =
        Pattern::parse(&a.pattern).map_err(|e| anyhow::anyhow!("pattern {:?}: {e}", a.pattern))?;
    let mut sub = zeromq::SubSocket::new();
    tokio::time::timeout(CONNECT_TIMEOUT, sub.connect(&a.publish))
        .await
        .map_err(|_| anyhow::anyhow!("no broadcaster at {} after 5 s", a.publish))??;
    sub.subscribe(pattern.literal_prefix()).await?;
    let mut printed = 0u64;
    let limit = a.count.unwrap_or(u64::MAX);
    // Highest (epoch, seq) printed, to skip live copies of replayed messages.
    let mut last: Option<(u64, u64)> = None;
    if let Some(since) = a.since {
        let mut dealer = zeromq::DealerSocket::new();
        tokio::time::timeout(CONNECT_TIMEOUT, dealer.connect(&a.replay))
            .await
            .map_err(|_| anyhow::anyhow!("no replay endpoint at {} after 5 s", a.replay))??;
        let mut from = since;
        loop {
            let req = ReplayRequest {
                req_id: Bytes::from_static(b"tail"),
                origin: String::new(),
                epoch: last.map_or(0, |l| l.0),
                from,
                to: u64::MAX,
                lane: None,
                patterns: vec![pattern.clone()],
            };
            let frames = req.to_frames();
            let mut msg = ZmqMessage::from(frames[0].clone());
            for f in &frames[1..] {
                msg.push_back(f.clone());
            }
            dealer.send(msg).await?;
            let reply = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
                .await
                .map_err(|_| anyhow::anyhow!("replay endpoint did not answer in 10 s"))??
                .into_vec();
            let h = ReplyHeader::from_frames(&reply)?;
            anyhow::ensure!(h.status == Status::Ok, "replay refused: {:?}", h.status);
            if from < h.oldest {
                eprintln!(
                    "# unrecoverable: seqs {from}..{} are no longer in history",
                    h.oldest - 1
                );
            }
            for m in reply[REPLY_HEADER_FRAMES..].chunks_exact(3) {
                if let Some(key) = print(&m[0], &m[1], &m[2]) {
                    last = Some(key);
                    printed += 1;
                    if printed >= limit {
                        return Ok(());
                    }
                }
            }
            if h.next > h.newest || h.next <= from {
                // History is done: live copies of what it covered are skipped.
                let covered = (h.epoch, h.newest.min(h.next.saturating_sub(1)));
                last = Some(last.unwrap_or((h.epoch, h.newest)).max(covered));
                break;
            }
            from = h.next;
        }
    }
    while printed < limit {
        let frames = sub.recv().await?.into_vec();
        let [topic, stamp, payload] = frames.as_slice() else {
            continue;
        };
        let Ok(s) = StampRef::decode(stamp) else {
            continue;
        };
        if s.is_heartbeat()
            || s.is_ack()
            || !std::str::from_utf8(topic).is_ok_and(|t| pattern.matches(t))
        {
            continue;
        }
        if last.is_some_and(|l| (s.epoch, s.seq) <= l) {
            continue;
        }
        if let Some(key) = print(topic, stamp, payload) {
            last = Some(key);
            printed += 1;
        }
    }
    Ok(())
}

/// Prints `topic origin:epoch:seq payload`; returns `(epoch, seq)`.
fn print(topic: &[u8], stamp: &[u8], payload: &[u8]) -> Option<(u64, u64)> {
    let s = StampRef::decode(stamp).ok()?;
    println!(
        "{} {}:{}:{} {}",
        String::from_utf8_lossy(topic),
        s.origin,
        s.epoch,
        s.seq,
        String::from_utf8_lossy(payload)
    );
    Some((s.epoch, s.seq))
}
