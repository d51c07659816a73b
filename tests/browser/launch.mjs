// What the browser tests share: Debian's chromium started headless (the
// flags this closed network needs) in a fresh profile, the artifacts folder,
// and a `fail` that closes everything and exits 1, armed by a deadline.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

// Starts the browser; `fail(msg)` ends the run with exit code 1, on its own
// after `deadlineMs`; `done()` closes everything for a clean exit.
export async function launch(deadlineMs) {
  const artifacts = process.env.ARTIFACTS || "target/test-artifacts";
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "fanfare-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args,
    headless: true,
    viewport: { width: 1400, height: 900 },
    timeout: 60000,
  });
  const cleanup = () => rmSync(profile, { recursive: true, force: true });
  let timer;
  const fail = async (msg) => {
    console.error("browser test failed:", msg);
    await context.close().catch(() => {});
    cleanup();
    process.exit(1);
  };
  timer = setTimeout(() => fail(`timed out after ${deadlineMs / 1000} s`), deadlineMs);
  const done = async () => {
    clearTimeout(timer);
    await context.close();
    cleanup();
  };
  return { context, artifacts, fail, done };
}

// Two pages of `url + hash`, live, on two different workers: the kernel
// spreads connections over the workers, so B is reloaded until it lands on
// another one than A. Returns the pages and their workers (equal if it
// never happened: the caller fails).
export async function pagesOnTwoWorkers(context, url, hash) {
  const a = await context.newPage();
  const b = await context.newPage();
  for (const p of [a, b]) {
    p.on("pageerror", (e) => console.error("page error:", e.message));
    await p.goto(url + hash);
    await p.waitForSelector('body[data-status="open"]', { timeout: 30000 });
  }
  const wa = await a.getAttribute("body", "data-worker");
  let wb = await b.getAttribute("body", "data-worker");
  for (let i = 0; i < 40 && wb === wa; i++) {
    await b.reload();
    await b.waitForSelector('body[data-status="open"]', { timeout: 30000 });
    wb = await b.getAttribute("body", "data-worker");
  }
  return { a, b, wa, wb };
}
