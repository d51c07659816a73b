// The federated demo (`--broadcasters 2`) in Debian's chromium: two pages on
// two different workers; page A publishes a stream of chat messages, and
// mid-stream this script SIGKILLs the broadcaster A's worker prefers. Both
// pages must stay live (no websocket reconnect), and show every message
// exactly once, in order. Then the Fabric view must show the supervisor's
// restart (a new pid and epoch, up) and both links up again; a second
// stream after the rejoin arrives once, in order, too. Screenshots go to
// $ARTIFACTS.
//
//   node failover.mjs http://127.0.0.1:PORT w1=b1:PID,w2=b2:PID
//
// (worker → the broadcaster it prefers, and that broadcaster's pid.)
// Exits 0 on success and prints "browser ok"; any failure exits 1.
import { join } from "node:path";
import { launch, pagesOnTwoWorkers } from "./launch.mjs";

const url = process.argv[2];
const prefers = new Map(
  (process.argv[3] || "").split(",").filter(Boolean).map((kv) => {
    const [w, rest] = kv.split("=");
    const [b, pid] = rest.split(":");
    return [w, { b, pid: Number(pid) }];
  }),
);
const { context, artifacts, fail, done } = await launch(110000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The chat texts a page shows, in order.
const texts = (p) => p.evaluate(() => [...document.querySelectorAll("#chat-log li.msg .text")].map((e) => e.textContent));
// Every one of `sent` exactly once, in the order sent.
async function checkOnceInOrder(p, name, sent) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const shown = (await texts(p)).filter((t) => sent.includes(t));
    const missing = sent.filter((t) => !shown.includes(t));
    if (!missing.length) {
      const dup = shown.length !== sent.length;
      const order = shown.every((t, i) => t === sent[i]);
      if (dup || !order) await fail(`page ${name}: ${shown.length} shown for ${sent.length} sent (duplicates or order): ${JSON.stringify(shown)}`);
      return;
    }
    if (Date.now() > deadline) await fail(`page ${name}: ${missing.length} of ${sent.length} never shown, e.g. ${missing.slice(0, 3)}`);
    await sleep(100);
  }
}
async function publishStream(p, label, n, onEach) {
  const sent = [];
  for (let k = 0; k < n; k++) {
    const t = `${label} ${k} ${Date.now()}`;
    await p.evaluate((t) => window.fanfare.publish("chat.lobby", { name: "stream", text: t, client: "test" }), t);
    sent.push(t);
    if (onEach) await onEach(k);
    await sleep(125); // 8/s, under the hub's 20/s per connection
  }
  return sent;
}

try {
  const { a, b, wa, wb } = await pagesOnTwoWorkers(context, url, "/#chat");
  if (!wa || !wb || wa === wb) await fail(`expected two different workers, got ${wa} and ${wb}`);
  const victim = prefers.get(wa);
  if (!victim) await fail(`no broadcaster known for worker ${wa}: ${process.argv[3]}`);
  console.log(`page A on ${wa} (prefers ${victim.b}, pid ${victim.pid}), page B on ${wb}`);
  // The Fabric view knows both broadcasters and the links between them.
  await b.waitForFunction(() => document.querySelectorAll('#fabric-table tr[data-broadcaster][data-up="true"]').length >= 2
    && document.querySelectorAll('#fabric-table tr[data-link][data-state="up"]').length >= 2, null, { timeout: 30000 });
  // Page B notes when each chat text arrives (for the recovery time).
  await b.evaluate(() => {
    window.__arrivals = {};
    new MutationObserver(() => {
      for (const e of document.querySelectorAll("#chat-log li.msg .text")) {
        if (!(e.textContent in window.__arrivals)) window.__arrivals[e.textContent] = Date.now();
      }
    }).observe(document.getElementById("chat-log"), { childList: true });
  });
  const reconnects = async () => [await a.evaluate(() => window.fanfare.stats.reconnects), await b.evaluate(() => window.fanfare.stats.reconnects)];
  const before = await reconnects();

  // ---- stream 1, SIGKILL mid-way ----
  let killedAt = 0;
  const sent1 = await publishStream(a, "before-and-after-kill", 40, async (k) => {
    if (k === 12) {
      process.kill(victim.pid, "SIGKILL");
      killedAt = Date.now();
      console.log(`SIGKILLed ${victim.b} (pid ${victim.pid}) after message ${k}`);
    }
  });
  await checkOnceInOrder(b, "B", sent1);
  await checkOnceInOrder(a, "A", sent1);
  const arrivals = await b.evaluate(() => window.__arrivals);
  const firstAfter = sent1[13];
  console.log(`stream 1: all ${sent1.length} shown once, in order, on both pages; the first message published after the kill reached page B ${arrivals[firstAfter] - killedAt} ms after the kill`);
  for (const p of [a, b]) {
    if (await p.evaluate(() => document.body.dataset.status) !== "open") await fail("a page is not live");
  }
  const after = await reconnects();
  if (after[0] !== before[0] || after[1] !== before[1]) await fail(`a page had to reconnect: ${before} → ${after}`);

  // ---- the supervisor restarts it; it rejoins (Fabric view) ----
  await b.click('.tab[data-tab="fabric"]');
  await b.waitForFunction(({ id, pid }) => {
    const row = document.querySelector(`#fabric-table tr[data-broadcaster="${id}"]`);
    const links = [...document.querySelectorAll("#fabric-table tr[data-link]")];
    return row && row.dataset.up === "true" && row.dataset.pid !== "" && Number(row.dataset.pid) !== pid
      && links.length >= 2 && links.every((l) => l.dataset.state === "up");
  }, { id: victim.b, pid: victim.pid }, { timeout: 45000 });
  const newPid = await b.evaluate((id) => document.querySelector(`#fabric-table tr[data-broadcaster="${id}"]`).dataset.pid, victim.b);
  console.log(`fabric view: ${victim.b} back as pid ${newPid}, links up, ${Date.now() - killedAt} ms after the kill`);
  await sleep(1500);
  await b.screenshot({ path: join(artifacts, "browser-failover-fabric.png") });
  await b.click('.tab[data-tab="chat"]');

  // ---- stream 2 after the rejoin ----
  const sent2 = await publishStream(a, "after-rejoin", 15);
  await checkOnceInOrder(b, "B", sent2);
  await checkOnceInOrder(a, "A", sent2);
  await b.screenshot({ path: join(artifacts, "browser-failover-chat.png") });
  console.log(`stream 2: all ${sent2.length} shown once, in order, on both pages`);
  for (const [name, p] of [["A", a], ["B", b]]) {
    const notes = await p.evaluate(() => [...document.querySelectorAll("#chat-log li.system")].map((e) => e.textContent));
    const stats = await p.evaluate(() => window.fanfare.stats);
    // Nothing is lost in a failover, and a re-sent copy the worker's client
    // drops is no hole: any gap notice is a failure.
    console.log(`page ${name}: gaps ${stats.gaps}, reconnects ${stats.reconnects}, notes ${JSON.stringify(notes)}`);
    if (stats.gaps !== 0) await fail(`page ${name} reported ${stats.gaps} gap(s): ${JSON.stringify(notes)}`);
  }
  console.log(`restarted pid=${newPid}`);
  await done();
  console.log("browser ok");
  process.exit(0);
} catch (e) {
  await fail(e && e.stack ? e.stack : String(e));
}
