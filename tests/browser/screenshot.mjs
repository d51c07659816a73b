// Takes the README screenshots of a running demo (not a test):
//   node screenshot.mjs http://127.0.0.1:PORT docs/
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, out = "docs"] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "fanfare-shot-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  headless: true,
  viewport: { width: 1440, height: 900 },
});
const pages = [];
for (let i = 0; i < 6; i++) {
  const p = await context.newPage();
  await p.goto(url + "/#chat");
  await p.waitForSelector('body[data-status="open"]');
  pages.push(p);
}
const names = ["ada", "grace", "linus", "barbara", "ken", "margaret"];
const lines = ["anyone on w3?", "here, on another worker", "publish anywhere, arrive everywhere",
  "killed my tab, reconnected to another worker, nothing missed", "slow consumers get 4008 and resume", "four processes, one port, one conversation"];
for (let k = 0; k < lines.length; k++) {
  const p = pages[k % pages.length];
  await p.fill("#chat-name", names[k % names.length]);
  await p.fill("#chat-input", lines[k]);
  await p.click("#chat-send");
  await p.waitForTimeout(400);
}
// Some steady load so the charts move.
for (const p of pages) {
  await p.evaluate(() => setInterval(() => window.fanfare.publish("load.tick", { t: Date.now() }), 70));
}
await pages[0].waitForTimeout(30000);
const shot = pages[0];
for (const tab of ["monitor", "chat", "fabric"]) {
  await shot.click(`.tab[data-tab="${tab}"]`);
  await shot.waitForTimeout(600);
  await shot.screenshot({ path: join(out, `dashboard-${tab}.png`) });
}
await context.close();
rmSync(profile, { recursive: true, force: true });
console.log("screenshots written to", out);
