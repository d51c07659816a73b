//! Unit tests of the gap tracker: sequences with holes, lanes, heartbeats,
//! epochs, duplicates, bounded parking.

use super::*;

pub(super) const A: u16 = 1;
pub(super) const B: u16 = 2;

pub(super) fn o() -> Arc<str> {
    Arc::from("b1")
}

pub(super) fn h(epoch: u64, seq: u64, lane: u16, lane_seq: u64) -> Head {
    Head {
        epoch,
        seq,
        lane,
        lane_seq,
    }
}

/// Feeds one message (its payload is its seq) and returns the actions.
fn msg(t: &mut Tracker<u64>, head: Head) -> Vec<Action<u64>> {
    msg_floor(t, head, 0)
}

fn msg_floor(t: &mut Tracker<u64>, head: Head, floor: u64) -> Vec<Action<u64>> {
    let mut out = Vec::new();
    t.on_message(&o(), head, head.seq, || Some(floor), None, &mut out);
    out
}

/// Feeds one message that came on a connection complete after `session`.
fn msg_in_session(t: &mut Tracker<u64>, head: Head, session: u64) -> Vec<Action<u64>> {
    let mut out = Vec::new();
    t.on_message(&o(), head, head.seq, || Some(0), Some(session), &mut out);
    out
}

pub(super) fn finish(t: &mut Tracker<u64>, ticket: &Ticket) -> Vec<Action<u64>> {
    let mut out = Vec::new();
    t.finish(ticket, &mut out);
    out
}

fn beat(t: &mut Tracker<u64>, epoch: u64, seq: u64, marks: &[(u16, u64, u64)]) -> Vec<Action<u64>> {
    beat_in(t, epoch, seq, marks, None)
}

fn beat_in(
    t: &mut Tracker<u64>,
    epoch: u64,
    seq: u64,
    marks: &[(u16, u64, u64)],
    session: Option<u64>,
) -> Vec<Action<u64>> {
    let marks: Vec<LaneMark> = marks
        .iter()
        .map(|&(lane, lane_seq, seq)| LaneMark {
            lane,
            lane_seq,
            seq,
        })
        .collect();
    let mut out = Vec::new();
    t.on_heartbeat(&o(), epoch, seq, &marks, |_| None, session, &mut out);
    out
}

pub(super) fn ticket(actions: &[Action<u64>]) -> Ticket {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Repair(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a repair")
}

fn range(t: &Ticket) -> (u16, u64, u64) {
    (t.lane.expect("a lane's repair"), t.from, t.to)
}

#[test]
fn in_order_messages_are_delivered() {
    let mut t = Tracker::new(100);
    assert_eq!(msg(&mut t, h(1, 10, A, 5)), vec![Action::Deliver(10)]);
    assert_eq!(msg(&mut t, h(1, 11, A, 6)), vec![Action::Deliver(11)]);
    // Another lane interleaves: seq jumps but lane seqs are in order.
    assert_eq!(msg(&mut t, h(1, 13, A, 7)), vec![Action::Deliver(13)]);
    assert_eq!(t.max_seq("b1"), Some((1, 13)));
}

#[test]
fn first_message_of_unknown_origin_is_a_baseline() {
    let mut t = Tracker::new(100);
    assert_eq!(msg(&mut t, h(1, 500, A, 77)), vec![Action::Deliver(500)]);
}

#[test]
fn lane_jump_asks_repair_and_parks_until_finished() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 10, A, 5));
    let a = msg(&mut t, h(1, 20, A, 8));
    let tk = ticket(&a);
    assert_eq!(range(&tk), (A, 11, 19));
    assert_eq!(a.len(), 1, "revealing message is parked");
    // Later messages on the lane wait; other lanes flow.
    assert!(msg(&mut t, h(1, 21, A, 9)).is_empty());
    assert_eq!(msg(&mut t, h(1, 22, B, 1)), vec![Action::Deliver(22)]);
    assert_eq!(t.lowest_pending("b1"), Some((1, 11)));
    assert_eq!(
        finish(&mut t, &tk),
        vec![Action::Deliver(20), Action::Deliver(21)]
    );
    assert_eq!(t.parked(), 0);
    assert_eq!(t.lowest_pending("b1"), None);
    assert_eq!(msg(&mut t, h(1, 23, A, 10)), vec![Action::Deliver(23)]);
}

#[test]
fn duplicates_are_dropped() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 10, A, 5));
    msg(&mut t, h(1, 11, A, 6));
    assert_eq!(msg(&mut t, h(1, 11, A, 6)), vec![Action::Duplicate(11)]);
    assert_eq!(msg(&mut t, h(1, 9, A, 4)), vec![Action::Duplicate(9)]);
}

#[test]
fn stale_epoch_is_dropped_and_newer_epoch_restarts() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(5, 10, A, 5));
    assert_eq!(msg(&mut t, h(4, 99, A, 50)), vec![Action::Stale(99)]);
    let a = msg(&mut t, h(6, 1, A, 1));
    assert_eq!(
        a,
        vec![
            Action::Restarted {
                origin: o(),
                old_epoch: 5,
                new_epoch: 6
            },
            Action::Deliver(1)
        ]
    );
    assert_eq!(t.max_seq("b1"), Some((6, 1)));
}

#[test]
fn restart_repairs_what_the_new_epoch_sent_before_we_heard_it() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(5, 10, A, 5));
    let a = msg(&mut t, h(6, 7, A, 3));
    assert!(matches!(a[0], Action::Restarted { .. }));
    assert_eq!(range(&ticket(&a)), (A, 1, 6));
}

#[test]
fn restart_abandons_old_repairs_and_releases_their_messages() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(5, 10, A, 5));
    let tk = ticket(&msg(&mut t, h(5, 20, A, 8)));
    let a = msg(&mut t, h(6, 1, A, 1));
    assert!(matches!(a[0], Action::Restarted { .. }));
    assert!(matches!(&a[1], Action::Abandoned(x) if range(x) == (A, 11, 19)));
    assert_eq!(a[2], Action::Deliver(20));
    assert_eq!(a[3], Action::Deliver(1));
    assert_eq!(t.parked(), 0);
    // Finishing the old ticket afterwards does nothing.
    assert!(finish(&mut t, &tk).is_empty());
}

#[test]
fn heartbeat_reveals_tail_loss() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 10, A, 5));
    // Lane A is at lane seq 7 (seq 14) per the heartbeat: 6 and 7 are lost.
    let a = beat(&mut t, 1, 15, &[(A, 7, 14), (B, 3, 15)]);
    let tk = ticket(&a);
    assert_eq!(range(&tk), (A, 11, 14));
    assert_eq!(a.len(), 1, "unknown lane B is not ours");
    assert!(finish(&mut t, &tk).is_empty());
    // The lane is now at lane seq 7: the next is 8.
    assert_eq!(msg(&mut t, h(1, 16, A, 8)), vec![Action::Deliver(16)]);
    // A heartbeat that tells nothing new asks nothing.
    assert!(beat(&mut t, 1, 16, &[(A, 8, 16)]).is_empty());
}

#[test]
fn heartbeat_during_repair_becomes_a_tail() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 10, A, 5));
    let tk = ticket(&msg(&mut t, h(1, 20, A, 8)));
    assert!(beat(&mut t, 1, 30, &[(A, 10, 30)]).is_empty());
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(20));
    assert_eq!(range(&ticket(&a)), (A, 21, 30));
}

#[test]
fn first_heartbeat_is_a_baseline_and_covered_unknown_lanes_are_repaired() {
    let mut t: Tracker<u64> = Tracker::new(100);
    assert!(beat(&mut t, 1, 40, &[(A, 3, 40)]).is_empty());
    assert_eq!(t.max_seq("b1"), Some((1, 40)));
    let mut out = Vec::new();
    let marks = [LaneMark {
        lane: A,
        lane_seq: 5,
        seq: 45,
    }];
    t.on_heartbeat(
        &o(),
        1,
        45,
        &marks,
        |l| (l == A).then_some(42),
        None,
        &mut out,
    );
    let tk = ticket(&out);
    assert_eq!(range(&tk), (A, 43, 45));
    assert!(finish(&mut t, &tk).is_empty());
    assert_eq!(msg(&mut t, h(1, 46, A, 6)), vec![Action::Deliver(46)]);
}

#[test]
fn new_lane_after_floor_is_repaired_from_the_floor() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 10, A, 5));
    // Lane B appears at lane seq 4, seq 30; subscriptions want it from 20.
    let a = msg_floor(&mut t, h(1, 30, B, 4), 20);
    let tk = ticket(&a);
    assert_eq!(range(&tk), (B, 21, 29));
    assert_eq!(finish(&mut t, &tk), vec![Action::Deliver(30)]);
    // Lane seq 1 never needs a repair; nor a floor at or past the message.
    assert_eq!(
        msg_floor(&mut t, h(1, 31, 3, 1), 0),
        vec![Action::Deliver(31)]
    );
    assert_eq!(
        msg_floor(&mut t, h(1, 32, 4, 9), 31),
        vec![Action::Deliver(32)]
    );
}

#[test]
fn parking_is_bounded_and_overflow_becomes_a_tail() {
    let mut t = Tracker::new(2);
    msg(&mut t, h(1, 1, A, 1));
    let tk = ticket(&msg(&mut t, h(1, 5, A, 5)));
    assert!(msg(&mut t, h(1, 6, A, 6)).is_empty());
    assert_eq!(t.parked(), 2);
    // Over the bound: dropped, remembered as a tail.
    assert!(msg(&mut t, h(1, 7, A, 7)).is_empty());
    assert!(msg(&mut t, h(1, 8, A, 8)).is_empty());
    assert_eq!(t.parked(), 2);
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(5));
    assert_eq!(a[1], Action::Deliver(6));
    let tail = ticket(&a);
    assert_eq!(range(&tail), (A, 7, 8));
    assert!(finish(&mut t, &tail).is_empty());
    assert_eq!(msg(&mut t, h(1, 9, A, 9)), vec![Action::Deliver(9)]);
}

#[test]
fn a_second_gap_among_parked_messages_starts_another_repair() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 1, A, 1));
    let tk = ticket(&msg(&mut t, h(1, 4, A, 4)));
    msg(&mut t, h(1, 5, A, 5));
    msg(&mut t, h(1, 9, A, 8));
    msg(&mut t, h(1, 10, A, 9));
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(4));
    assert_eq!(a[1], Action::Deliver(5));
    // 9 reveals a gap; 10 follows it directly (a loss, then live
    // messages): only the gap is asked for, 9 and 10 stay parked.
    let tk2 = ticket(&a);
    assert_eq!(range(&tk2), (A, 6, 8));
    assert_eq!(t.parked(), 2);
    assert_eq!(
        finish(&mut t, &tk2),
        vec![Action::Deliver(9), Action::Deliver(10)]
    );
    assert_eq!(t.parked(), 0);
}

#[test]
fn a_jump_then_a_run_folds_only_the_jumps() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 1, A, 1));
    let tk = ticket(&msg(&mut t, h(1, 4, A, 3)));
    // Parked: 6 and 9 jump (filtering-like), 10 and 11 follow 9.
    for (seq, lane_seq) in [(6, 5), (9, 7), (10, 8), (11, 9)] {
        assert!(msg(&mut t, h(1, seq, A, lane_seq)).is_empty());
    }
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(4));
    // 6 jumps and 9 jumps: one request up to just before 9, which starts
    // the run and stays parked with 10 and 11 (6 comes from history).
    let tk2 = ticket(&a);
    assert_eq!(range(&tk2), (A, 5, 8));
    assert_eq!(t.parked(), 3);
    assert_eq!(
        finish(&mut t, &tk2),
        vec![Action::Deliver(9), Action::Deliver(10), Action::Deliver(11)]
    );
}

#[test]
fn a_lone_parked_gap_asks_only_its_own_range() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 1, A, 1));
    let tk = ticket(&msg(&mut t, h(1, 4, A, 3)));
    msg(&mut t, h(1, 9, A, 5));
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(4));
    let tk2 = ticket(&a);
    assert_eq!(range(&tk2), (A, 5, 8));
    assert_eq!(finish(&mut t, &tk2), vec![Action::Deliver(9)]);
}

#[test]
fn filtering_jumps_behind_a_repair_are_folded_into_one_request() {
    let mut t = Tracker::new(10_000);
    msg(&mut t, h(1, 1, A, 1));
    // Every message of ours is two lane seqs after the previous one (the
    // others are filtered by our prefix).
    let tk = ticket(&msg(&mut t, h(1, 3, A, 3)));
    for i in 2..=2000u64 {
        assert!(msg(&mut t, h(1, 2 * i + 1, A, 2 * i + 1)).is_empty());
    }
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(3));
    let tk2 = ticket(&a);
    // 5 reveals a gap; 1024 parked messages are folded: the range ends just
    // before the 1024th message parked behind 5.
    let last = 2 * (2 + 1024) + 1;
    assert_eq!(range(&tk2), (A, 4, last - 1));
    assert_eq!(t.parked(), 2000 - 2 - 1023);
    let a = finish(&mut t, &tk2);
    assert_eq!(a[0], Action::Deliver(last));
    assert_eq!(range(&ticket(&a)).1, last + 1);
}

#[test]
fn finishing_an_unknown_or_old_ticket_is_harmless() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 1, A, 1));
    let bogus = Ticket {
        id: 99,
        origin: o(),
        epoch: 1,
        lane: Some(A),
        from: 1,
        to: 2,
    };
    assert!(finish(&mut t, &bogus).is_empty());
    assert_eq!(msg(&mut t, h(1, 2, A, 2)), vec![Action::Deliver(2)]);
}

#[test]
fn forgotten_lanes_start_afresh() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 1, A, 1));
    msg(&mut t, h(1, 2, B, 1));
    t.retain_lanes(|l| l == B);
    // Lane A comes back much later: with a floor past it, a baseline.
    assert_eq!(
        msg_floor(&mut t, h(1, 50, A, 20), 49),
        vec![Action::Deliver(50)]
    );
    assert_eq!(msg(&mut t, h(1, 51, B, 2)), vec![Action::Deliver(51)]);
}

#[test]
fn extreme_values_from_the_network_do_not_panic() {
    let mut t = Tracker::new(4);
    msg(&mut t, h(1, u64::MAX, A, u64::MAX));
    msg(&mut t, h(1, u64::MAX, A, u64::MAX));
    msg(&mut t, h(1, 0, A, 0));
    beat(&mut t, 1, u64::MAX, &[(A, u64::MAX, u64::MAX)]);
    msg(&mut t, h(1, 5, B, u64::MAX));
    let a = msg(&mut t, h(1, u64::MAX, B, 3));
    let _ = a;
    beat(&mut t, u64::MAX, 0, &[(B, u64::MAX, 0)]);
    msg(&mut t, h(0, 0, 0, 0));
}

#[test]
fn a_lane_nobody_covers_is_not_tracked() {
    let mut t = Tracker::new(100);
    assert_eq!(msg(&mut t, h(1, 1, A, 1)), [Action::Deliver(1)]);
    // Unsubscribed: a late message of lane B is delivered (to nobody) and
    // leaves no lane behind...
    let mut out = Vec::new();
    t.on_message(&o(), h(1, 2, B, 1), 2, || None, None, &mut out);
    assert_eq!(out, [Action::Deliver(2)]);
    // ...so a subscription made much later does not repair what it never
    // wanted: its floor decides.
    assert_eq!(
        msg_floor(&mut t, h(1, 900, B, 800), 899),
        [Action::Deliver(900)]
    );
}

#[test]
fn heartbeat_marks_beyond_the_origins_last_seq_are_ignored() {
    let mut t = Tracker::new(100);
    msg(&mut t, h(1, 10, A, 5));
    // Claims lane A reached seq 900 while the origin stamped only 15;
    // acting on it would move the lane to 900 and drop 16..=900 as
    // duplicates. A lane seq above its seq is as impossible.
    assert!(beat(&mut t, 1, 15, &[(A, 7, 900)]).is_empty());
    assert!(beat(&mut t, 1, 15, &[(A, 15, 14)]).is_empty());
    assert_eq!(msg(&mut t, h(1, 11, A, 6)), vec![Action::Deliver(11)]);
}

#[test]
fn in_a_session_a_jump_of_a_lane_complete_up_to_it_is_filtering() {
    let mut t = Tracker::new(100);
    // The connection is complete after seq 10; lane A had everything to 12.
    assert_eq!(
        msg_in_session(&mut t, h(1, 12, A, 3), 10),
        [Action::Deliver(12)]
    );
    // Seqs 13..=19 (lane seqs 4..=6) were other topics: no repair.
    assert_eq!(
        msg_in_session(&mut t, h(1, 20, A, 7), 10),
        [Action::Deliver(20)]
    );
    assert_eq!(
        msg_in_session(&mut t, h(1, 20, A, 7), 10),
        [Action::Duplicate(20)]
    );
    // A heartbeat in the session showing the lane further on: nothing more
    // we want there; the lane moves on, later seqs are in order.
    assert!(beat_in(&mut t, 1, 30, &[(A, 9, 25)], Some(10)).is_empty());
    assert_eq!(msg(&mut t, h(1, 31, A, 10)), [Action::Deliver(31)]);
    assert_eq!(msg(&mut t, h(1, 25, A, 9)), [Action::Duplicate(25)]);
}

#[test]
fn a_jump_from_before_the_session_is_repaired() {
    let mut t = Tracker::new(100);
    assert_eq!(msg(&mut t, h(1, 5, A, 1)), [Action::Deliver(5)]);
    // A new session after a miss: complete only after seq 40. Lane A's
    // last is 5: 6..=49 may hold losses and is repaired, the message parks.
    let a = msg_in_session(&mut t, h(1, 50, A, 9), 40);
    let tk = ticket(&a);
    assert_eq!(range(&tk), (A, 6, 49));
    // Outside a session (no marker yet, or a subscription change in
    // flight) the same jump is repaired too.
    let mut t = Tracker::new(100);
    assert_eq!(msg(&mut t, h(1, 5, A, 1)), [Action::Deliver(5)]);
    assert_eq!(range(&ticket(&msg(&mut t, h(1, 9, A, 3)))), (A, 6, 8));
    // And a heartbeat of a lane not complete up to the session is repaired.
    let mut t = Tracker::new(100);
    assert_eq!(msg(&mut t, h(1, 5, A, 1)), [Action::Deliver(5)]);
    let b = beat_in(&mut t, 1, 60, &[(A, 4, 55)], Some(40));
    assert_eq!(range(&ticket(&b)), (A, 6, 55));
}
