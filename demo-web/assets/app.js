// The demo's page: system monitor, chat and fabric view over one fanfare.js connection.

import { connect } from "/fanfare.js";
import { LineChart, colorOf } from "/charts.js";
import { FabricView } from "/fabric.js";

const $ = (id) => document.getElementById(id);

// Tabs (also reachable as #chat, #fabric).
function show(tab) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === tab);
}
for (const b of document.querySelectorAll(".tab")) b.onclick = () => { show(b.dataset.tab); history.replaceState(null, "", "#" + b.dataset.tab); };
if (location.hash) show(location.hash.slice(1));

const charts = {
  cpu: new LineChart($("chart-cpu"), { unit: "%", minMax: 5 }),
  rss: new LineChart($("chart-rss"), { minMax: 16 }),
  ws: new LineChart($("chart-ws"), { minMax: 4 }),
  out: new LineChart($("chart-out"), { minMax: 10 }),
};
const fabric = new FabricView($("fabric-view"), $("fabric-table"));
const tiles = new Map();

// A reload resumes where the page was: whatever was published meanwhile is
// replayed (from any worker's ring or the broadcaster's history).
const ff = connect({
  since: sessionStorage.getItem("fanfare-position") || undefined,
  onStatus(status, info) {
    document.body.dataset.status = status === "subscribed" ? "open" : status;
    if (status === "open") {
      $("conn-status").textContent = "connected";
      $("conn-worker").textContent = info.worker;
      document.body.dataset.worker = info.worker;
      fabric.me = info.worker;
      fabric.render();
      for (const [w, t] of tiles) t.classList.toggle("me", w === info.worker);
    } else if (status === "closed") {
      $("conn-status").textContent = `reconnecting (${info.code})…`;
    } else if (status === "subscribed" && info.replayed) {
      system(`resumed on ${ff.worker}: ${info.replayed} missed event(s) replayed${info.recovered ? "" : ", some lost"}`);
    }
  },
  onError(e) {
    system(`error ${e.code}: ${e.message}`);
  },
  onGap(g) {
    system(`gap: ${g.reason} (${g.origin} ${g.first}–${g.last || "?"})`);
  },
  onEvent() {
    $("position").textContent = ff.position || "–";
    $("stat-events").textContent = ff.stats.events;
    $("stat-gaps").textContent = ff.stats.gaps;
    $("stat-reconnects").textContent = ff.stats.reconnects;
  },
});
window.fanfare = ff; // for the console and for tests
addEventListener("pagehide", () => sessionStorage.setItem("fanfare-position", ff.position));
$("reconnect").onclick = () => ff.reconnect();

// ---- system monitor ------------------------------------------------------
ff.subscribe("metrics.worker.*", (s) => {
  charts.cpu.push(s.worker, s.cpu);
  charts.rss.push(s.worker, s.rss / (1024 * 1024));
  charts.ws.push(s.worker, s.ws);
  charts.out.push(s.worker, s.out_rate);
  tile(s);
  fabric.worker(s);
});
ff.subscribe("metrics.broadcaster.*", (s) => fabric.broadcaster(s));

function tile(s) {
  let t = tiles.get(s.worker);
  if (!t) {
    t = document.createElement("div");
    t.className = "tile";
    t.style.setProperty("--c", colorOf(s.worker));
    tiles.set(s.worker, t);
    const all = [...tiles.keys()].sort();
    $("worker-tiles").replaceChildren(...all.map((w) => tiles.get(w)));
  }
  t.classList.toggle("me", s.worker === ff.worker);
  t.innerHTML = `<div class="name">worker ${s.worker}<span>${s.worker === ff.worker ? "YOU ARE HERE" : "pid " + s.pid}</span></div>
    <div class="kv"><span>cpu</span><b>${s.cpu.toFixed(1)} %</b><span>memory</span><b>${(s.rss / 1048576).toFixed(1)} MiB</b>
    <span>websockets</span><b>${s.ws}</b><span>events in / out</span><b>${s.in_rate}/s · ${s.out_rate}/s</b></div>`;
}

// ---- chat ------------------------------------------------------------------
const nameBox = $("chat-name");
nameBox.value = sessionStorage.getItem("fanfare-name") || `guest-${Math.floor(Math.random() * 900 + 100)}`;
nameBox.onchange = () => sessionStorage.setItem("fanfare-name", nameBox.value);
const me = Math.random().toString(36).slice(2);

ff.subscribe("chat.#", (m, ev) => {
  if (!m || typeof m.text !== "string") return;
  const li = document.createElement("li");
  li.className = "msg" + (m.client === me ? " mine" : "");
  li.dataset.from = ev.from || "";
  const time = new Date(Number(ev.ts) / 1000).toLocaleTimeString();
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.innerHTML = `<span class="who"></span><span class="badge">via ${ev.from || "?"}</span><span>${time}</span>`;
  meta.querySelector(".who").textContent = m.name || "anonymous";
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = m.text;
  li.append(meta, text);
  $("chat-log").append(li);
  li.scrollIntoView({ block: "end" });
});

function system(text) {
  const li = document.createElement("li");
  li.className = "system";
  li.textContent = text;
  $("chat-log").append(li);
}

$("chat-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  ff.publish("chat.lobby", { name: nameBox.value || "anonymous", text, client: me });
  $("chat-input").value = "";
};
