// Two pages of the demo in Debian's chromium, on two different workers: a
// chat message sent in one appears in the other's DOM; then B is cut off,
// A publishes, and B's reconnect must be a real resume (its `subscribed`
// says recovered, with the missed events replayed) showing each message
// exactly once. Screenshots go to $ARTIFACTS.
//
//   node two_pages.mjs http://127.0.0.1:PORT
//
// Exits 0 on success and prints "browser ok"; any failure exits 1.
import { join } from "node:path";
import { launch, pagesOnTwoWorkers } from "./launch.mjs";

const url = process.argv[2];
const { context, artifacts, fail, done } = await launch(90000);

try {
  // On two workers, so the message really crosses the fabric.
  const { a, b, wa, wb } = await pagesOnTwoWorkers(context, url, "/#chat");
  console.log(`page A on worker ${wa}, page B on worker ${wb}`);
  if (!wa || !wb || wa === wb) await fail(`expected two different workers, got ${wa} and ${wb}`);
  const text = `hello from A ${Date.now()}`;
  await a.fill("#chat-name", "alice");
  await a.fill("#chat-input", text);
  await a.click("#chat-send");
  const li = b.locator("#chat-log li.msg", { hasText: text });
  await li.waitFor({ timeout: 15000 });
  const via = await li.getAttribute("data-from");
  console.log(`page B shows the message, published via ${via}`);
  if (via !== wa) await fail(`expected via ${wa}, got ${via}`);
  // fanfare.js: B drops its websocket and reconnects (to any worker) with
  // its position; what A publishes meanwhile shows up in B exactly once.
  // B is held offline until A has seen the burst (its reconnect attempts go
  // to a closed port meanwhile), so B can only get the burst by resuming.
  await b.evaluate(() => {
    const Real = window.WebSocket;
    window.__held = 0;
    window.__release = () => { window.WebSocket = Real; };
    window.WebSocket = function () {
      window.__held++;
      return new Real("ws://127.0.0.1:9/");
    };
    window.fanfare.reconnect();
  });
  await b.waitForSelector('body:not([data-status="open"])', { timeout: 15000 });
  const burst = [1, 2, 3].map((k) => `while B reconnects ${k} ${Date.now()}`);
  for (const t of burst) {
    await a.fill("#chat-input", t);
    await a.click("#chat-send");
  }
  for (const t of burst) {
    await a.locator("#chat-log li.msg", { hasText: t }).first().waitFor({ timeout: 15000 });
  }
  const offline = await b.evaluate(() => document.body.dataset.status !== "open");
  if (!offline) await fail("B came back before the burst was published");
  const held = await b.evaluate(() => { window.__release(); return window.__held; });
  for (const t of burst) {
    await b.locator("#chat-log li.msg", { hasText: t }).first().waitFor({ timeout: 30000 });
  }
  await b.waitForSelector('body[data-status="open"]', { timeout: 15000 });
  // app.js notes every resume that replayed something: "resumed on W: N
  // missed event(s) replayed", plus ", some lost" when not recovered.
  const resumes = await b.evaluate(() =>
    [...document.querySelectorAll("#chat-log li.system")].map((e) => e.textContent).filter((t) => t.startsWith("resumed on")));
  const replayed = resumes.map((t) => Number((t.match(/: (\d+) missed/) || [])[1] || 0)).reduce((x, y) => x + y, 0);
  console.log(`resume notes: ${JSON.stringify(resumes)}`);
  if (replayed < burst.length) await fail(`expected a resume replaying at least ${burst.length}, got ${JSON.stringify(resumes)}`);
  if (resumes.some((t) => t.includes("some lost"))) await fail(`resume not recovered: ${JSON.stringify(resumes)}`);
  const counts = await b.evaluate((ts) => ts.map((t) =>
    [...document.querySelectorAll("#chat-log li.msg .text")].filter((e) => e.textContent === t).length), burst);
  const reconnects = await b.evaluate(() => window.fanfare.stats.reconnects);
  console.log(`after reconnect (now on ${await b.getAttribute("body", "data-worker")}): counts ${counts}, reconnects ${reconnects}`);
  if (counts.some((c) => c !== 1)) await fail(`expected each message once, got ${counts}`);
  // One reconnect, plus one per attempt made while B was held offline.
  if (reconnects !== 1 + held) await fail(`expected ${1 + held} reconnects (${held} held), got ${reconnects}`);
  // Charts and fabric view fill within a few seconds.
  await b.click('.tab[data-tab="monitor"]');
  await b.waitForFunction(() => document.querySelectorAll("#worker-tiles .tile").length >= 2, null, { timeout: 15000 });
  await b.waitForTimeout(3000);
  await b.screenshot({ path: join(artifacts, "browser-monitor.png") });
  await b.click('.tab[data-tab="chat"]');
  await b.waitForTimeout(500);
  await b.screenshot({ path: join(artifacts, "browser-chat.png") });
  await b.click('.tab[data-tab="fabric"]');
  await b.waitForTimeout(500);
  await b.screenshot({ path: join(artifacts, "browser-fabric.png") });
  await done();
  console.log("browser ok");
  process.exit(0);
} catch (e) {
  await fail(e && e.stack ? e.stack : String(e));
}
