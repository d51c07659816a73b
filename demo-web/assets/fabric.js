// The fabric view: broadcasters in the middle (pid, origin, epoch, up/down),
// the federation links between them with the traffic crossing each, workers
// around (a solid edge to the broadcaster each prefers, faint ones to the
// others it fails over to), pulses at the rate events flow, and a table of
// every counter.

import { colorOf } from "/charts.js";

const NS = "http://www.w3.org/2000/svg";
const el = (name, attrs = {}, parent) => {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
};
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const short = (epoch) => (epoch == null ? "?" : String(epoch).slice(-6));

export class FabricView {
  constructor(svg, table) {
    this.svg = svg;
    this.table = table;
    this.brokers = new Map();
    this.workers = new Map();
    this.me = null;
    this.pulses = [];
    this.layoutKey = "";
    const tick = (t) => {
      this.animate(t);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  broadcaster(s) {
    if (!s || typeof s.id !== "string") return;
    this.brokers.set(s.id, { ...s, seen: Date.now() });
    this.render();
  }

  worker(s) {
    this.workers.set(s.worker, { ...s, seen: Date.now() });
    this.render();
  }

  // Which broadcaster id has this PUB endpoint.
  brokerByPub(ep) {
    for (const [id, b] of this.brokers) if (b.pub === ep) return id;
    return null;
  }

  // The links of every broadcaster: { from (peer id), to, link }.
  links() {
    const out = [];
    for (const [to, b] of this.brokers) {
      for (const l of b.links || []) {
        const from = l.peer || this.brokerByPub(l.name) || null;
        if (from && this.brokers.has(from)) out.push({ from, to, l });
      }
    }
    return out;
  }

  layout() {
    const W = 900, H = 520;
    const brokers = [...this.brokers.keys()].sort();
    const workers = [...this.workers.keys()].sort();
    const pos = new Map();
    const nb = Math.max(brokers.length, 1);
    brokers.forEach((b, i) => {
      if (nb <= 2) pos.set("b:" + b, { x: W / 2 + (i - (nb - 1) / 2) * 380, y: H / 2 });
      else {
        const a = -Math.PI / 2 + (2 * Math.PI * i) / nb;
        pos.set("b:" + b, { x: W / 2 + Math.cos(a) * 230, y: H / 2 + Math.sin(a) * 105 });
      }
    });
    if (!brokers.length) pos.set("b:?", { x: W / 2, y: H / 2 });
    // Workers in a row above and a row below the broadcasters.
    const top = Math.ceil(workers.length / 2);
    workers.forEach((w, i) => {
      const row = i < top ? 0 : 1;
      const k = row ? i - top : i, n = row ? workers.length - top : top;
      pos.set("w:" + w, { x: 110 + ((W - 220) * (k + 0.5)) / Math.max(n, 1), y: row ? H - 45 : 45 });
    });
    return { pos, brokers: brokers.length ? brokers : ["?"], workers };
  }

  // A worker's broadcasters, preferred first (ids), from its stats.
  workerBrokers(w) {
    const s = this.workers.get(w);
    const ids = (s && s.broadcasters || []).map((ep) => this.brokerByPub(ep)).filter(Boolean);
    return ids.length ? ids : this.brokerIds;
  }

  render() {
    const { pos, brokers, workers } = this.layout();
    this.pos = pos;
    this.brokerIds = brokers;
    const links = this.links();
    const linkKey = links.map((k) => k.from + ">" + k.to).sort().join();
    const prefs = workers.map((w) => (this.workers.get(w).broadcasters || []).join("+")).join();
    const key = brokers.join() + "|" + workers.join() + "|" + this.me + "|" + linkKey + "|" + prefs;
    if (key !== this.layoutKey) {
      this.layoutKey = key;
      this.svg.replaceChildren();
      const defs = el("defs", {}, this.svg);
      const grad = el("radialGradient", { id: "glow" }, defs);
      el("stop", { offset: "0", "stop-color": "#7c5cff", "stop-opacity": ".55" }, grad);
      el("stop", { offset: "1", "stop-color": "#7c5cff", "stop-opacity": "0" }, grad);
      const arrow = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, defs);
      el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#b9a8ff" }, arrow);
      this.edgeLayer = el("g", {}, this.svg);
      this.linkLayer = el("g", {}, this.svg);
      this.pulseLayer = el("g", {}, this.svg);
      this.nodeLayer = el("g", {}, this.svg);
      this.nodes = new Map();
      this.linkEls = new Map();
      for (const w of workers) {
        const p = pos.get("w:" + w);
        this.workerBrokers(w).forEach((b, i) => {
          const q = pos.get("b:" + b);
          if (q) el("line", { class: "edge" + (i === 0 ? " preferred" : " standby"), x1: q.x, y1: q.y, x2: p.x, y2: p.y }, this.edgeLayer);
        });
        this.nodes.set("w:" + w, this.node(p, w, colorOf(w), w === this.me));
      }
      // One curve per direction (a link both ways draws two), bent apart.
      for (const { from, to } of links) {
        const a = pos.get("b:" + from), b = pos.get("b:" + to);
        if (!a || !b) continue;
        const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
        const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
        const c = { x: mx - (dy / len) * 40, y: my + (dx / len) * 40 };
        const path = el("path", { class: "link", d: `M ${a.x} ${a.y} Q ${c.x} ${c.y} ${b.x} ${b.y}`, "marker-end": "url(#arrow)" }, this.linkLayer);
        const label = el("text", { x: c.x, y: c.y, "text-anchor": "middle", class: "sub link-label" }, this.linkLayer);
        this.linkEls.set(from + ">" + to, { path, label, a, b, c });
      }
      for (const b of brokers) {
        const q = pos.get("b:" + b);
        el("circle", { cx: q.x, cy: q.y, r: 90, fill: "url(#glow)" }, this.nodeLayer);
        this.nodes.set("b:" + b, this.node(q, "broadcaster " + b, "#7c5cff", false, true));
      }
    }
    for (const [w, s] of this.workers) {
      const n = this.nodes.get("w:" + w);
      if (!n) continue;
      const stale = Date.now() - s.seen > 3000;
      n.line1.textContent = `${s.ws} websockets · ${s.out_rate}/s out`;
      n.line2.textContent = stale ? "silent" : `cpu ${s.cpu}% · lag ${s.lag_ms.toFixed(1)} ms`;
      n.box.setAttribute("stroke-dasharray", stale ? "4 4" : "none");
    }
    for (const [b, s] of this.brokers) {
      const n = this.nodes.get("b:" + b);
      if (!n) continue;
      const down = s.up === false || Date.now() - s.seen > 3000;
      n.title.textContent = `broadcaster ${b}` + (s.pid ? ` · pid ${s.pid}` : "");
      n.line1.textContent = down ? `DOWN${s.restarts ? ` · ${s.restarts} restart(s)` : ""}` : `epoch …${short(s.epoch)} · ${s.in_rate}/s in · ${s.out_rate}/s out`;
      n.line2.textContent = down ? "restarting…" : `seq ${s.last_seq} · history ${s.history}${s.restarts ? ` · ${s.restarts} restart(s)` : ""}`;
      n.box.setAttribute("stroke", down ? "#ff5c7c" : "#7c5cff");
      n.box.setAttribute("stroke-dasharray", down ? "6 4" : "none");
      n.g.dataset.up = down ? "false" : "true";
    }
    for (const { from, to, l } of links) {
      const e = this.linkEls && this.linkEls.get(from + ">" + to);
      if (!e) continue;
      const dst = this.brokers.get(to);
      const up = l.state === "up" && dst && dst.up !== false && this.brokers.get(from)?.up !== false;
      e.path.setAttribute("class", "link" + (up ? "" : " down"));
      e.label.textContent = up ? `${l.rate_in}/s · lag ${Number(l.lag_ms || 0).toFixed(1)} ms` : l.state || "down";
      e.rate = up ? l.rate_in || 0 : 0;
    }
    this.renderTable(links);
  }

  node(p, title, color, me, big) {
    const g = el("g", { class: "node", transform: `translate(${p.x},${p.y})` }, this.nodeLayer);
    const w = big ? 230 : 170, h = 64;
    const box = el("rect", { x: -w / 2, y: -h / 2, width: w, height: h, rx: 14, fill: "#161b33", stroke: color, "stroke-width": me ? 3 : 1.5 }, g);
    const t = el("text", { x: 0, y: -10, "text-anchor": "middle" }, g);
    t.textContent = me ? `${title} · you` : title;
    const line1 = el("text", { x: 0, y: 8, "text-anchor": "middle", class: "sub" }, g);
    const line2 = el("text", { x: 0, y: 23, "text-anchor": "middle", class: "sub" }, g);
    return { g, box, title: t, line1, line2 };
  }

  animate(t) {
    if (!this.pos || !this.pulseLayer) return;
    const dt = Math.min(0.1, (t - (this.last || t)) / 1000);
    this.last = t;
    const spawn = (rate, color, at) => {
      if (Math.random() < Math.log2(1 + rate) * 1.2 * dt && this.pulses.length < 300) {
        const c = el("circle", { r: 4, class: "pulse", fill: color }, this.pulseLayer);
        this.pulses.push({ c, at, k: 0 });
      }
    };
    // Broadcaster → worker, along the preferred edge.
    for (const [w, s] of this.workers) {
      const p = this.pos.get("w:" + w);
      const q = this.pos.get("b:" + (this.workerBrokers(w)[0] || this.brokerIds[0]));
      if (!p || !q) continue;
      spawn(s.in_rate || 0, colorOf(w), (k) => ({ x: q.x + (p.x - q.x) * k, y: q.y + (p.y - q.y) * k }));
    }
    // Along each federation link, at the rate it carries.
    for (const e of (this.linkEls || new Map()).values()) {
      if (!e.rate) continue;
      spawn(e.rate, "#b9a8ff", (k) => ({
        x: (1 - k) * (1 - k) * e.a.x + 2 * (1 - k) * k * e.c.x + k * k * e.b.x,
        y: (1 - k) * (1 - k) * e.a.y + 2 * (1 - k) * k * e.c.y + k * k * e.b.y,
      }));
    }
    this.pulses = this.pulses.filter((u) => {
      u.k += dt * 1.1;
      if (u.k >= 1) {
        u.c.remove();
        return false;
      }
      const { x, y } = u.at(u.k);
      u.c.setAttribute("cx", x);
      u.c.setAttribute("cy", y);
      u.c.setAttribute("opacity", String(1 - u.k * 0.6));
      return true;
    });
  }

  renderTable(links) {
    const rows = [];
    const td = (v, alert) => `<td${alert ? ' class="alert"' : ""}>${esc(v)}</td>`;
    for (const [b, s] of [...this.brokers].sort()) {
      const down = s.up === false;
      const name = `broadcaster ${b}${s.pid ? ` (pid ${s.pid}` + (s.epoch != null ? `, epoch …${short(s.epoch)}` : "") + ")" : ""}${down ? " DOWN" : ""}`;
      rows.push(`<tr data-broadcaster="${esc(b)}" data-pid="${esc(s.pid ?? "")}" data-up="${down ? "false" : "true"}" data-epoch="${esc(s.epoch ?? "")}">${td(name, down)}${td(s.in_rate ?? "–")}${td(s.out_rate ?? "–")}${td((s.subscribers ?? "–") + " subs")}${td("–")}${td(s.dropped ?? "–", s.dropped > 0)}${td("–")}${td("–")}${td((s.replays ?? "–") + " replays")}${td(s.restarts ? s.restarts + " restarts" : "–")}</tr>`);
    }
    for (const { from, to, l } of links) {
      const up = l.state === "up";
      rows.push(`<tr data-link="${esc(from)}>${esc(to)}" data-state="${esc(l.state)}">${td(`link ${from} → ${to} (${l.state})`, !up)}${td(l.rate_in)}${td(l.republished ?? "–")}${td("interest " + (l.interest ?? "–"))}${td(Number(l.lag_ms || 0).toFixed(1) + " ms")}${td((l.duplicates ?? 0) + " dup cut")}${td("–")}${td((l.unrecoverable ?? 0) + " lost", l.unrecoverable > 0)}${td((l.repaired ?? 0) + " repaired")}${td((l.reconnects ?? 0) + " reconnects")}</tr>`);
    }
    for (const [w, s] of [...this.workers].sort()) {
      rows.push(`<tr>${td(`worker ${w}${w === this.me ? " (you)" : ""}`)}${td(s.in_rate)}${td(s.out_rate)}${td(s.ws)}${td(s.lag_ms.toFixed(1) + " ms")}${td("–")}${td(s.slow, s.slow > 0)}${td(s.gaps, s.gaps > 0)}${td(s.resumes + (s.resumes_partial ? ` (${s.resumes_partial} partial)` : ""))}${td(s.errors, s.errors > 0)}</tr>`);
    }
    this.table.querySelector("tbody").innerHTML = rows.join("");
  }
}
