// Two pages of the demo in Debian's chromium: a chat message sent in one
// appears in the other's DOM. Screenshots go to $ARTIFACTS.
//
//   node two_pages.mjs http://127.0.0.1:PORT
//
// Exits 0 on success and prints "browser ok"; any failure exits 1.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const url = process.argv[2];
const artifacts = process.env.ARTIFACTS || "target/test-artifacts";
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(artifacts, { recursive: true });

const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];
// A fresh profile directory per run.
const profile = mkdtempSync(join(tmpdir(), "fanfare-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  args,
  headless: true,
  viewport: { width: 1400, height: 900 },
  timeout: 60000,
});
const cleanup = () => rmSync(profile, { recursive: true, force: true });
const fail = async (msg) => {
  console.error("browser test failed:", msg);
  await context.close().catch(() => {});
  cleanup();
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out after 90 s"), 90000);

try {
  const a = await context.newPage();
  const b = await context.newPage();
  for (const p of [a, b]) {
    p.on("pageerror", (e) => console.error("page error:", e.message));
    await p.goto(url + "/#chat");
    await p.waitForSelector('body[data-status="open"]', { timeout: 30000 });
  }
  const wa = await a.getAttribute("body", "data-worker");
  const wb = await b.getAttribute("body", "data-worker");
  console.log(`page A on worker ${wa}, page B on worker ${wb}`);
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
  await b.evaluate(() => window.fanfare.reconnect());
  const burst = [1, 2, 3].map((k) => `while B reconnects ${k} ${Date.now()}`);
  for (const t of burst) {
    await a.fill("#chat-input", t);
    await a.click("#chat-send");
  }
  for (const t of burst) {
    await b.locator("#chat-log li.msg", { hasText: t }).first().waitFor({ timeout: 15000 });
  }
  await b.waitForSelector('body[data-status="open"]', { timeout: 15000 });
  const counts = await b.evaluate((ts) => ts.map((t) =>
    [...document.querySelectorAll("#chat-log li.msg .text")].filter((e) => e.textContent === t).length), burst);
  const reconnects = await b.evaluate(() => window.fanfare.stats.reconnects);
  console.log(`after reconnect (now on ${await b.getAttribute("body", "data-worker")}): counts ${counts}, reconnects ${reconnects}`);
  if (counts.some((c) => c !== 1)) await fail(`expected each message once, got ${counts}`);
  if (reconnects !== 1) await fail(`expected one reconnect, got ${reconnects}`);
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
  clearTimeout(timer);
  await context.close();
  cleanup();
  console.log("browser ok");
  process.exit(0);
} catch (e) {
  await fail(e && e.stack ? e.stack : String(e));
}
