//! Unit tests of the subscription registry.

use super::*;
use crate::message::{GapReason, Stamp};
use fanfare_protocol::stamp::lane_of;

const E: u64 = 7;

fn msg(topic: &str, seq: u64) -> Message {
    Message {
        topic: Arc::from(topic),
        payload: bytes::Bytes::from(seq.to_string()),
        stamp: Stamp {
            origin: Arc::from("b1"),
            epoch: E,
            seq,
            lane: lane_of(topic.as_bytes()),
            lane_seq: seq,
            timestamp_us: 0,
            hops: 0,
            publisher: None,
        },
        replayed: false,
    }
}

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

fn none(_: &str) -> Option<Mark> {
    None
}

fn seqs(rx: &mut mpsc::Receiver<Delivery>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(d) = rx.try_recv() {
        if let Delivery::Message(m) = d {
            out.push(m.stamp.seq);
        }
    }
    out
}

#[test]
fn delivers_to_matching_subscriptions_after_their_start() {
    let mut r = Registry::new(16);
    let start = HashMap::from([(Arc::from("b1"), (E, 10))]);
    let (mut chat, _) = r.add(p("chat.#"), start, None);
    let (mut news, _) = r.add(p("news.*"), HashMap::new(), None);
    let (mut all, _) = r.add(p("#"), HashMap::new(), None);
    for m in [
        msg("chat.x", 10),
        msg("chat.x", 11),
        msg("news.a", 12),
        msg("_fanfare.x", 13),
    ] {
        r.deliver(&m, &none);
    }
    assert_eq!(seqs(&mut chat.rx), [11]);
    assert_eq!(seqs(&mut news.rx), [12]);
    assert_eq!(
        seqs(&mut all.rx),
        [10, 11, 12],
        "reserved topics only for reserved patterns"
    );
}

#[test]
fn a_full_queue_closes_after_the_queued_items_with_a_safe_position() {
    let mut r = Registry::new(2);
    let (mut s, _) = r.add(p("a.#"), HashMap::new(), None);
    for seq in 1..=3 {
        r.deliver(&msg("a.x", seq), &none);
    }
    let eff = r.take_effects();
    assert_eq!(eff.slow.len(), 1);
    let (pattern, pos) = &eff.slow[0];
    assert_eq!(pattern, "a.#");
    assert_eq!(pos.get("b1"), Some((E, 2)));
    assert_eq!(seqs(&mut s.rx), [1, 2]);
    assert!(matches!(
        s.rx.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
    assert!(matches!(
        s.reason.try_recv(),
        Ok(CloseReason::SlowConsumer { position }) if position.get("b1") == Some((E, 2))
    ));
    assert!(eff.dirty, "its prefix is released");
}

#[test]
fn the_position_stays_below_a_pending_repair() {
    let mut r = Registry::new(1);
    let (_s, _) = r.add(p("a.#"), HashMap::new(), None);
    let low = |_: &str| Some((E, 5));
    r.deliver(&msg("a.x", 9), &low);
    r.deliver(&msg("a.x", 10), &low);
    let eff = r.take_effects();
    assert_eq!(eff.slow[0].1.get("b1"), Some((E, 4)));
}

#[test]
fn gaps_go_to_subscriptions_that_may_cover_the_lane() {
    let mut r = Registry::new(8);
    let (mut chat, _) = r.add(p("chat.#"), HashMap::new(), None);
    let (mut news, _) = r.add(p("news.#"), HashMap::new(), None);
    let (mut wild, _) = r.add(p("*.x"), HashMap::new(), None);
    let gap = Gap {
        origin: Arc::from("b1"),
        epoch: E,
        first: 3,
        last: 4,
        reason: GapReason::Expired,
    };
    r.gap(&gap, Some(lane_of(b"chat")), &none);
    assert!(matches!(chat.rx.try_recv(), Ok(Delivery::Gap(_))));
    assert!(news.rx.try_recv().is_err());
    assert!(matches!(wild.rx.try_recv(), Ok(Delivery::Gap(_))));
}

#[test]
fn catch_up_holds_live_messages_then_releases_those_after_history() {
    let mut r = Registry::new(8);
    let progress = Arc::new(Mutex::new(Position::new()));
    let (mut s, tx) = r.add(p("f.#"), HashMap::new(), Some(progress));
    for seq in [5, 7, 6] {
        r.deliver(&msg("f.x", seq), &none);
    }
    assert!(s.rx.try_recv().is_err(), "held while catching up");
    // History (sent by the catch-up task) covered up to 6.
    tx.try_send(Delivery::Message(msg("f.x", 4))).unwrap();
    r.finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 6))], &none);
    assert_eq!(seqs(&mut s.rx), [4, 7]);
    r.deliver(&msg("f.x", 6), &none);
    r.deliver(&msg("f.x", 8), &none);
    assert_eq!(seqs(&mut s.rx), [8]);
}

#[test]
fn prefixes_are_refcounted() {
    let mut r = Registry::new(8);
    let (a, _) = r.add(p("a.#"), HashMap::new(), None);
    assert!(r.take_effects().dirty);
    let (b, _) = r.add(p("a.#"), HashMap::new(), None);
    assert!(!r.take_effects().dirty);
    r.remove(a.id, None);
    assert!(!r.take_effects().dirty);
    assert_eq!(r.prefixes().collect::<Vec<_>>(), ["a"]);
    r.remove(b.id, None);
    assert!(r.take_effects().dirty);
    assert_eq!(r.prefixes().count(), 0);
}

#[test]
fn floors_follow_start_marks_and_epochs() {
    let mut r = Registry::new(8);
    let start = HashMap::from([(Arc::from("b1"), (E, 10))]);
    r.add(p("chat.#"), start, None);
    assert_eq!(r.floor_for_topic("b1", E, "chat.x"), 10);
    assert_eq!(
        r.floor_for_topic("b1", E + 1, "chat.x"),
        0,
        "a newer epoch: all of it"
    );
    assert_eq!(
        r.floor_for_topic("b1", E, "news.x"),
        u64::MAX,
        "nobody covers it"
    );
    assert_eq!(r.floor_for_lane("b1", E, lane_of(b"chat")), Some(10));
    assert_eq!(r.floor_for_lane("b1", E, lane_of(b"news")), None);
}
