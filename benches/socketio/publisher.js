// The Socket.IO side's publisher (benches/fanout.rs): @socket.io/redis-emitter
// on a Redis client, open loop. Reads commands on stdin:
//   run R RATE COUNT  -> emits COUNT events "event" {bench_r, bench_i, bench_t, pad}
//                        paced at RATE/s (catching up every ~1 ms tick), then
//                        prints `done run=R sent=N elapsed_us=E`
//                        (ROOMS > 0: event j goes to room `room.<j % ROOMS>`
//                        with io.to(room).emit, bench_i = j / ROOMS, and
//                        carries bench_room)
// Prints `ready` once connected; exits when stdin closes.
// Usage: node publisher.js REDIS_URL PAD_BYTES [ROOMS]
"use strict";
const { createClient } = require("redis");
const { Emitter } = require("@socket.io/redis-emitter");
const { performance } = require("perf_hooks");
const readline = require("readline");

function nowUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

async function main() {
  const url = process.argv[2];
  const pad = "x".repeat(Number(process.argv[3] || 40));
  const rooms = Number(process.argv[4] || 0);
  if (!url) throw new Error("usage: node publisher.js REDIS_URL PAD_BYTES");
  const client = createClient({ url });
  client.on("error", (e) => console.error("redis:", e.message));
  await client.connect();
  const io = new Emitter(client);
  const queue = [];
  let busy = false;
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    queue.push(line.trim());
    if (!busy) next();
  });
  rl.on("close", () => process.exit(0));

  function next() {
    const line = queue.shift();
    if (line === undefined) {
      busy = false;
      return;
    }
    busy = true;
    const [op, r, rate, count] = line.split(/\s+/);
    if (op !== "run") {
      console.error(`unknown command: ${line}`);
      return next();
    }
    run(Number(r), Number(rate), Number(count), () => next());
  }

  function run(r, rate, count, done) {
    const start = performance.now();
    let sent = 0;
    const tick = () => {
      const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
      while (sent < due) {
        if (rooms > 0) {
          const room = sent % rooms;
          io.to(`room.${room}`).emit("event", {
            bench_r: r,
            bench_i: Math.floor(sent / rooms),
            bench_room: room,
            bench_t: nowUs(),
            pad,
          });
        } else {
          io.emit("event", { bench_r: r, bench_i: sent, bench_t: nowUs(), pad });
        }
        sent++;
      }
      if (sent < count) {
        setTimeout(tick, 1);
      } else {
        const elapsed = Math.round((performance.now() - start) * 1000);
        console.log(`done run=${r} sent=${sent} elapsed_us=${elapsed}`);
        done();
      }
    };
    tick();
  }
  console.log("ready");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
