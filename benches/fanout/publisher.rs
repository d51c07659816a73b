//! Fanfare's publisher (`FANFARE_BENCH_ROLE=fanout-publisher`, args:
//! `PULL PUB REPLAY PAD [ROOMS]`): one fanfare-client, open loop. Prints
//! `ready`, then per stdin line `run R RATE COUNT` publishes COUNT events on
//! `bench.e2e` (ROOMS > 0: event j on `room.<j % ROOMS>`) paced at RATE/s
//! and prints `done run=R sent=N elapsed_us=E`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fanfare_client::{Client, ClientOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::event::{due, event_data, parse_run, room_event_data, room_slot};

/// The role's main.
pub fn run(args: &[String]) -> Result<()> {
    let (pull, publish, replay, pad, rooms) = match args {
        [pull, publish, replay, pad] => (pull, publish, replay, pad, "0"),
        [pull, publish, replay, pad, rooms] => (pull, publish, replay, pad, rooms.as_str()),
        _ => anyhow::bail!("fanout-publisher: expected PULL PUB REPLAY PAD [ROOMS], got {args:?}"),
    };
    let pad: usize = pad.parse().context("PAD")?;
    let rooms: u64 = rooms.parse().context("ROOMS")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client =
            Client::connect(ClientOptions::new(pull, publish, replay).publisher_id("bench"))
                .await?;
        println!("ready");
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while let Some(line) = lines.next_line().await? {
            let Some((r, rate, count)) = parse_run(&line) else {
                eprintln!("fanout-publisher: unknown command {line:?}");
                continue;
            };
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < count {
                let due = due(start.elapsed(), rate, count);
                while sent < due {
                    if rooms == 0 {
                        client
                            .publish("bench.e2e", event_data(r, sent, pad))
                            .await?;
                    } else {
                        let (room, i) = room_slot(sent, rooms);
                        client
                            .publish(&format!("room.{room}"), room_event_data(r, i, room, pad))
                            .await?;
                    }
                    sent += 1;
                }
                if sent < count {
                    tick.tick().await;
                }
            }
            println!(
                "done run={r} sent={sent} elapsed_us={}",
                start.elapsed().as_micros()
            );
        }
        client.close().await;
        anyhow::Ok(())
    })
}
