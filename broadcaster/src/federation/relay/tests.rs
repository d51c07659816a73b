//! The relay on its own: two links bring the same origin's messages out of
//! order and twice; subscribers get each once, in seq order, with the stamp
//! kept but `hops` + 1; our own origin and the hop limit are cut.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use fanfare_protocol::stamp::{self, StampFields, StampRef};
use tokio::sync::mpsc;

use super::{Relay, Sinks};
use crate::federation::{FromLink, Interest, Linked};
use crate::history::{History, Limits};
use crate::metrics::Metrics;
use crate::subscribers::{Chunk, Control, SubscriberQueue, Subscribers};
use crate::zmtp::{FrameReader, ZmtpFrame};

fn msg(origin: &str, seq: u64, hops: u8) -> Linked {
    let topic = "chat.x";
    let f = StampFields {
        hops,
        lane: stamp::lane_of(topic.as_bytes()),
        epoch: 7,
        seq,
        lane_seq: seq,
        timestamp_us: 1,
        ..StampFields::default()
    };
    Linked {
        topic: Bytes::from_static(topic.as_bytes()),
        stamp: stamp::to_bytes(&f, origin.as_bytes(), None),
        payload: Bytes::from(format!("p{seq}")),
    }
}

/// Every `(origin, seq, hops)` queued to the subscriber, in order.
async fn received(rx: &mut mpsc::Receiver<Chunk>) -> Vec<(String, u64, u8)> {
    let mut bytes = Vec::new();
    while let Ok(c) = rx.try_recv() {
        for p in c.parts {
            bytes.extend_from_slice(&p);
        }
    }
    let mut r = FrameReader::new(&bytes[..], 1 << 20);
    let mut out = Vec::new();
    let mut frames = Vec::new();
    while let Some(f) = r.next_frame().await.unwrap() {
        let ZmtpFrame::Message { more, body } = f else {
            continue;
        };
        frames.push(body);
        if !more {
            let s = StampRef::decode(&frames[1]).unwrap();
            out.push((s.origin.to_owned(), s.seq, s.hops));
            frames.clear();
        }
    }
    out
}

#[tokio::test]
async fn once_in_order_hops_bumped_self_and_hop_limit_cut() {
    let mut metrics = Metrics::new("me", 1);
    metrics.add_links(&[
        ("a".into(), "tcp://a:1".into(), None),
        ("b".into(), "tcp://b:1".into(), None),
    ]);
    let metrics = Arc::new(metrics);
    let (interest, _plan) = Interest::new("me");
    let (r1, _k1) = mpsc::channel(4);
    let (r2, _k2) = mpsc::channel(4);
    let mut relay = Relay::new("me", 3, metrics.links.clone(), vec![r1, r2], interest);
    let history = Arc::new(RwLock::new(History::new(Limits {
        count: 100,
        bytes: 1 << 20,
        age: Duration::from_secs(60),
    })));
    let mut subs = Subscribers::new(1 << 20);
    let (tx, mut rx) = mpsc::channel(64);
    let queue = SubscriberQueue {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
    };
    subs.apply(Control::Add { id: 1, queue }, &metrics);
    subs.apply(
        Control::Subscribe {
            id: 1,
            prefix: Bytes::new(),
        },
        &metrics,
    );
    let mut sinks = Sinks {
        history: &history,
        subscribers: &mut subs,
        metrics: &metrics,
    };
    let batch = |link, session, msgs| FromLink::Messages {
        link,
        session,
        msgs,
        repaired: false,
    };
    // Link a brings 1, reconnects and brings 3 (2 is missing: held); link
    // b brings 1, 2, 3 again, our own message and one at the hop limit.
    relay.accept(batch(0, 1, vec![msg("o", 1, 0)]), &mut sinks);
    relay.accept(batch(0, 2, vec![msg("o", 3, 0)]), &mut sinks);
    relay.accept(
        batch(
            1,
            1,
            vec![
                msg("o", 1, 1),
                msg("o", 2, 1),
                msg("o", 3, 1),
                msg("me", 9, 1),
                msg("o", 4, 3),
            ],
        ),
        &mut sinks,
    );
    // Within link a's second session, 3 then 5: 4 was filtered upstream
    // (interest-only forwarding), not lost.
    relay.accept(batch(0, 2, vec![msg("o", 5, 0)]), &mut sinks);
    let got = received(&mut rx).await;
    assert_eq!(
        got,
        [
            ("o".into(), 1, 1),
            ("o".into(), 2, 2),
            ("o".into(), 3, 1),
            ("o".into(), 5, 1)
        ],
        "once each, in seq order, hops + 1"
    );
    let (a, b) = (&metrics.links[0], &metrics.links[1]);
    assert_eq!((a.held.get(), a.republished.get()), (1, 3));
    assert_eq!((a.filtered.get(), a.unrecoverable.get()), (1, 0));
    assert_eq!((b.duplicates.get(), b.republished.get()), (2, 1));
    assert_eq!((b.self_drops.get(), b.hop_limit_drops.get()), (1, 1));
    // History holds them under their own origin, for replay.
    let h = history.read().unwrap();
    assert_eq!(h.usage("o").0, 4);
    assert_eq!(h.epoch_of("o"), Some(7));
}
