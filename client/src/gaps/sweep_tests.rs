//! Unit tests of sweeps: a repair of an origin's range across lanes, with
//! the origin's live messages held behind it.

use super::tests::{finish, h, o, ticket, A, B};
use super::*;

/// A live message (payload: its seq) on a connection in a session from 1.
fn live(t: &mut Tracker<u64>, head: Head) -> Vec<Action<u64>> {
    let mut out = Vec::new();
    t.on_message(&o(), head, head.seq, || Some(0), Some(1), &mut out);
    out
}

fn reply(t: &mut Tracker<u64>, head: Head) -> Vec<Action<u64>> {
    let mut out = Vec::new();
    t.on_sweep_reply(&o(), head, head.seq, || Some(0), &mut out);
    out
}

fn sweep(t: &mut Tracker<u64>, epoch: u64, from: u64, to: u64) -> (bool, Vec<Action<u64>>) {
    let mut out = Vec::new();
    let started = t.sweep(&o(), epoch, (from, to), Some(1), &mut out);
    (started, out)
}

fn sweep_ticket(actions: &[Action<u64>]) -> Ticket {
    let t = ticket(actions);
    assert_eq!(t.lane, None, "a sweep has no lane");
    t
}

#[test]
fn a_sweep_holds_live_messages_and_steps_its_replies_through_lanes() {
    let mut t = Tracker::new(100);
    assert_eq!(live(&mut t, h(1, 1, A, 1)), vec![Action::Deliver(1)]);
    let (started, a) = sweep(&mut t, 1, 2, 5);
    assert!(started);
    let tk = sweep_ticket(&a);
    assert_eq!((tk.from, tk.to), (2, 5));
    assert_eq!(t.lowest_pending("b1"), Some((1, 2)));
    // Live after the marker: held, whatever its lane.
    assert!(live(&mut t, h(1, 6, A, 4)).is_empty());
    assert!(live(&mut t, h(1, 7, B, 2)).is_empty());
    assert_eq!(t.parked(), 2);
    // Replies go through their lanes at once (B is new here).
    assert_eq!(reply(&mut t, h(1, 3, A, 2)), vec![Action::Deliver(3)]);
    assert_eq!(reply(&mut t, h(1, 5, B, 1)), vec![Action::Deliver(5)]);
    // Lane A skips lane seq 3 (seq 4, not ours: filtered, as the sweep
    // answered the whole range): the held messages follow in order.
    assert_eq!(
        finish(&mut t, &tk),
        vec![Action::Deliver(6), Action::Deliver(7)]
    );
    assert_eq!(t.parked(), 0);
    assert_eq!(t.lowest_pending("b1"), None);
    assert_eq!(live(&mut t, h(1, 8, A, 5)), vec![Action::Deliver(8)]);
}

#[test]
fn a_miss_during_a_sweep_is_swept_after_what_came_before_it() {
    let mut t = Tracker::new(100);
    live(&mut t, h(1, 1, A, 1));
    let tk = sweep_ticket(&sweep(&mut t, 1, 2, 5).1);
    assert!(live(&mut t, h(1, 6, A, 3)).is_empty());
    // A second marker: 7..9 were missed after 6.
    let (queued, a) = sweep(&mut t, 1, 7, 9);
    assert!(queued && a.is_empty(), "queued behind what waits");
    assert!(live(&mut t, h(1, 10, A, 6)).is_empty());
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(6));
    let tk2 = sweep_ticket(&a);
    assert_eq!((tk2.from, tk2.to), (7, 9));
    assert_eq!(reply(&mut t, h(1, 8, A, 4)), vec![Action::Deliver(8)]);
    assert_eq!(finish(&mut t, &tk2), vec![Action::Deliver(10)]);
    assert_eq!(t.parked(), 0);
}

#[test]
fn past_the_parking_bound_a_held_message_becomes_a_range_to_sweep() {
    let mut t = Tracker::new(1);
    live(&mut t, h(1, 1, A, 1));
    let tk = sweep_ticket(&sweep(&mut t, 1, 2, 3).1);
    assert!(live(&mut t, h(1, 4, A, 2)).is_empty());
    assert!(
        live(&mut t, h(1, 5, A, 3)).is_empty(),
        "dropped, remembered"
    );
    assert!(
        live(&mut t, h(1, 6, A, 4)).is_empty(),
        "merged into one range"
    );
    assert!(t.parking_full());
    let a = finish(&mut t, &tk);
    assert_eq!(a[0], Action::Deliver(4));
    let tk2 = sweep_ticket(&a);
    assert_eq!((tk2.from, tk2.to), (5, 6));
    assert_eq!(reply(&mut t, h(1, 5, A, 3)), vec![Action::Deliver(5)]);
    assert_eq!(reply(&mut t, h(1, 6, A, 4)), vec![Action::Deliver(6)]);
    assert!(finish(&mut t, &tk2).is_empty());
}

#[test]
fn heartbeat_marks_wait_for_the_sweep() {
    let mut t = Tracker::new(100);
    live(&mut t, h(1, 1, A, 1));
    let tk = sweep_ticket(&sweep(&mut t, 1, 2, 5).1);
    let marks = [LaneMark {
        lane: A,
        lane_seq: 9,
        seq: 9,
    }];
    let mut out = Vec::new();
    t.on_heartbeat(&o(), 1, 9, &marks, |_| Some(0), None, &mut out);
    assert!(out.is_empty(), "no lane repair while the sweep runs");
    assert!(finish(&mut t, &tk).is_empty());
}

#[test]
fn a_restart_abandons_the_sweep_and_releases_what_waits() {
    let mut t = Tracker::new(100);
    live(&mut t, h(1, 1, A, 1));
    let tk = sweep_ticket(&sweep(&mut t, 1, 2, 5).1);
    assert!(live(&mut t, h(1, 6, A, 3)).is_empty());
    sweep(&mut t, 1, 7, 8);
    let a = live(&mut t, h(2, 1, A, 1));
    assert!(matches!(a[0], Action::Restarted { .. }));
    let abandoned: Vec<(u64, u64)> = a
        .iter()
        .filter_map(|x| match x {
            Action::Abandoned(t) if t.lane.is_none() => Some((t.from, t.to)),
            _ => None,
        })
        .collect();
    assert_eq!(abandoned, vec![(2, 5), (7, 8)]);
    assert!(a.contains(&Action::Deliver(6)));
    assert_eq!(t.parked(), 0);
    assert!(finish(&mut t, &tk).is_empty(), "the old sweep is gone");
    assert_eq!(t.lowest_pending("b1"), None);
}

#[test]
fn an_origin_or_epoch_not_known_is_not_swept() {
    let mut t = Tracker::<u64>::new(100);
    assert!(!sweep(&mut t, 1, 2, 5).0, "nothing heard of it");
    live(&mut t, h(1, 1, A, 1));
    assert!(!sweep(&mut t, 2, 2, 5).0, "another epoch");
    assert!(!sweep(&mut t, 1, 5, 4).0, "an empty range");
    assert_eq!(live(&mut t, h(1, 2, A, 2)), vec![Action::Deliver(2)]);
}

#[test]
fn a_sweep_moves_the_origins_last_seq_to_the_markers() {
    let mut t = Tracker::new(100);
    live(&mut t, h(1, 1, A, 1));
    sweep(&mut t, 1, 2, 40);
    // A subscription made now starts after 40, not inside the range being
    // swept with the patterns of before.
    assert_eq!(t.max_seq("b1"), Some((1, 40)));
}

#[test]
fn a_queued_range_keeps_its_own_session() {
    let mut t = Tracker::new(100);
    live(&mut t, h(1, 1, A, 1));
    let tk = sweep_ticket(&sweep(&mut t, 1, 2, 3).1);
    // A miss after a subscription change: its session starts at 10.
    let mut out = Vec::new();
    assert!(t.sweep(&o(), 1, (4, 12), Some(10), &mut out));
    let tk2 = sweep_ticket(&finish(&mut t, &tk));
    assert_eq!((tk2.from, tk2.to), (4, 12));
    // Lane A had only seq 1 (< 10): a jump is not filtering under session
    // 10, so its reply asks for the lane's gap.
    let a = reply(&mut t, h(1, 11, A, 5));
    let lane_repair = a
        .iter()
        .find_map(|x| match x {
            Action::Repair(t) => Some((t.lane, t.from, t.to)),
            _ => None,
        })
        .expect("a lane repair");
    assert_eq!(lane_repair, (Some(A), 2, 10));
}

#[test]
fn on_a_restart_the_lanes_parked_messages_come_before_the_sweeps_held_ones() {
    let mut t = Tracker::new(100);
    let mut out = Vec::new();
    t.on_message(&o(), h(1, 1, A, 1), 1, || Some(0), None, &mut out);
    // Lane A jumps (no session): repaired, 5 parked.
    out.clear();
    t.on_message(&o(), h(1, 5, A, 3), 5, || Some(0), None, &mut out);
    assert!(matches!(out[0], Action::Repair(_)));
    sweep(&mut t, 1, 6, 8);
    assert!(live(&mut t, h(1, 9, A, 4)).is_empty());
    let a = live(&mut t, h(2, 1, A, 1));
    let delivered: Vec<u64> = a
        .iter()
        .filter_map(|x| match x {
            Action::Deliver(m) => Some(*m),
            _ => None,
        })
        .collect();
    assert_eq!(
        delivered,
        vec![5, 9, 1],
        "lower seqs first, then the new epoch"
    );
}
