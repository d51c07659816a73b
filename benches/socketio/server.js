// One Socket.IO 4 server with the Redis adapter: side B of the fanout bench
// (benches/fanout.rs). Listens on 127.0.0.1:0 (websocket transport only),
// prints `ready port=N`, exits when its stdin closes. A client that emits
// `join` ROOM (with an ack) is put in that room (the rooms mode).
// Usage: node server.js REDIS_URL
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

async function main() {
  const url = process.argv[2];
  if (!url) throw new Error("usage: node server.js REDIS_URL");
  const pub = createClient({ url });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis pub:", e.message));
  sub.on("error", (e) => console.error("redis sub:", e.message));
  await Promise.all([pub.connect(), sub.connect()]);
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });
  // Rooms mode of the bench: a client emits `join` with its room (and an
  // ack callback), the server joins it and acknowledges.
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      if (typeof room === "string" && room.length <= 64) socket.join(room);
      if (typeof ack === "function") ack(true);
    });
  });
  httpServer.listen(0, "127.0.0.1", () => {
    console.log(`ready port=${httpServer.address().port}`);
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
