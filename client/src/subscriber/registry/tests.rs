//! Unit tests of the subscription registry.

use super::*;
use crate::message::{Gap, GapReason, Message, Stamp};
use fanfare_protocol::stamp::lane_of;
use std::sync::Mutex;

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
            publisher_seq: None,
        },
        replayed: false,
        resent: false,
    }
}

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

fn none(_: &str) -> Option<Mark> {
    None
}

/// Catch-up state for a position at seq `since` of b1.
fn catching_up(since: u64) -> CatchUp {
    let mut pos = Position::new();
    pos.advance("b1", E, since);
    CatchUp::new(Arc::new(Mutex::new(pos)))
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
    let start = Marks::from_iter([(Arc::from("b1"), (E, 10))]);
    let (mut chat, _) = r.add(p("chat.#"), start, None);
    let (mut news, _) = r.add(p("news.*"), Marks::default(), None);
    let (mut all, _) = r.add(p("#"), Marks::default(), None);
    for m in [
        msg("chat.x", 10),
        msg("chat.x", 11),
        msg("news.a", 12),
        msg("_fanfare.x", 13),
    ] {
        r.deliver(m.clone(), &none);
        r.flush(&none);
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
    let (mut s, _) = r.add(p("a.#"), Marks::default(), None);
    for seq in 1..=3 {
        r.deliver(msg("a.x", seq), &none);
        r.flush(&none);
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
fn deferred_deliveries_wait_for_the_flush_in_order_and_the_full_rule_holds() {
    let mut r = Registry::new(3);
    let (mut a, _) = r.add(p("a.#"), Marks::default(), None);
    let (mut b, _) = r.add(p("a.#"), Marks::default(), None);
    r.deliver(msg("a.x", 1), &none);
    let gap = Gap {
        origin: Arc::from("b1"),
        epoch: E,
        first: 2,
        last: 2,
        reason: GapReason::EpochGone,
    };
    r.gap(&gap, None, &none);
    r.deliver(msg("a.x", 3), &none);
    assert!(a.rx.try_recv().is_err(), "nothing queued before the flush");
    r.flush(&none);
    let kinds = |rx: &mut mpsc::Receiver<Delivery>| {
        let mut v = Vec::new();
        while let Ok(d) = rx.try_recv() {
            v.push(match d {
                Delivery::Message(m) => m.stamp.seq.to_string(),
                Delivery::Gap(g) => format!("gap{}", g.first),
                Delivery::Closed(_) => "closed".to_owned(),
                Delivery::Watermark(w) => format!("w{}", w.through),
            });
        }
        v
    };
    assert_eq!(kinds(&mut a.rx), ["1", "gap2", "3"]);
    assert_eq!(kinds(&mut b.rx), ["1", "gap2", "3"]);
    // b stops reading: its queue (3) takes 4..=6, 7 does not fit; a reads on.
    for seq in 4..=6 {
        r.deliver(msg("a.x", seq), &none);
    }
    r.flush(&none);
    assert_eq!(seqs(&mut a.rx), [4, 5, 6]);
    r.deliver(msg("a.x", 7), &none);
    r.flush(&none);
    assert_eq!(seqs(&mut a.rx), [7]);
    let eff = r.take_effects();
    assert_eq!(eff.slow.len(), 1, "b is closed as slow at the flush");
    assert_eq!(eff.slow[0].1.get("b1"), Some((E, 6)));
    assert_eq!(seqs(&mut b.rx), [4, 5, 6]);
}

#[test]
fn a_deferred_gap_that_does_not_fit_keeps_the_position_below_it() {
    let mut r = Registry::new(1);
    let (_s, _) = r.add(p("a.#"), Marks::default(), None);
    r.deliver(msg("a.x", 300), &none);
    r.flush(&none);
    // The repair that lost 50..=54 is already finished when its gap is
    // flushed (no pending repair to clamp to): the gap's own first does.
    let gap = Gap {
        origin: Arc::from("b1"),
        epoch: E,
        first: 50,
        last: 54,
        reason: GapReason::Expired,
    };
    r.gap(&gap, None, &none);
    r.flush(&none);
    let eff = r.take_effects();
    assert_eq!(eff.slow.len(), 1);
    assert_eq!(eff.slow[0].1.get("b1"), Some((E, 49)));
}

#[test]
fn what_waits_for_the_flush_never_exceeds_the_queue_bound() {
    let mut r = Registry::new(3);
    let (mut s, _) = r.add(p("a.#"), Marks::default(), None);
    for seq in 1..=5 {
        r.deliver(msg("a.x", seq), &none);
    }
    // The fourth found three waiting: those were queued at once.
    assert_eq!(seqs(&mut s.rx), [1, 2, 3]);
    r.flush(&none);
    assert_eq!(seqs(&mut s.rx), [4, 5]);
    assert!(r.take_effects().slow.is_empty());
}

#[test]
fn the_position_stays_below_a_pending_repair() {
    let mut r = Registry::new(1);
    let (_s, _) = r.add(p("a.#"), Marks::default(), None);
    let low = |_: &str| Some((E, 5));
    r.deliver(msg("a.x", 9), &low);
    r.flush(&low);
    r.deliver(msg("a.x", 10), &low);
    r.flush(&low);
    let eff = r.take_effects();
    assert_eq!(eff.slow[0].1.get("b1"), Some((E, 4)));
}

#[test]
fn gaps_go_to_subscriptions_that_may_cover_the_lane() {
    let mut r = Registry::new(8);
    let (mut chat, _) = r.add(p("chat.#"), Marks::default(), None);
    let (mut news, _) = r.add(p("news.#"), Marks::default(), None);
    let (mut wild, _) = r.add(p("*.x"), Marks::default(), None);
    let gap = Gap {
        origin: Arc::from("b1"),
        epoch: E,
        first: 3,
        last: 4,
        reason: GapReason::Expired,
    };
    r.gap(&gap, Some(lane_of(b"chat")), &none);
    r.flush(&none);
    assert!(matches!(chat.rx.try_recv(), Ok(Delivery::Gap(_))));
    assert!(news.rx.try_recv().is_err());
    assert!(matches!(wild.rx.try_recv(), Ok(Delivery::Gap(_))));
}

#[test]
fn catch_up_holds_live_messages_then_releases_those_after_history() {
    let mut r = Registry::new(8);
    let (mut s, tx) = r.add(p("f.#"), Marks::default(), Some(catching_up(0)));
    for seq in [5, 7, 6] {
        r.deliver(msg("f.x", seq), &none);
        r.flush(&none);
    }
    assert!(s.rx.try_recv().is_err(), "held while catching up");
    // History (sent by the catch-up task) covered up to 6.
    tx.try_send(Delivery::Message(msg("f.x", 4))).unwrap();
    let more = r.finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 6))], &none);
    assert!(more.is_none(), "nothing was dropped");
    assert_eq!(seqs(&mut s.rx), [4, 7]);
    r.deliver(msg("f.x", 6), &none);
    r.flush(&none);
    r.deliver(msg("f.x", 8), &none);
    r.flush(&none);
    assert_eq!(seqs(&mut s.rx), [8]);
}

#[test]
fn prefixes_are_refcounted() {
    let mut r = Registry::new(8);
    let (a, _) = r.add(p("a.#"), Marks::default(), None);
    assert!(r.take_effects().dirty);
    let (b, _) = r.add(p("a.#"), Marks::default(), None);
    assert!(!r.take_effects().dirty);
    r.remove(a.id, None);
    assert!(!r.take_effects().dirty);
    assert_eq!(
        r.prefixes().collect::<Vec<_>>(),
        ["a\0"],
        "a word-boundary prefix"
    );
    r.remove(b.id, None);
    assert!(r.take_effects().dirty);
    assert_eq!(r.prefixes().count(), 0);
}

#[test]
fn floors_follow_start_marks_and_epochs() {
    let mut r = Registry::new(8);
    let start = Marks::from_iter([(Arc::from("b1"), (E, 10))]);
    r.add(p("chat.#"), start, None);
    assert_eq!(r.floor_for_topic("b1", E, "chat.x"), Some(10));
    assert_eq!(
        r.floor_for_topic("b1", E + 1, "chat.x"),
        Some(0),
        "a newer epoch: all of it"
    );
    assert_eq!(
        r.floor_for_topic("b1", E, "news.x"),
        None,
        "nobody covers it"
    );
    assert_eq!(r.floor_for_lane("b1", E, lane_of(b"chat")), Some(10));
    assert_eq!(r.floor_for_lane("b1", E, lane_of(b"news")), None);
}

#[test]
fn live_messages_past_the_bound_are_fetched_from_history_instead() {
    let mut r = Registry::new(4);
    let start = Marks::from_iter([(Arc::from("b1"), (E, 2))]);
    let (mut s, _tx) = r.add(p("f.#"), start, Some(catching_up(2)));
    // The fifth does not fit: all five are dropped, not the subscription.
    for seq in 10..=16 {
        r.deliver(msg("f.x", seq), &none);
        r.flush(&none);
    }
    assert!(r.take_effects().slow.is_empty(), "not closed");
    let more = r
        .finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 9))], &none)
        .expect("the dropped ones are fetched next");
    // Fetching up to 16 also covers the two held after the drop.
    assert_eq!(more.ranges, [(Arc::from("b1"), Some((E, 9)), (E, 16))]);
    assert!(s.rx.try_recv().is_err(), "nothing released yet");
    r.deliver(msg("f.x", 17), &none);
    r.flush(&none);
    let more = r.finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 16))], &none);
    assert!(more.is_none());
    assert_eq!(seqs(&mut s.rx), [17], "then live");
    r.deliver(msg("f.x", 16), &none);
    r.flush(&none);
    r.deliver(msg("f.x", 18), &none);
    r.flush(&none);
    assert_eq!(seqs(&mut s.rx), [18]);
}

#[test]
fn a_catch_up_whose_application_stops_reading_is_closed_at_its_progress() {
    let mut r = Registry::new(2).stall_after(std::time::Duration::ZERO);
    let (mut s, tx) = r.add(p("f.#"), Marks::default(), Some(catching_up(2)));
    // History fills the queue; the application takes one item and stops.
    tx.try_send(Delivery::Message(msg("f.x", 3))).unwrap();
    tx.try_send(Delivery::Message(msg("f.x", 4))).unwrap();
    assert!(s.rx.try_recv().is_ok());
    s.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tx.try_send(Delivery::Message(msg("f.x", 5))).unwrap();
    if let Some(c) = r.subs.get(&s.id).and_then(|e| e.catch_up.as_ref()) {
        c.progress.lock().unwrap().advance("b1", E, 5);
    }
    // A first overflow only drops the held messages.
    for seq in 10..=12 {
        r.deliver(msg("f.x", seq), &none);
        r.flush(&none);
    }
    assert!(r.take_effects().slow.is_empty());
    // A second one with nothing taken meanwhile: the application is slow.
    for seq in 13..=15 {
        r.deliver(msg("f.x", seq), &none);
        r.flush(&none);
    }
    let eff = r.take_effects();
    assert_eq!(eff.slow.len(), 1);
    assert_eq!(eff.slow[0].1.get("b1"), Some((E, 5)), "what it was given");
    assert_eq!(seqs(&mut s.rx), [4, 5], "queued items still come");
}

#[test]
fn a_reading_application_is_not_closed_while_catching_up() {
    let mut r = Registry::new(2).stall_after(std::time::Duration::ZERO);
    let (s, tx) = r.add(p("f.#"), Marks::default(), Some(catching_up(2)));
    tx.try_send(Delivery::Message(msg("f.x", 3))).unwrap();
    for seq in 10..=30 {
        if seq % 3 == 0 {
            s.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r.deliver(msg("f.x", seq), &none);
        r.flush(&none);
    }
    assert!(r.take_effects().slow.is_empty());
}

#[test]
fn lane_repairs_do_not_reach_back_for_a_catch_up_its_history_does() {
    let mut r = Registry::new(8);
    let start = Marks::from_iter([(Arc::from("b1"), (E, 10))]);
    let (s, _tx) = r.add(p("chat.#"), start, Some(catching_up(10)));
    assert_eq!(r.floor_for_topic("b1", E, "chat.x"), Some(u64::MAX));
    assert_eq!(r.floor_for_lane("b1", E, lane_of(b"chat")), Some(u64::MAX));
    // The lane's first live message is 40: 31..=39 come from history (and
    // 40 with them: a round that fetches leaves nothing held).
    r.deliver(msg("chat.x", 40), &none);
    r.flush(&none);
    let more = r
        .finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 30))], &none)
        .expect("history up to the first live message");
    assert_eq!(more.ranges, [(Arc::from("b1"), Some((E, 30)), (E, 40))]);
    let more = r.finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 40))], &none);
    assert!(more.is_none());
    assert_eq!(
        r.floor_for_topic("b1", E, "chat.x"),
        Some(40),
        "live: its start"
    );
}

#[test]
fn one_burst_overflowing_twice_does_not_close_a_catch_up() {
    // The application gets no chance to run during one burst read off the
    // socket: within the grace, that is not a slow application.
    let mut r = Registry::new(2);
    let (_s, tx) = r.add(p("f.#"), Marks::default(), Some(catching_up(2)));
    tx.try_send(Delivery::Message(msg("f.x", 3))).unwrap();
    for seq in 10..=40 {
        r.deliver(msg("f.x", seq), &none);
        r.flush(&none);
    }
    assert!(r.take_effects().slow.is_empty());
}

#[test]
fn a_catch_up_goes_live_only_with_room_left_in_the_queue() {
    let mut r = Registry::new(8);
    let (mut s, _tx) = r.add(p("f.#"), Marks::default(), Some(catching_up(2)));
    for seq in 3..=8 {
        r.deliver(msg("f.x", seq), &none);
        r.flush(&none);
    }
    // Six held, more than half the queue: fetched once more instead.
    let more = r
        .finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 2))], &none)
        .expect("another round");
    assert_eq!(more.ranges, [(Arc::from("b1"), Some((E, 2)), (E, 8))]);
    r.deliver(msg("f.x", 9), &none);
    r.flush(&none);
    assert!(r
        .finish_catch_up(s.id, vec![(Arc::from("b1"), (E, 8))], &none)
        .is_none());
    assert_eq!(seqs(&mut s.rx), [9]);
}

/// What a queue holds, watermarks as `w<through>`.
fn items(rx: &mut mpsc::Receiver<Delivery>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(d) = rx.try_recv() {
        v.push(match d {
            Delivery::Message(m) => m.stamp.seq.to_string(),
            Delivery::Watermark(w) => format!("w{}", w.through),
            other => format!("{other:?}"),
        });
    }
    v
}

#[test]
fn watermarks_go_after_the_flush_to_who_asked_and_only_forward() {
    let mut r = Registry::new(4);
    let b1: Arc<str> = Arc::from("b1");
    let (mut asked, _) = r.add(p("a.#"), Marks::default(), None);
    let (mut plain, _) = r.add(p("a.#"), Marks::default(), None);
    r.want_watermarks(asked.id);
    r.deliver(msg("a.x", 1), &none);
    // Before the flush the message waits: a watermark would overtake it.
    r.watermark(&b1, E, 1);
    assert!(asked.rx.try_recv().is_err());
    r.flush(&none);
    r.watermark(&b1, E, 3);
    r.watermark(&b1, E, 3); // does not move: not told again
    r.watermark(&b1, E, 2); // behind: not told
    assert_eq!(items(&mut asked.rx), ["1", "w3"]);
    assert_eq!(items(&mut plain.rx), ["1"], "only who asked");
    // A full queue skips one; the next call tells it.
    for seq in 4..=7 {
        r.deliver(msg("a.x", seq), &none);
    }
    r.flush(&none);
    r.watermark(&b1, E, 7);
    assert_eq!(items(&mut asked.rx), ["4", "5", "6", "7"]);
    r.watermark(&b1, E, 8);
    assert_eq!(items(&mut asked.rx), ["w8"]);
    // A new epoch moves it on; a removed subscription is forgotten.
    r.watermark(&b1, E + 1, 1);
    assert_eq!(items(&mut asked.rx), ["w1"]);
    r.remove(asked.id, None);
    assert!(r.watermarked.is_empty());
}

#[test]
fn a_catching_up_subscription_gets_no_watermark() {
    let mut r = Registry::new(16);
    let b1: Arc<str> = Arc::from("b1");
    let (mut c, _) = r.add(p("a.#"), Marks::default(), Some(catching_up(0)));
    r.want_watermarks(c.id);
    r.deliver(msg("a.x", 5), &none);
    r.flush(&none);
    r.watermark(&b1, E, 9);
    assert!(
        c.rx.try_recv().is_err(),
        "held live messages must not be overtaken"
    );
}

#[test]
fn sub_prefixes_end_at_a_word_where_the_literal_part_does() {
    assert_eq!(sub_prefix(&p("room.5")), "room.5\0");
    assert_eq!(sub_prefix(&p("room.5.#")), "room.5\0");
    assert_eq!(sub_prefix(&p("room.*.x")), "room.");
    assert_eq!(sub_prefix(&p("#")), "");
    assert_eq!(sub_prefix(&p("*.x")), "");
}

#[test]
fn a_pattern_set_touches_only_the_prefixes_that_differ() {
    let mut r = Registry::new(8);
    let (other, _) = r.add(p("room.1"), Marks::default(), None);
    let (feed, _) = r.add(p("#"), Marks::default(), None);
    r.take_effects();
    let set = |list: &[&str]| {
        Box::new(PatternSet::new(
            &list.iter().map(|s| p(s)).collect::<Vec<_>>(),
        ))
    };
    // `#`'s "" goes; room.1's prefix is shared with the other subscription.
    assert_eq!(
        r.set_patterns(feed.id, set(&["room.1", "room.2"])),
        Some(true)
    );
    assert!(r.take_effects().dirty);
    let mut have: Vec<&str> = r.prefixes().collect();
    have.sort_unstable();
    assert_eq!(have, ["room.1\0", "room.2\0"]);
    assert_eq!(
        r.set_patterns(feed.id, set(&["room.2", "room.1"])),
        Some(false),
        "same set"
    );
    assert!(!r.take_effects().dirty);
    assert_eq!(r.set_patterns(feed.id, set(&["room.3"])), Some(true));
    let mut have: Vec<&str> = r.prefixes().collect();
    have.sort_unstable();
    assert_eq!(have, ["room.1\0", "room.3\0"], "room.1 kept for the other");
    r.deliver(msg("room.3", 1), &none);
    r.deliver(msg("room.1", 2), &none);
    r.flush(&none);
    let mut feed = feed;
    let mut other = other;
    assert_eq!(seqs(&mut feed.rx), [1], "the set, not `#`");
    assert_eq!(seqs(&mut other.rx), [2]);
    assert_eq!(r.set_patterns(999, set(&["x"])), None);
    r.remove(feed.id, None);
    assert_eq!(r.prefixes().collect::<Vec<_>>(), ["room.1\0"]);
}
