//! What every side publishes: the event data, the Fanfare-shaped frame the
//! floor writes, and the `run R RATE COUNT` pacing shared by the publishers.

use std::time::Duration;

/// The event data: run, sequence, publisher time (µs since the epoch), padding.
pub fn event_data(run: u64, i: u64, pad: usize) -> String {
    format!(
        "{{\"bench_r\":{run},\"bench_i\":{i},\"bench_t\":{},\"pad\":\"{}\"}}",
        fanfare_protocol::stamp::now_us(),
        "x".repeat(pad)
    )
}

/// The event data of the rooms mode: also the room, and `i` is the
/// sequence within that room.
pub fn room_event_data(run: u64, i: u64, room: u64, pad: usize) -> String {
    format!(
        "{{\"bench_r\":{run},\"bench_i\":{i},\"bench_room\":{room},\"bench_t\":{},\"pad\":\"{}\"}}",
        fanfare_protocol::stamp::now_us(),
        "x".repeat(pad)
    )
}

/// Event `j` of a run spread round-robin over `rooms`: (room, sequence in it).
pub fn room_slot(j: u64, rooms: u64) -> (u64, u64) {
    let rooms = rooms.max(1);
    (j % rooms, j / rooms)
}

/// A hub `event` frame around `data`, the shape (and size) Fanfare sends.
pub fn fanfare_frame(topic: &str, data: &str) -> String {
    format!(
        "{{\"op\":\"event\",\"topic\":\"{topic}\",\"data\":{data},\"pos\":\"bench:1732374000000000:12345\",\"ts\":{},\"from_unverified\":\"bench\"}}",
        fanfare_protocol::stamp::now_us()
    )
}

/// Parses `run R RATE COUNT`.
pub fn parse_run(line: &str) -> Option<(u64, f64, u64)> {
    let mut w = line.split_whitespace();
    if w.next()? != "run" {
        return None;
    }
    let r = w.next()?.parse().ok()?;
    let rate: f64 = w.next()?.parse().ok()?;
    let count = w.next()?.parse().ok()?;
    (rate.is_finite() && rate > 0.0).then_some((r, rate, count))
}

/// Events due `elapsed` into a run at `rate`/s (the first one at once).
pub fn due(elapsed: Duration, rate: f64, count: u64) -> u64 {
    ((elapsed.as_secs_f64() * rate) as u64)
        .saturating_add(1)
        .min(count)
}
