//! Unit tests of `subscribers`.
use super::*;
use proptest::prelude::*;

/// Refcounted prefixes of one subscriber.
type Prefixes = Vec<(Vec<u8>, u32)>;

/// The old semantics, linearly: refcounted prefixes per subscriber.
#[derive(Default)]
struct Linear {
    subs: Vec<(u64, Prefixes)>,
}

impl Linear {
    fn apply(&mut self, id: u64, prefix: &[u8], subscribe: bool) {
        let Some((_, ps)) = self.subs.iter_mut().find(|(i, _)| *i == id) else {
            return;
        };
        match ps.iter().position(|(p, _)| p == prefix) {
            Some(i) if subscribe => ps[i].1 += 1,
            Some(i) => {
                ps[i].1 -= 1;
                if ps[i].1 == 0 {
                    ps.swap_remove(i);
                }
            }
            None if subscribe => ps.push((prefix.to_vec(), 1)),
            None => {}
        }
    }

    fn wants(&self, topic: &[u8]) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, ps)| ps.iter().any(|(p, _)| topic.starts_with(p)))
            .map(|(i, _)| *i)
            .collect();
        v.sort_unstable();
        v
    }
}

fn encoded_one(topic: &[u8]) -> (Bytes, Encoded) {
    let mut out = bytes::BytesMut::new();
    let t = crate::zmtp::put_frame(&mut out, topic.len(), false, |o| {
        bytes::BufMut::put_slice(o, topic)
    });
    let frames = 0..out.len();
    (out.freeze(), Encoded { frames, topic: t })
}

/// Which subscribers got a chunk, each at most one message.
fn deliver(
    s: &mut Subscribers,
    rxs: &mut [(u64, mpsc::Receiver<Chunk>)],
    topic: &[u8],
    m: &Metrics,
) -> Vec<u64> {
    let (buf, e) = encoded_one(topic);
    s.fan_out(&buf, std::slice::from_ref(&e), m);
    let mut got = Vec::new();
    for (id, rx) in rxs.iter_mut() {
        while let Ok(c) = rx.try_recv() {
            assert_eq!(c.bytes, e.frames.len(), "once, not once per prefix");
            got.push(*id);
        }
    }
    got.sort_unstable();
    got
}

fn setup(n: u64, m: &Metrics) -> (Subscribers, Vec<(u64, mpsc::Receiver<Chunk>)>, Linear) {
    let mut s = Subscribers::new(1 << 20);
    let mut rxs = Vec::new();
    let mut lin = Linear::default();
    for id in 1..=n {
        let (tx, rx) = mpsc::channel(16);
        let queue = SubscriberQueue {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
        };
        s.apply(Control::Add { id, queue }, m);
        rxs.push((id, rx));
        lin.subs.push((id, Vec::new()));
    }
    (s, rxs, lin)
}

proptest! {
    #[test]
    fn trie_matches_the_linear_semantics(
        ops in proptest::collection::vec((1u64..4, "[ab]{0,3}", any::<bool>()), 0..60),
        topics in proptest::collection::vec("[ab]{0,4}", 1..10),
        remove in proptest::option::of(1u64..4),
    ) {
        let m = Metrics::new("t", 1);
        let (mut s, mut rxs, mut lin) = setup(3, &m);
        for (id, p, sub) in &ops {
            let prefix = Bytes::copy_from_slice(p.as_bytes());
            let c = if *sub {
                Control::Subscribe { id: *id, prefix }
            } else {
                Control::Unsubscribe { id: *id, prefix }
            };
            s.apply(c, &m);
            lin.apply(*id, p.as_bytes(), *sub);
        }
        if let Some(id) = remove {
            s.apply(Control::Remove { id }, &m);
            lin.subs.retain(|(i, _)| *i != id);
        }
        for t in &topics {
            prop_assert_eq!(deliver(&mut s, &mut rxs, t.as_bytes(), &m), lin.wants(t.as_bytes()));
        }
    }
}

#[test]
fn prefix_caps_refuse_and_count() {
    let m = Metrics::new("t", 1);
    let (mut s, mut rxs, _) = setup(1, &m);
    for i in 0..MAX_PREFIXES + 10 {
        let prefix = Bytes::from(format!("p{i}."));
        s.apply(Control::Subscribe { id: 1, prefix }, &m);
    }
    assert_eq!(m.subscriptions_refused.get(), 10);
    assert_eq!(deliver(&mut s, &mut rxs, b"p5.x", &m), vec![1]);
    assert!(deliver(
        &mut s,
        &mut rxs,
        format!("p{}.x", MAX_PREFIXES + 1).as_bytes(),
        &m
    )
    .is_empty());
    s.apply(Control::Remove { id: 1 }, &m);
    assert_eq!(
        s.index.len(),
        1,
        "a removed subscriber's prefixes leave the trie"
    );
    let (mut s, _, _) = setup(1, &m);
    let big = Bytes::from(vec![b'x'; 1000]);
    for i in 0..100u8 {
        let mut p = big.to_vec();
        p.push(i);
        s.apply(
            Control::Subscribe {
                id: 1,
                prefix: p.into(),
            },
            &m,
        );
    }
    assert_eq!(
        m.subscriptions_refused.get(),
        10 + 100 - (MAX_PREFIX_BYTES / 1001) as u64
    );
}

#[test]
fn local_interest_leaves_links_out_and_a_full_link_is_cut_off() {
    let m = Metrics::new("t", 1);
    let (mut s, mut rxs, _) = setup(2, &m);
    let b = |p: &'static [u8]| Bytes::from_static(p);
    let sub = |id, p| Control::Subscribe { id, prefix: b(p) };
    s.apply(sub(1, b"chat."), &m);
    s.apply(sub(2, b"news."), &m);
    assert!(s.take_local_changed());
    let mut local: Vec<_> = s.local_prefixes().cloned().collect();
    local.sort();
    assert_eq!(local, [b(b"chat."), b(b"news.")]);
    // Subscriber 2 announces interest: it is a link, its prefixes are not local.
    s.apply(
        Control::Interest {
            id: 2,
            body: b(b"x"),
        },
        &m,
    );
    assert_eq!(s.take_announcements(), [b(b"x")]);
    assert!(s.take_local_changed());
    assert_eq!(
        s.local_prefixes().cloned().collect::<Vec<_>>(),
        [b(b"chat.")]
    );
    s.apply(sub(2, b"more."), &m);
    assert!(!s.take_local_changed());
    assert_eq!(deliver(&mut s, &mut rxs, b"news.x", &m), [2]);
    // A link whose queue overflows gets nothing more (it will see silence
    // and reconnect), never a silent hole.
    for _ in 0..40 {
        let (buf, e) = encoded_one(b"news.y");
        s.fan_out(&buf, std::slice::from_ref(&e), &m);
    }
    while rxs[1].1.try_recv().is_ok() {}
    assert_eq!(deliver(&mut s, &mut rxs, b"news.z", &m), Vec::<u64>::new());
    assert_eq!(deliver(&mut s, &mut rxs, b"chat.z", &m), [1]);
    s.apply(Control::Remove { id: 1 }, &m);
    assert!(s.take_local_changed());
    assert_eq!(s.local_prefixes().count(), 0);
}

#[test]
fn ack_subscriptions_are_never_announced_interest() {
    let m = Metrics::new("t", 1);
    let (mut s, _rxs, _) = setup(1, &m);
    let ack = Bytes::from_static(b"_fanfare.ack.0123456789abcdef");
    s.apply(
        Control::Subscribe {
            id: 1,
            prefix: ack.clone(),
        },
        &m,
    );
    assert!(!s.take_local_changed());
    assert_eq!(s.local_prefixes().count(), 0);
    s.apply(Control::Unsubscribe { id: 1, prefix: ack }, &m);
    assert!(!s.take_local_changed());
}

#[test]
fn a_session_marker_comes_first_and_after_every_miss_never_between() {
    let m = Metrics::new("t", 1);
    let (mut s, mut rxs, _) = setup(2, &m);
    let b = |p: &'static [u8]| Bytes::from_static(p);
    let sub = |id, p| Control::Subscribe { id, prefix: b(p) };
    // The marker's bytes say how many messages were missed before it and
    // how many subscription commands were applied.
    let marker = |mk: fanfare_protocol::session::Marker| {
        Bytes::from(format!("M{}/{}", mk.missed, mk.changes))
    };
    let got = |rx: &mut mpsc::Receiver<Chunk>| {
        let mut v = Vec::new();
        while let Ok(c) = rx.try_recv() {
            let bytes: Vec<u8> = c.parts.iter().flat_map(|p| p.to_vec()).collect();
            v.push(if bytes.starts_with(b"M") {
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                "msg".to_owned()
            });
        }
        v
    };
    s.apply(sub(1, b"a."), &m);
    s.apply(sub(1, fanfare_protocol::SESSION_TOPIC.as_bytes()), &m);
    s.apply(sub(2, b"a."), &m);
    assert!(s.markers_due());
    s.send_markers(marker, &m);
    assert!(!s.markers_due());
    assert_eq!(
        got(&mut rxs[0].1),
        ["M0/2"],
        "a session starts with a marker"
    );
    assert_eq!(deliver(&mut s, &mut rxs, b"a.x", &m), [1, 2]);
    // Fill subscriber 1's channel (16 chunks): the 17th message is missed.
    // Subscriber 2 is drained every time and misses nothing.
    for _ in 0..16 {
        let (buf, e) = encoded_one(b"a.y");
        s.fan_out(&buf, std::slice::from_ref(&e), &m);
        while rxs[1].1.try_recv().is_ok() {}
    }
    let (buf, e) = encoded_one(b"a.y");
    s.fan_out(&buf, std::slice::from_ref(&e), &m);
    assert!(s.markers_due());
    // Until its marker is queued it gets nothing (counted in the marker).
    s.fan_out(&buf, std::slice::from_ref(&e), &m);
    assert_eq!(got(&mut rxs[0].1).len(), 16);
    s.send_markers(marker, &m);
    s.fan_out(&buf, std::slice::from_ref(&e), &m);
    assert_eq!(got(&mut rxs[0].1), ["M2/2", "msg"]);
    assert_eq!(m.session_markers.get(), 2);
    // A subscription change in a session is answered by a marker once
    // applied, before the next message; so is a cancel.
    s.apply(sub(1, b"b."), &m);
    assert!(s.markers_due());
    s.send_markers(marker, &m);
    let (buf, e) = encoded_one(b"b.x");
    s.fan_out(&buf, std::slice::from_ref(&e), &m);
    assert_eq!(got(&mut rxs[0].1), ["M0/3", "msg"]);
    s.apply(
        Control::Unsubscribe {
            id: 1,
            prefix: b(b"b."),
        },
        &m,
    );
    s.send_markers(marker, &m);
    assert_eq!(got(&mut rxs[0].1), ["M0/4"]);
    // A change's marker goes at once even over a half-full queue (only a
    // marker after a miss waits for the queue to drain).
    if let Some(sub) = s.slots[0].as_ref() {
        sub.queue.queued.store(s.max_queue_bytes - 10, Relaxed);
    }
    s.apply(sub(1, b"c."), &m);
    s.send_markers(marker, &m);
    assert_eq!(got(&mut rxs[0].1), ["M0/5"]);
    if let Some(sub) = s.slots[0].as_ref() {
        sub.queue.queued.store(0, Relaxed);
    }
    // A plain subscriber never gets a marker; only the exact topic asks.
    s.apply(sub(2, b"_fanfare."), &m);
    assert!(!s.markers_due());
    while rxs[1].1.try_recv().is_ok() {}
    assert_eq!(deliver(&mut s, &mut rxs, b"a.z", &m), [1, 2]);
}
